"""A selection turned into the email a reader opens: HTML, plain text, headers, a message.

The HTML goes jinja2 (autoescape on) → MJML (mjml-python) → premailer, which inlines the
rules of ``templates/email.css`` that MJML cannot, keeps MJML's own ``<style>`` blocks (the
``@media`` rules and client resets) as they are, and never fetches anything. The text part
has its own template. A user's ``email.templates_dir`` overrides any built-in template by
file name.

Per-subscriber values are literal markers (:data:`digest.email.message.PLACEHOLDERS`) in the
composed HTML, text and headers; :mod:`digest.email.message` fills them at send time.

If the HTML is over ``email.size_budget_kb``, the issue is trimmed by ``email.trim_policy``
(fewer posts per section, then compact cards without images or excerpts); what was trimmed
is reported in :attr:`ComposedEmail.trimmed`. If nothing fits, the email is returned as it
is and the size check fails, so an email Gmail would clip is never produced silently.

Pure: no clock, no network, no files but the templates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import formataddr
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup

from digest import i18n
from digest.audience.links import archive_url, category_url, post_url, token_url, with_query
from digest.config import Config
from digest.content.intro import Intro
from digest.content.posts import Post
from digest.content.select import Section, Selection
from digest.content.stories import source_name
from digest.email.covers import cover_colors
from digest.email.headline import (
    ISSUE_MARKERS,
    _preheader,
    _preheader_padding,
    _subject,
    fill_issue_markers,
)
from digest.email.images import (
    cover_image,
    safe_image_url,
)
from digest.email.message import PLACEHOLDERS, ComposedEmail, sent_bytes
from digest.email.templating import (
    HTML_TEMPLATE,
    TEXT_TEMPLATE,
    _css,
    _mjml_to_html,
    environment,
    render_template,
    spoken,
)
from digest.errors import TemplateError

logger = logging.getLogger(__name__)

KB = 1000  # email.size_budget_kb counts kilobytes of 1,000 bytes: a margin under Gmail's 102 KiB


def _utm(config: Config, issue_id: str) -> dict[str, str]:
    return {k: v.replace("{issue_id}", issue_id) for k, v in config.email.utm.items()}


def worst_case_values(config: Config) -> dict[str, str]:
    """Per-recipient values as long as a real subscriber's: a long address and full-length
    signed tokens, so the size measured with them is what the largest message sends."""
    address = "x" * 48 + "@" + "subscriber-mail.example.com"
    token = "t" * 200
    return {
        "unsubscribe_url": token_url(config, "unsubscribe", token),
        "preferences_url": token_url(config, "preferences", token),
        "name": "N" * 40,
        "email": address,
    }


def sent_size(html: str, values: Mapping[str, str]) -> int:
    """Bytes of the HTML part as sent: personalised, then quoted-printable encoded."""
    return sent_bytes(html, values)


@dataclass(frozen=True)
class _Card:
    title: str
    url: str
    image: dict[str, Any] | None
    excerpt: str
    byline: str
    slug: str
    also: tuple[tuple[str, str], ...] = ()  # (outlet, link): the story's other reports


@dataclass(frozen=True)
class _SectionView:
    name: str
    title: str
    posts: list[_Card]
    more: int
    more_url: str


@dataclass(frozen=True)
class _Plan:
    cap: int | None = None
    compact: bool = False


def date_range(selection: Selection, language: str = i18n.SOURCE) -> str:
    return i18n.period(selection.window.start.date(), selection.window.last_day, language)


def issue_title(selection: Selection, language: str = i18n.SOURCE) -> str:
    """ "Week 47, 2026" for a week of any newsletter (its issue ids carry its name first),
    else the window's dates."""
    match = re.search(r"(\d{4})-W(\d{2})$", selection.issue_id)
    if match:
        return i18n.week_title(int(match.group(2)), match.group(1), language)
    return date_range(selection, language)


def _byline(post: Post, language: str = i18n.SOURCE) -> str:
    day = i18n.byline_day(post.date, language)
    return f"{post.author} · {day}" if post.author else day


def _card(
    config: Config,
    post: Post,
    utm: dict[str, str],
    warnings: list[str],
    seen_images: set[str] | None = None,
    also: Sequence[Post] = (),
) -> _Card:
    src, problem = safe_image_url(config, post.cover_image)
    if problem:
        warnings.append(f"{post.path}: cover image {problem}")
    image = cover_image(config, src, post) if src else None
    if image is not None and seen_images is not None:
        # The same picture (after any CDN sizing) is shown once per issue, at its first use.
        if image["src"] in seen_images:
            image = None
        else:
            seen_images.add(image["src"])
    return _Card(
        title=post.title,
        url=with_query(post_url(config, post), utm),
        image=image,
        excerpt=post.excerpt,
        byline=_byline(post, spoken(config)),
        slug=post.slug,
        also=tuple((source_name(other) or other.title, _also_url(config, other)) for other in also),
    )


def _also_url(config: Config, post: Post) -> str:
    """Where an "also covered by" link goes: the outlet's page, else the post's own."""
    source = (post.source or "").strip()
    if urlsplit(source).scheme in ("http", "https"):
        return source
    return post_url(config, post)


def _headers(config: Config, subject: str) -> dict[str, str]:
    sender = config.sender
    mailto = ""
    if sender.unsubscribe_mailto:
        mailto = f", <mailto:{sender.unsubscribe_mailto}?subject=unsubscribe>"
    headers = {
        "From": formataddr((sender.from_name, sender.from_email)),
        "Subject": subject,
        "List-Id": f"{config.site.name} <{config.list_id}>",
        "List-Unsubscribe": f"<{PLACEHOLDERS['unsubscribe_url']}>{mailto}",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    if sender.reply_to:
        headers["Reply-To"] = sender.reply_to
    return headers


# --------------------------------------------------------------------------- compose


def compose(
    config: Config,
    selection: Selection,
    *,
    now: datetime,
    intro: Intro | None = None,
    web: bool = False,
) -> ComposedEmail:
    """The issue's email. ``web=True`` gives the archive's version (no subscriber links).

    One post never fails the issue: when rendering fails, the posts the failure follows
    are found (by halves) and left out, each named in ``warnings`` with the error. A failure
    no single post causes (a broken template) is raised as it is.
    """
    try:
        return _compose(config, selection, now=now, intro=intro, web=web)
    except TemplateError as exc:
        error = exc

    def fails(posts: list[Post]) -> bool:
        try:
            _compose(config, _keep_posts(selection, posts), now=now, intro=intro, web=web)
        except TemplateError:
            return True
        return False

    def culprits(posts: list[Post]) -> list[Post]:
        if len(posts) <= 1:
            return posts
        half = len(posts) // 2
        found = [p for part in (posts[:half], posts[half:]) if fails(part) for p in culprits(part)]
        return found

    posts = selection.posts
    # A broken template fails with any post: when a few posts each fail alone, it is the
    # template, and finding "culprits" would only cost a compose per post.
    sample = {id(p): p for p in (posts[0], posts[len(posts) // 2], posts[-1])} if posts else {}
    if not posts or all(fails([p]) for p in sample.values()):
        raise error
    bad = culprits(posts) if fails(posts) else []
    if not bad or len(bad) == len(posts):
        raise error
    names = {id(post) for post in bad}
    kept = [post for post in selection.posts if id(post) not in names]
    composed = _compose(config, _keep_posts(selection, kept), now=now, intro=intro, web=web)
    left_out = []
    for post in bad:
        try:
            _compose(config, _keep_posts(selection, [post]), now=now, intro=intro, web=web)
        except TemplateError as exc:
            reason = exc.message
        else:  # pragma: no cover - it failed a moment ago
            reason = error.message
        left_out.append(f"{post.path}: left out of the issue: {reason}")
    return replace(composed, warnings=(*composed.warnings, *left_out))


def _keep_posts(selection: Selection, posts: list[Post]) -> Selection:
    """The selection with only ``posts`` (in their sections, in their order)."""
    wanted = {id(post) for post in posts}
    sections = tuple(
        replace(section, posts=tuple(p for p in section.posts if id(p) in wanted))
        for section in selection.sections
    )
    return replace(selection, sections=tuple(s for s in sections if s.posts))


def _compose(
    config: Config,
    selection: Selection,
    *,
    now: datetime,
    intro: Intro | None,
    web: bool,
) -> ComposedEmail:
    renderer = IssueRenderer(config, selection, intro=intro, web=web)

    def render(plan: _Plan, inline: bool = True) -> Rendered:
        return renderer.render(selection.sections, plan, inline)

    trimmed, rendered = _fit(config, selection, render, renderer.budget, renderer.measure)
    return renderer.composed(selection, rendered, trimmed, now=now)


class IssueRenderer:
    """What composing one selection needs once (cards, links, the shared context), and
    the render of any of its sections under a trimming plan.

    :func:`compose` renders a selection whole; :mod:`digest.email.variants` renders an
    issue's sections once and assembles each subscriber's choice of them from the parts.
    """

    def __init__(
        self, config: Config, selection: Selection, *, intro: Intro | None, web: bool
    ) -> None:
        self.config = config
        self.selection = selection
        self.intro = intro
        self.web = web
        self.env = environment(config)
        self.css = _css(self.env)
        self.utm = _utm(config, selection.issue_id)
        self.budget = config.email.size_budget_kb * KB
        self.worst = worst_case_values(config)
        # Cards per section, each with its own cover; an image shown earlier in the email
        # is dropped when the sections are put together (views()).
        self.cards: dict[str, list[_Card]] = {}
        self.warnings: dict[str, list[str]] = {}  # cover image problems, per section
        for section in selection.sections:
            warnings: list[str] = []
            self.cards[section.name] = [
                _card(config, post, self.utm, warnings, also=selection.coverage.get(post.slug, ()))
                for post in section.posts
            ]
            self.warnings[section.name] = warnings
        shown = (c.image["src"] for cards in self.cards.values() for c in cards if c.image)
        self.cover_colors = cover_colors(config, shown)  # the no-image blocks' colours
        self.by_slug = {post.slug: post for post in selection.posts}
        links = {
            "unsubscribe": PLACEHOLDERS["unsubscribe_url"],
            "preferences": PLACEHOLDERS["preferences_url"],
            "view_in_browser": archive_url(config, selection.issue_id),
            "archive": archive_url(config),
        }
        self.base_context: dict[str, Any] = {
            "lang": config.site.language,
            "site": {
                "name": config.site.name,
                "url": with_query(config.site.base_url + "/", self.utm),
                "logo_url": safe_image_url(config, config.site.logo_url)[0],
                "logo_width": config.site.logo_width,
                "logo_height": config.site.logo_height,
            },
            # markdown-it renders the intro with raw HTML off and unsafe links refused.
            "intro": {"html": Markup(intro.html), "text": intro.text} if intro else None,
            "links": links,
            "postal_address": config.sender.postal_address,
            "placeholders": PLACEHOLDERS,
            "web": web,
        }

    def measure(self, html: str) -> int:
        """The size that counts against the budget: the HTML part as sent."""
        return sent_size(html, self.worst)

    def shown_cards(self, sections: Sequence[Section]) -> dict[str, list[_Card]]:
        """The sections' cards, a picture shown once per email, at its first use."""
        seen: set[str] = set()
        cards: dict[str, list[_Card]] = {}
        for section in sections:
            kept = []
            for card in self.cards[section.name]:
                image = card.image
                if image is not None and image["src"] in seen:
                    card = replace(card, image=None)
                elif image is not None:
                    seen.add(image["src"])
                kept.append(card)
            cards[section.name] = kept
        return cards

    def views(self, sections: Sequence[Section], plan: _Plan) -> list[_SectionView]:
        cards = self.shown_cards(sections)
        return _section_views(self.config, tuple(sections), cards, self.utm, plan.cap)

    def shown(self, views: list[_SectionView]) -> list[Post]:
        return [self.by_slug[card.slug] for view in views for card in view.posts]

    def subject_and_preheader(self, views: list[_SectionView]) -> tuple[str, str]:
        """Both count what this email shows (after trimming)."""
        posts = self.shown(views)
        issue_id = self.selection.issue_id
        return (
            _subject(self.config, posts, issue_id, self.intro),
            _preheader(self.config, posts, issue_id, self.intro),
        )

    def context(
        self,
        views: list[_SectionView],
        plan: _Plan,
        *,
        subject: str,
        preheader: str,
        padding: str | None = None,
        count: int | None = None,
    ) -> dict[str, Any]:
        """The template context; ``padding`` and ``count`` override the derived ones."""
        selection = self.selection
        return {
            **self.base_context,
            "subject": subject,
            "preheader": preheader,
            "preheader_padding": _preheader_padding(preheader) if padding is None else padding,
            "issue": {
                "id": selection.issue_id,
                "title": issue_title(selection, spoken(self.config)),
                "date_range": date_range(selection, spoken(self.config)),
                "post_count": sum(len(v.posts) for v in views) if count is None else count,
            },
            "sections": views,
            "compact": plan.compact,
        }

    def html(self, context: Mapping[str, Any], inline: bool) -> str:
        """jinja2 → MJML, then (``inline``) premailer."""
        mjml = render_template(self.env, HTML_TEMPLATE, context)
        email = self.config.email
        covers = (email.cover_fallback, email.cover_color, self.cover_colors)
        return _mjml_to_html(mjml, self.css, inline=inline, covers=covers)

    def text(self, context: Mapping[str, Any]) -> str:
        return render_template(self.env, TEXT_TEMPLATE, context)

    def render(self, sections: Sequence[Section], plan: _Plan, inline: bool = True) -> Rendered:
        views = self.views(sections, plan)
        subject, preheader = self.subject_and_preheader(views)
        html = fill_issue_markers(self.marked_html(views, plan, inline), subject, preheader)
        if not inline:  # a quick lower bound of the size, for trimming
            return html, "", views
        context = self.context(views, plan, subject=subject, preheader=preheader)
        return html, self.text(context), views

    def marked_html(
        self, views: list[_SectionView], plan: _Plan, inline: bool, count: int | None = None
    ) -> str:
        """The HTML with the subject, preheader and its padding as markers, filled in by
        :func:`fill_issue_markers` after premailer (so that an issue's sections can be
        rendered once for all its variants; see :mod:`digest.email.variants`)."""
        context = self.context(
            views,
            plan,
            subject=ISSUE_MARKERS["subject"],
            preheader=ISSUE_MARKERS["preheader"],
            padding=ISSUE_MARKERS["padding"],
            count=count,
        )
        return self.html(context, inline)

    def composed(
        self, selection: Selection, rendered: Rendered, trimmed: Sequence[str], *, now: datetime
    ) -> ComposedEmail:
        """The email of ``selection`` (these sections or some of them), as rendered."""
        config = self.config
        html, text, views = rendered
        subject, preheader = self.subject_and_preheader(views)
        warnings = [w for s in selection.sections for w in self.warnings[s.name]]
        return ComposedEmail(
            issue_id=selection.issue_id,
            subject=subject,
            preheader=preheader,
            html=html,
            text=text.strip("\n") + "\n",
            headers=_headers(config, subject),
            from_address=formataddr((config.sender.from_name, config.sender.from_email)),
            reply_to=config.sender.reply_to,
            sections=tuple(v.name for v in views),
            post_count=sum(len(v.posts) for v in views),
            trimmed=tuple(trimmed),
            posts=tuple((v.name, c.slug, c.url) for v in views for c in v.posts),
            warnings=tuple(warnings),
            composed_at=now,
            size_budget=self.budget,
            list_id=config.list_id,
            web=self.web,
            sent_size=self.measure(html),
        )


def _section_views(
    config: Config,
    sections: tuple[Section, ...],
    cards: dict[str, list[_Card]],
    utm: dict[str, str],
    cap: int | None,
) -> list[_SectionView]:
    views = []
    for section in sections:
        shown = cards[section.name] if cap is None else cards[section.name][:cap]
        more = section.more + len(cards[section.name]) - len(shown)
        views.append(
            _SectionView(
                name=section.name,
                title=i18n.heading(section.title, spoken(config)),
                posts=shown,
                more=more,
                more_url=with_query(category_url(config, section.name), utm),
            )
        )
    return views


Rendered = tuple[str, str, list[_SectionView]]


def _fit(
    config: Config,
    selection: Selection,
    render: Callable[[_Plan, bool], Rendered],
    budget: int,
    measure: Callable[[str], int] | None = None,
) -> tuple[list[str], Rendered]:
    """Render, and if over budget, trim by the configured policy until it fits.

    ``measure`` gives the size that counts (by default the UTF-8 bytes of the HTML):
    :func:`compose` passes the size of the HTML part as sent.
    """

    def size(result: Rendered) -> int:
        return measure(result[0]) if measure else len(result[0].encode("utf-8"))

    # MJML's output before premailer is a lower bound of the final size (premailer only
    # adds inline styles), and costs a fraction of it: a plan over budget before premailer
    # is never inlined.
    quick_full = size(render(_Plan(), False))
    if quick_full <= budget:
        result = render(_Plan(), True)
        if size(result) <= budget:
            return [], result
    full = quick_full
    most = max((len(s.posts) for s in selection.sections), default=0)
    phases = _phases(list(config.email.trim_policy), config.email.trim_min_posts, most)
    cache: dict[tuple[bool, int, bool], Rendered] = {}

    def attempt(compact_cards: bool, cap: int, inline: bool = True) -> Rendered:
        key = (compact_cards, cap, inline)
        if key not in cache:
            plan = _Plan(cap=None if cap >= most else cap, compact=compact_cards)
            cache[key] = render(plan, inline)
        return cache[key]

    best: tuple[bool, int] | None = None
    smallest = (False, most)
    for compact_cards, lowest in phases:
        # The largest cap whose quick size fits, then down from there until the real one does.
        low, high, candidate = lowest, most, None
        while low <= high:
            middle = (low + high) // 2
            if size(attempt(compact_cards, middle, False)) <= budget:
                candidate, low = middle, middle + 1
            else:
                high = middle - 1
        found = None
        cap = candidate
        while cap is not None and cap >= lowest:
            if size(attempt(compact_cards, cap)) <= budget:
                found = cap
                break
            cap -= 1
        if found is not None:
            best = (compact_cards, found)
            break
        smallest = (compact_cards, lowest)

    chosen = best or smallest
    result = attempt(*chosen)
    trimmed = _trimmed(selection, chosen, most)
    if best is None:
        trimmed.append(
            f"over budget: {size(result):,} bytes after trimming (was {full:,}); "
            f"the budget is {budget:,}"
        )
        logger.warning("the email is still over its size budget after trimming")
    return trimmed, result


def _phases(policy: list[str], min_posts: int, most: int) -> list[tuple[bool, int]]:
    """The trimming search's phases, in the policy's order: (compact cards?, the lowest cap
    of posts per section to try). Size grows with the cap, so each phase is a binary search
    for the largest cap that fits."""
    floor = min(min_posts, most)
    phases: list[tuple[bool, int]] = []
    compact = False
    for i, step in enumerate(policy):
        if step == "fewer_posts":
            later_compact = "compact_cards" in policy[i + 1 :]
            phases.append((compact, floor if later_compact else 1))
        elif step == "compact_cards":
            compact = True
            phases.append((True, most))
    if phases and policy[-1] == "compact_cards" and "fewer_posts" in policy:
        phases.append((True, 1))  # compact cards, then fewer of them if still too big
    return phases


def _trimmed(selection: Selection, chosen: tuple[bool, int], most: int) -> list[str]:
    """What the chosen plan (compact cards?, cap) trimmed, one line per step."""
    compact_cards, cap = chosen
    trimmed: list[str] = []
    if cap < most:
        left_out = sum(max(0, len(s.posts) - cap) for s in selection.sections)
        trimmed.append(
            f"fewer_posts: at most {cap} posts per section ({left_out} left out, "
            f"linked from each section's 'more' link)"
        )
    if compact_cards:
        trimmed.append("compact_cards: cards without cover images or excerpts")
    return trimmed


__all__ = ["compose"]
