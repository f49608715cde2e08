"""What the inbox shows before the email is opened: the subject (a headline is never cut),
the preheader (40 to 110 characters, padded so the preview stops there), and the markers
that put them into the rendered HTML, escaped for where each stands."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from typing import Any

from digest.config import Config
from digest.content.intro import Intro
from digest.content.posts import Post
from digest.errors import TemplateError

PREHEADER_MIN = 40
PREHEADER_MAX = 110
# Zero-width joiner and no-break space after the preheader keep the inbox preview from
# running on into the first words of the body.
PREHEADER_PAD = "\u034f\u200c\u00a0"
SUBJECT_MAX = 70  # what most inboxes show of a subject


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
