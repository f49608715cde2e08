"""Feed HTML made safe before it reaches any output.

A feed is someone else's HTML. Everything taken from one (summaries, content) goes through
:func:`sanitize_html` when it is parsed, before it is cached: nh3 (the Rust ammonia
sanitiser) keeps a list of harmless tags and attributes, drops scripts, styles, frames,
event handlers and ``javascript:`` URLs, and makes relative links absolute against the
entry's address, so a cached body is already safe to show.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin, urlsplit

import nh3

from digest.content.text import html_blocks

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


MAX_REFERENCES = 50_000  # "&" in one body; a long escaped article holds a few thousand
MAX_NESTING = 100
"""Elements open at once, at most; deeper tags are dropped (their text stays) before the
sanitiser sees the HTML: its tree work grows with the square of the depth (100,000
nested ``<div>`` took 79 s), and no real post nests a hundred deep."""

# A tag as the depth count sees it: its name, and whether it closes. "[^<>]*" stops at the
# next "<", so an unclosed "<a<a<a…" is scanned once, not once per "<".
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^<>]*?(/?)>")
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr"}
)  # fmt: skip


_ENDS_ITSELF = frozenset({"p", "li", "dt", "dd", "tr", "td", "th", "option"})


def flatten_nesting(html: str, limit: int = MAX_NESTING) -> str:
    """``html`` with every tag that would open deeper than ``limit`` (and its closing
    tag) left out; unchanged when it never nests that deep. One pass, linear."""
    if html.count("<") <= limit:
        return html
    out: list[str] = []
    open_tags: list[tuple[str, bool]] = []  # (name, kept)
    position = 0
    dropped = False
    for tag in _TAG.finditer(html):
        closing, name, self_closing = tag.group(1), tag.group(2).lower(), tag.group(3)
        keep = True
        if closing:
            # the element it closes, and any left open inside it (as a browser would)
            for back in range(1, min(len(open_tags), 10) + 1):
                if open_tags[-back][0] == name:
                    keep = open_tags[-back][1]
                    del open_tags[-back:]
                    break
        elif name not in _VOID and not self_closing:
            if name in _ENDS_ITSELF and open_tags and open_tags[-1][0] == name:
                open_tags.pop()  # "<p>a<p>b": the second <p> ends the first
            keep = len(open_tags) < limit
            open_tags.append((name, keep))
        if not keep:
            out.append(html[position : tag.start()])
            position = tag.end()
            dropped = True
    if not dropped:
        return html
    out.append(html[position:])
    return "".join(out)


def sanitize_html(value: str, base: str | None = None) -> str:
    """Safe HTML: only harmless tags and attributes, absolute http(s)/mailto links."""
    if not value:
        return ""
    if value.count("&") > MAX_REFERENCES:
        # nh3 spends ~3 us on each "&": half a million of them ("&#" x n) took 7 s. Such a
        # body is kept as its text (read by lxml, linear), escaped: safe, and not parsed.
        text = "\n\n".join(block.text for block in html_blocks(value))
        return "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p)
    value = flatten_nesting(value)

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
