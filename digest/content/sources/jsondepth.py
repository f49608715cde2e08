"""How deep a JSON text nests, found by one linear scan before it is parsed.

``json.loads`` recurses once per level: a document nested 200,000 deep raises
RecursionError (or worse, in C, exhausts the stack). :func:`json_too_deep` walks the text
once, skipping strings (and the escapes in them), and reports where the nesting first
passes the limit, so such a document is refused with a reason before it is parsed.
"""

from __future__ import annotations

import re

# The characters that matter: quotes, backslashes and brackets. A state machine over them
# (not one pattern for a whole string, which rescans an unterminated string from every
# quote and is quadratic).
_SPECIAL = re.compile(r'["\\\[\]{}]')


def json_too_deep(text: str, limit: int) -> int | None:
    """The character offset where ``text`` opens its ``limit + 1``-th nested level, or None
    when it never nests deeper than ``limit``."""
    depth = 0
    in_string = False
    escaped_at = -1  # the offset of a character a backslash escapes
    for found in _SPECIAL.finditer(text):
        at = found.start()
        char = found.group()
        if at == escaped_at:
            continue
        if in_string:
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return at
        elif char in "]}":
            depth -= 1
    return None
