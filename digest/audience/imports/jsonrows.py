"""The rows of a JSON export, one at a time, each bounded before it is parsed.

``json.loads`` of a whole file lets one row nested 100,000 deep fail the file (a
``RecursionError``). Here a linear scan finds where each element of the list of subscribers
starts and ends and how deeply it nests; an element nested deeper than :data:`MAX_DEPTH`
or longer than :data:`MAX_ROW` is rejected on its own, and only the others are parsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

MAX_DEPTH = 32
"""How deeply one row may nest (a subscriber is an object of short lists and objects)."""
MAX_ROW = 1_000_000
"""The longest row, in characters."""
LIST_KEYS = ("subscribers", "members", "results", "data")
"""Keys of an object whose list holds the subscribers (the first one present wins)."""


class JsonShapeError(ValueError):
    """The document is not valid JSON, or holds no list of subscribers."""


def _skip_string(text: str, i: int) -> int:
    """The index after the string that starts at ``text[i] == '"'``."""
    i += 1
    while True:
        end = text.find('"', i)
        if end < 0:
            raise JsonShapeError("a string is not closed")
        backslashes = 0
        j = end - 1
        while j >= i and text[j] == "\\":
            backslashes += 1
            j -= 1
        if backslashes % 2 == 0:
            return end + 1
        i = end + 1


def _children(text: str, start: int) -> tuple[list[tuple[int, int, int]], int]:
    """The top-level children of the container opening at ``start``: (begin, end, depth of
    the child); and the index after the container. One pass, no recursion."""
    children: list[tuple[int, int, int]] = []
    depth, deepest, begin = 0, 0, -1
    i, n = start, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            if depth == 1 and begin < 0:
                begin = i
            i = _skip_string(text, i)
            continue
        if char in "[{":
            depth += 1
            if depth == 2 and begin < 0:
                begin, deepest = i, 0
            deepest = max(deepest, depth - 1)
        elif char in "]}":
            depth -= 1
            if depth == 0:
                if begin >= 0:
                    children.append((begin, i, deepest))
                return children, i + 1
        elif char == "," and depth == 1:
            if begin >= 0:
                children.append((begin, i, deepest))
            begin, deepest = -1, 0
        elif depth == 1 and begin < 0 and not char.isspace():
            begin = i
        i += 1
    raise JsonShapeError("the document ends inside a list or object")


def _list_of_subscribers(text: str) -> int:
    """Where the list of subscribers opens: the document itself, or the list under one of
    :data:`LIST_KEYS` of a top-level object."""
    start = len(text) - len(text.lstrip())
    if text.startswith("[", start):
        return start
    if not text.startswith("{", start):
        raise JsonShapeError("expected a JSON list of subscribers")
    members, _ = _children(text, start)
    found: dict[str, int] = {}
    for begin, end, _depth in members:
        if text[begin] != '"':
            continue
        key_end = _skip_string(text, begin)
        try:
            key = json.loads(text[begin:key_end])
        except ValueError:
            continue
        value = text[key_end:end].lstrip()
        if not value.startswith(":"):
            continue
        value = value[1:].lstrip()
        if isinstance(key, str) and value.startswith("["):
            found.setdefault(key, end - len(value))  # value is a suffix of text[:end]
    for key in LIST_KEYS:
        if key in found:
            return found[key]
    raise JsonShapeError("expected a JSON list of subscribers")


def json_rows(text: str) -> Iterator[tuple[int, Any, str | None]]:
    """(row number from 1, the parsed element or None, why it was rejected)."""
    opening = _list_of_subscribers(text)
    elements, _ = _children(text, opening)
    for number, (begin, end, depth) in enumerate(elements, start=1):
        if depth > MAX_DEPTH:
            yield number, None, f"nested deeper than {MAX_DEPTH} levels"
        elif end - begin > MAX_ROW:
            yield number, None, f"longer than {MAX_ROW} characters"
        else:
            try:
                yield number, json.loads(text[begin:end]), None
            except (ValueError, RecursionError) as exc:
                yield number, None, f"not valid JSON: {str(exc).split(':')[0]}"
