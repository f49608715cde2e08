"""Feed HTML made safe before it reaches any output.

A feed is someone else's HTML. Everything taken from one (summaries, content) goes through
:func:`sanitize_html` when it is parsed, before it is cached: nh3 (the Rust ammonia
sanitiser) keeps a list of harmless tags and attributes, drops scripts, styles, frames,
event handlers and ``javascript:`` URLs, and makes relative links absolute against the
entry's address, so a cached body is already safe to show.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import nh3

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "cite", "code", "dd", "del", "dl", "dt", "em",
    "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "mark", "ol", "p", "pre", "q", "s", "small", "span", "strong", "sub", "sup", "table",
    "tbody", "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "ol": {"start"},
}
# Their text goes too, not only the tags: a script's source is not prose.
_DROP_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "noscript", "template"}
_SCHEMES = {"http", "https", "mailto"}


def absolute_url(value: str | None, base: str | None) -> str | None:
    """``value`` as an absolute http(s) URL (resolved against ``base``), or None."""
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    if base:
        value = urljoin(base, value)
    if value.startswith("//"):
        value = "https:" + value
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return value


def sanitize_html(value: str, base: str | None = None) -> str:
    """Safe HTML: only harmless tags and attributes, absolute http(s)/mailto links."""
    if not value:
        return ""

    def rewrite(url: str) -> str | None:
        return absolute_url(url, base)

    return nh3.clean(
        value,
        tags=_TAGS,
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        url_relative=rewrite,
        link_rel="noopener noreferrer",
    ).strip()


_IMG = re.compile(r"<img\b[^>]*?\bsrc=\"([^\"]+)\"", re.IGNORECASE)


def first_image(sanitized: str) -> str | None:
    """The first image of sanitised HTML (its src is already absolute)."""
    match = _IMG.search(sanitized)
    if match is None:
        return None
    from html import unescape

    return absolute_url(unescape(match.group(1)), None)
