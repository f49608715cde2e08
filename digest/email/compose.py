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

import html as html_lib
import logging
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import formataddr
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import jinja2
from markupsafe import Markup
from mjml import mjml2html
from premailer import Premailer

from digest import i18n
from digest.audience.links import archive_url, category_url, post_url, token_url, with_query
from digest.config import Config
from digest.content.intro import Intro
from digest.content.posts import Post
from digest.content.select import Section, Selection
from digest.content.stories import source_name
from digest.email.covers import cover_colors, shape_covers
from digest.email.loader import InsideLoader
from digest.email.message import PLACEHOLDERS, ComposedEmail, sent_bytes
from digest.errors import TemplateError
from digest.resources import BUILTIN_TEMPLATES

logger = logging.getLogger(__name__)

HTML_TEMPLATE = "email.mjml.j2"
TEXT_TEMPLATE = "email.txt.j2"
CSS_FILE = "email.css"


PREHEADER_MIN = 40
PREHEADER_MAX = 110
# Zero-width joiner and no-break space after the preheader keep the inbox preview from
# running on into the first words of the body.
PREHEADER_PAD = "\u034f\u200c\u00a0"
COVER_WIDTH = 552  # 600px body minus 24px padding each side
KB = 1000  # email.size_budget_kb counts kilobytes of 1,000 bytes: a margin under Gmail's 102 KiB
SUBJECT_MAX = 70  # what most inboxes show of a subject
IMAGE_DENSITY = 2  # covers are asked for at twice their display size, for sharp screens
DEFAULT_COVER_RATIO = 0.5  # height / width when the image URL does not say


def safe_image_url(config: Config, url: str | None) -> tuple[str | None, str | None]:
    """(absolute https URL, None) or (None, why it was refused)."""
    if not url:
        return None, None
    candidate = url.strip()
    if candidate.startswith("//"):
        candidate = "https:" + candidate
    elif candidate.startswith("/"):
        candidate = urljoin(config.site.base_url + "/", candidate.lstrip("/"))
    parts = urlsplit(candidate)
    if parts.scheme.casefold() != "https" or not parts.netloc:
        scheme = parts.scheme or "relative"
        return None, f"{scheme}: image refused (only absolute https images are shown)"
    if any(c in candidate for c in "\"'<>\\ \t\n"):
        return None, "image URL has characters that are not allowed in a URL"
    return candidate, None


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


def _image_rewrite(config: Config, url: str) -> str | None:
    """The image CDN kind of ``url`` ("imgix" or "cloudinary"), from email.image_cdns."""
    host = urlsplit(url).hostname or ""
    for pattern, kind in config.email.image_cdns.items():
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return kind
    return None


def sized_image_url(kind: str, url: str, width: int, height: int) -> str:
    """``url`` asking the CDN for ``width`` × ``height`` pixels, cropped to that shape."""
    parts = urlsplit(url)
    if kind == "cloudinary":
        segments = parts.path.split("/")
        if "upload" in segments:
            at = segments.index("upload") + 1
            transform = f"w_{width},h_{height},c_fill"
            if at < len(segments) and re.fullmatch(r"[a-z]{1,3}_[^/]*", segments[at]):
                segments[at] = transform  # replace the size the URL already asked for
            else:
                segments.insert(at, transform)
            return urlunsplit(parts._replace(path="/".join(segments)))
        return url
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in {"w", "h", "fit", "crop", "dpr", "width", "height"}
    ]
    query += [("w", str(width)), ("h", str(height)), ("fit", "crop")]
    return urlunsplit(parts._replace(query=urlencode(query)))


def cover_image(config: Config, src: str, post: Post) -> dict[str, Any]:
    """How a cover is shown: never above its natural size at 2× density, never squashed.

    An image on a known CDN is asked for at twice the display size in the displayed shape.
    Otherwise a natural size from the front matter (coverWidth/coverHeight) or the URL's
    own w/h bounds the display size; with none, the height follows the image (auto).
    The alt text is empty (the linked title follows) unless the front matter describes
    the image (coverAlt).
    """
    alt = str(post.extra.get("coverAlt") or "")
    width, height = COVER_WIDTH, round(COVER_WIDTH * DEFAULT_COVER_RATIO)
    kind = _image_rewrite(config, src)
    if kind is not None:
        src = sized_image_url(kind, src, width * IMAGE_DENSITY, height * IMAGE_DENSITY)
        return {"src": src, "width": width, "height": f"{height}px", "alt": alt}
    natural = _natural_size(post, src)
    if natural is None:
        return {"src": src, "width": width, "height": "auto", "alt": alt}
    natural_w, natural_h = natural
    shown_w = max(1, min(width, natural_w // IMAGE_DENSITY))
    shown_h = max(1, round(shown_w * natural_h / natural_w))
    return {"src": src, "width": shown_w, "height": f"{shown_h}px", "alt": alt}


def _natural_size(post: Post, url: str) -> tuple[int, int] | None:
    for w, h in (
        (post.extra.get("coverWidth"), post.extra.get("coverHeight")),
        (parse_qs(urlsplit(url).query).get("w", [None])[0],
         parse_qs(urlsplit(url).query).get("h", [None])[0]),
    ):  # fmt: skip
        try:
            width, height = int(str(w)), int(str(h))
        except (TypeError, ValueError):
            continue
        if width > 0 and height > 0:
            return width, height
    return None


# --------------------------------------------------------------------------- templates


@lru_cache(maxsize=4096)  # the same excerpts are wrapped again for every variant
def _wrap(text: str, width: int = 72, indent: str = "", hanging: str | None = None) -> str:
    subsequent = indent if hanging is None else hanging
    paragraphs = [p for p in re.split(r"\n\s*\n", str(text))]
    wrapped = [
        textwrap.fill(
            " ".join(p.split()),
            width=width,
            initial_indent=indent,
            subsequent_indent=subsequent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for p in paragraphs
        if p.strip()
    ]
    return "\n\n".join(wrapped)


def spoken(config: Config) -> str:
    """The language digest's own words are written in for ``config`` (its site.language;
    a language variant's config has the reader's)."""
    return i18n.language_of(None, config.site.language)


@lru_cache(maxsize=8)
def _environment(user_dir: str | None, language: str = i18n.SOURCE) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if user_dir:
        loaders.append(InsideLoader(user_dir))
    loaders.append(InsideLoader(str(BUILTIN_TEMPLATES)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=lambda name: name is None or not name.endswith(".txt.j2"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        extensions=["jinja2.ext.i18n"],
    )
    i18n.install(env, language)
    env.filters["wrap"] = _wrap
    return env


def environment(config: Config) -> jinja2.Environment:
    user = config.email.templates_dir
    return _environment(str(config.path(user)) if user else None, spoken(config))


def render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"template {exc.name!r} not found in {_searched(env)}", path=str(exc.name)
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            exc.message or "syntax error", path=exc.filename, line=exc.lineno
        ) from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"{exc.message}; the names a template can use are {', '.join(sorted(context))}",
            path=name,
        ) from None


def _searched(env: jinja2.Environment) -> str:
    loader = env.loader
    folders: list[str] = []
    if isinstance(loader, jinja2.ChoiceLoader):
        for inner in loader.loaders:
            if isinstance(inner, jinja2.FileSystemLoader):
                folders.extend(str(p) for p in inner.searchpath)
    return ", ".join(folders)


def _css(env: jinja2.Environment) -> str:
    assert env.loader is not None
    try:
        source, _, _ = env.loader.get_source(env, CSS_FILE)
    except jinja2.TemplateNotFound:
        return ""
    return source


def _mjml_to_html(
    mjml: str,
    css: str,
    inline: bool = True,
    covers: tuple[str, str, Mapping[str, str]] = ("alt", "", {}),
) -> str:
    try:
        result = mjml2html(mjml)
    except Exception as exc:  # mjml-python raises plain exceptions for bad markup
        raise TemplateError(f"MJML could not render the email: {exc}", path=HTML_TEMPLATE) from None
    html: str = shape_covers(result if isinstance(result, str) else str(result), *covers)
    if not inline:
        return html
    # MJML's own <style> blocks (resets, @media, Outlook fixes) are left exactly as they are;
    # premailer only inlines email.css, and adds its @media rules to <head>.
    html = html.replace(
        '<style type="text/css">', '<style type="text/css" data-premailer="ignore">'
    )
    # premailer keeps a doctype only when it matches lxml's spelling.
    html = re.sub(r"^\s*<!doctype html>", "<!DOCTYPE html>", html, flags=re.IGNORECASE)
    premailer = Premailer(
        css_text=[css] if css else None,
        keep_style_tags=False,
        allow_network=False,
        allow_loading_external_files=False,
        disable_validation=True,
        disable_link_rewrites=True,
        remove_classes=False,
        strip_important=False,
        disable_basic_attributes=["width", "height"],
        cssutils_logging_level=logging.CRITICAL,
        cache_css_parsing=True,
    )
    inlined: str = premailer.transform(html).replace(' data-premailer="ignore"', "")
    if not inlined.lstrip().upper().startswith("<!DOCTYPE"):
        inlined = "<!DOCTYPE html>\n" + inlined
    return inlined


# --------------------------------------------------------------------------- issue markers

# The subject, preheader and preheader padding reach the HTML template as markers and are
# filled in after MJML and premailer, escaped for where each stands (text or an attribute
# value): MJML copies the title into an attribute with its own escaping, and the same
# rendered parts serve every preference variant of an issue.
ISSUE_MARKERS: dict[str, str] = {
    "subject": "[[digest-issue:subject]]",
    "preheader": "[[digest-issue:preheader]]",
    "padding": "[[digest-issue:padding]]",
}
_ISSUE_MARKER = re.compile(r"\[\[digest-issue:(subject|preheader|padding)\]\]")


def fill_issue_markers(html: str, subject: str, preheader: str) -> str:
    """Put the subject, preheader and padding where their markers are, HTML-escaped."""
    if "[[digest-issue:" not in html:
        return html
    values = {"subject": subject, "preheader": preheader, "padding": _preheader_padding(preheader)}
    text = {k: html_lib.escape(v, quote=False) for k, v in values.items()}
    attribute = {k: html_lib.escape(v, quote=True) for k, v in values.items()}

    def replace(match: re.Match[str]) -> str:
        in_tag = html.rfind("<", 0, match.start()) > html.rfind(">", 0, match.start())
        return (attribute if in_tag else text)[match.group(1)]

    return _ISSUE_MARKER.sub(replace, html)


# --------------------------------------------------------------------------- the view


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


def _fill_template(template: str, key: str, values: Mapping[str, Any]) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise TemplateError(
            f"{key}: {template!r} uses {exc}, which is not one of {{{'}, {'.join(sorted(values))}}}"
        ) from None


def _subject(config: Config, posts: list[Post], issue_id: str, intro: Intro | None) -> str:
    """The subject, for the posts the email shows (after trimming).

    A headline is never cut: when the template names ``{top_title}`` and the subject would
    be longer than :data:`SUBJECT_MAX`, the lead's title with the site name alone is
    tried, then ``email.subject_short``.
    """
    if intro and intro.subject:
        return intro.subject
    values = {
        "site": config.site.name,
        "top_title": posts[0].title if posts else "",
        "n": max(len(posts) - 1, 0),
        "count": len(posts),
        "issue_id": issue_id,
        "week": issue_id,
    }

    def fill(template_values: dict[str, Any]) -> str:
        subject = _fill_template(config.email.subject, "email.subject", template_values)
        if len(posts) == 1:
            subject = re.sub(r"\s+and 0 more\b", "", subject)
        return " ".join(subject.split())

    subject = fill(values)
    if len(subject) <= SUBJECT_MAX or "{top_title}" not in config.email.subject:
        return subject
    for form in ("{site}: {top_title}", config.email.subject_short):
        shorter = " ".join(_fill_template(form, "email.subject_short", values).split())
        shorter = re.sub(r"\b1 stories\b", "1 story", shorter)
        if len(shorter) <= SUBJECT_MAX:
            return shorter
    return shorter  # a subject_short longer than the limit is the owner's choice


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + "…"


def fit_preheader(text: str, filler: str) -> str:
    """``text`` cut to 110 characters, or topped up from ``filler`` to at least 40."""
    text = " ".join(text.split())
    if len(text) < PREHEADER_MIN:
        text = f"{text} — {filler}" if text else filler
    return _cut(text, PREHEADER_MAX)


def _preheader(config: Config, posts: list[Post], issue_id: str, intro: Intro | None) -> str:
    filler = f"This week in {config.site.name}: " + ", ".join(p.title for p in posts[:3])
    if intro and intro.preheader:
        return fit_preheader(intro.preheader, filler)
    values = {
        "site": config.site.name,
        "count": len(posts),
        "n": max(len(posts) - 1, 0),
        "titles": "; ".join(p.title for p in posts[:4]),
        "top_title": posts[0].title if posts else "",
        "issue_id": issue_id,
        "week": issue_id,
    }
    text = _fill_template(config.email.preheader, "email.preheader", values)
    if len(posts) == 1:
        text = text.replace("1 posts", "1 post")
    return fit_preheader(text, filler)


def _preheader_padding(preheader: str) -> str:
    return PREHEADER_PAD * max(0, 150 - len(preheader))


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
    policy = list(config.email.trim_policy)
    floor = min(config.email.trim_min_posts, most)

    # Each phase is (compact?, lowest cap to try); size grows with the cap, so a phase
    # is a binary search for the largest cap that fits.
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
    if best is None:
        trimmed.append(
            f"over budget: {size(result):,} bytes after trimming (was {full:,}); "
            f"the budget is {budget:,}"
        )
        logger.warning("the email is still over its size budget after trimming")
    return trimmed, result


__all__ = ["compose"]
