"""Subscribers' names as stored: one line of plain text, whoever typed it.

A name reaches email headers (``To: Ann <ann@example.com>``, a subject with the name
marker), terminals (``digest subscribers show``) and spreadsheets (exports). The store
cleans every name that comes in through :func:`clean_name`.
"""

from __future__ import annotations

import unicodedata

NAME_LIMIT = 200
"""The longest name kept (characters)."""

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def clean_name(value: str) -> str:
    """A subscriber's name as stored: one line of text. Line breaks, tabs and other
    whitespace controls become one space; other control characters (C0, C1: escape
    sequences for a terminal) and bidi overrides are dropped. Every way a name comes in
    (the subscribe form, imports, ``digest subscribers add``) goes through the store, which
    calls this, so no name can carry a header line or a terminal command."""
    if value.isascii() and value.isprintable():  # most names: nothing to drop or replace
        return " ".join(value.split())[:NAME_LIMIT]
    kept: list[str] = []
    for char in value:
        if char.isspace():
            kept.append(" ")
        elif unicodedata.category(char) != "Cc" and char not in _BIDI_CONTROLS:
            kept.append(char)
    return " ".join("".join(kept).split())[:NAME_LIMIT]
