"""How deep a JSON text nests, found by a linear scan before it is parsed.

``json.loads`` recurses once per level: a document nested 200,000 deep raises
RecursionError (or worse, in C, exhausts the stack). :func:`json_too_deep` walks the text
once and reports where the nesting first passes the limit, so such a document is refused
with a reason before it is parsed. Strings are skipped whole by one pattern without
alternatives that could overlap (``"[^"\\\\]*(?:\\\\.[^"\\\\]*)*"``), matched once at each
string's start and never retried, so an unterminated string costs one pass, not one per
quote; the brackets between strings are summed by ``itertools.accumulate``.
"""

from __future__ import annotations

import re
from itertools import accumulate

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_too_deep(text: str, limit: int) -> int | None:
    """The character offset where ``text`` opens its ``limit + 1``-th nested level, or None
    when it never nests deeper than ``limit`` (or a string is never closed: the parser
    reports that)."""
    depth = 0
    position = 0
    while position < len(text):
        quote = text.find('"', position)
        end = len(text) if quote == -1 else quote
        brackets = _NOT_BRACKET.sub("", text[position:end])
        if brackets:
            levels = list(accumulate(map(_STEP.__getitem__, brackets), initial=depth))
            if max(levels) > limit:
                nth = next(i for i, level in enumerate(levels) if level > limit) - 1
                for count, found in enumerate(_BRACKET.finditer(text, position, end)):
                    if count == nth:
                        return found.start()
            depth = levels[-1]
        if quote == -1:
            return None
        string = _STRING.match(text, quote)
        if string is None:
            return None
        position = string.end()
    return None
