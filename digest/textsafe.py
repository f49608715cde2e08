"""Outside text made safe for the place it lands: a marker, a URL, a header, a terminal.

Text from posts, feeds, intros and imports is data. It is never read as a template: the
per-recipient markers (``[[digest:email]]``, the grammar of :mod:`digest.email.message`)
come only from templates, so :func:`defuse_markers` breaks that syntax wherever content
holds it, and :func:`defuse_url` percent-encodes the brackets of a content URL (the link
still works; no marker is left in it). Where text lands decides the rest:

* a header value (:func:`header_value`) is one line: CR, LF and every other control
  character become a space, so a value cannot start a header of its own;
* a terminal (:func:`for_terminal`) gets control characters, bidirectional overrides and
  line separators escaped (``\\x1b``), so no escape or OSC sequence from a feed title or an
  imported name reaches it raw; line breaks of the output itself stay;
* content text (:func:`strip_controls`) loses C0/C1 controls and bidirectional overrides
  and isolates, which could make it read differently from what it holds.

Every function here is a single linear pass.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# The opening of a marker: "[[digest:" and "[[digest-issue:" (any case, so a variant that
# some later stage folds cannot slip by).
_MARKER_OPEN = re.compile(r"\[(?=\[digest)", re.IGNORECASE)

# C0 and C1 control characters and DEL, and the bidirectional embeddings, overrides and
# isolates. Tabs and line breaks are left to the caller (content folds them into spaces).
_CONTROLS = re.compile(
    "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069]"
)
# For a header: every control (CR and LF included), the Unicode line and paragraph
# separators, and the bidirectional controls.
_HEADER_UNSAFE = re.compile(
    "[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069\\u200e\\u200f]+"
)
# For a terminal: the same, but the output's own line breaks and tabs stay.
_TERMINAL_UNSAFE = re.compile(
    "[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]"
)


def defuse_markers(text: str) -> str:
    """``text`` with every marker opening broken (``[[digest:`` -> ``[ [digest:``), so no
    stage can read content as a per-recipient marker."""
    if "[" not in text:
        return text
    return _MARKER_OPEN.sub("[ ", text)


def defuse_url(url: str) -> str:
    """A content URL with the brackets of its path, query and fragment percent-encoded
    (they are not allowed there unencoded, RFC 3986), so it can hold no marker."""
    if "[" not in url and "]" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed IPv6 host: the whole URL is encoded
        return url.replace("[", "%5B").replace("]", "%5D")

    def encode(value: str) -> str:
        return value.replace("[", "%5B").replace("]", "%5D")

    netloc = parts.netloc if "[[" not in parts.netloc else encode(parts.netloc)
    return urlunsplit(
        (parts.scheme, netloc, encode(parts.path), encode(parts.query), encode(parts.fragment))
    )


def strip_controls(value: str) -> str:
    """``value`` without control characters and bidirectional controls (see ``_CONTROLS``)."""
    return _CONTROLS.sub("", value)


def header_value(value: str) -> str:
    """``value`` as one line for a header: each run of control characters (CR and LF
    included) becomes one space."""
    return _HEADER_UNSAFE.sub(" ", value)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(value: object) -> str:
    """``value`` as text for a terminal: control characters, line separators and
    bidirectional controls escaped (``\\x1b``, ``\\u202e``); newlines and tabs kept."""
    text = value if isinstance(value, str) else str(value)
    return _TERMINAL_UNSAFE.sub(_escape, text)
