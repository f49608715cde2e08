"""What WordPress and others append to a feed summary, taken off its end in linear time.

A summary often ends with ``[…]``, "Read more", "Continue reading →" or "The post … appeared
first on …"; none of it is the text. These used to be one regular expression, a repeated
group of alternatives with overlapping spacing (``(\\s*(…|read more\\W*|…))+\\s*$``): on
``read more `` × 26 followed by ``x`` a backtracking engine tried every way to split the
run, and the time doubled with every repeat. This is a scanner instead: it walks back
from the end, one trailer at a time, and every step moves left, so the work is linear in
what it removes (at most :data:`MAX_TRAILERS` trailers, each looked for in a bounded tail).

The text is one line (cleaned text, with its spacing folded).
"""

from __future__ import annotations

import re

MAX_TRAILERS = 20  # trailers taken off one summary; more is not a summary's ending
_ELLIPSES = ("[…]", "[...]", "[&#8230;]", "[&hellip;]")
_READ_MORE = "read more"
_POST_HEAD = "the post "
_POST_MIDDLE = " appeared first on "
_CONTINUE = re.compile("continue reading", re.IGNORECASE)


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _space_back(text: str, end: int) -> int:
    while end > 0 and text[end - 1].isspace():
        end -= 1
    return end


def _ends_with(text: str, end: int, tail: str) -> bool:
    start = end - len(tail)
    return start >= 0 and text[start:end].lower() == tail


def _post_appeared(text: str, end: int) -> int | None:
    """Where "The post X appeared first on Y" ending at ``end`` starts (X: 1 to 300
    characters, Y: 1 to 200), leftmost; None when it does not end there."""
    window_start = max(0, end - 200 - len(_POST_MIDDLE) - 300 - len(_POST_HEAD))
    window = text[window_start:end].lower()
    best: int | None = None
    middle = window.find(_POST_MIDDLE)
    while middle != -1:
        after = len(window) - (middle + len(_POST_MIDDLE))
        if 1 <= after <= 200:
            low = max(0, middle - 300 - len(_POST_HEAD))
            head = window.find(_POST_HEAD, low, middle - 1)
            # the first "the post " far enough before the middle, within 300 characters
            if head != -1 and (best is None or head < best):
                best = head
        middle = window.find(_POST_MIDDLE, middle + 1)
    return None if best is None else window_start + best


def _one_back(text: str, end: int) -> int | None:
    """The start of one trailer ending at ``end`` (after spacing), or None."""
    for tail in _ELLIPSES:
        if _ends_with(text, end, tail):
            return end - len(tail)
    words_end = end
    while words_end > 0 and not _is_word(text[words_end - 1]):
        words_end -= 1
    if _ends_with(text, words_end, _READ_MORE):
        return words_end - len(_READ_MORE)
    return _post_appeared(text, end)


def strip_trailers(text: str) -> tuple[str, bool]:
    """``text`` without the trailers at its end, and whether the last of what was
    taken off ended in ``]`` (a ``[…]``: the caller shows an ellipsis)."""
    end = _space_back(text, len(text))
    ended_bracket = text[:end].endswith("]")
    cut = end
    found = _CONTINUE.search(text)  # "Continue reading" and whatever follows it on the line
    if found is not None:
        cut = found.start()
    for _ in range(MAX_TRAILERS):
        before = _space_back(text, cut)
        start = _one_back(text, before)
        if start is None:
            break
        cut = start
    if cut == end:
        return text, False
    return text[: _space_back(text, cut)], ended_bracket


_PARAGRAPH_POST = re.compile(r"<p>\s*the post ", re.IGNORECASE)


def drop_post_paragraphs(html: str) -> str:
    """Sanitised HTML without its "<p>The post X appeared first on Y</p>" paragraphs
    (X and Y 1 to 300 characters each), found by a scan rather than by nested lazy
    quantifiers, which tried 300 × 300 ways at every paragraph."""
    kept: list[str] = []
    position = 0
    lowered: str | None = None
    for found in _PARAGRAPH_POST.finditer(html):
        if found.start() < position:
            continue
        if lowered is None:
            lowered = html.lower()
        close = lowered.find("</p>", found.end(), found.end() + 300 + len(_POST_MIDDLE) + 301)
        if close == -1:
            continue
        middle = lowered.find(_POST_MIDDLE, found.end() + 1, close)
        after = close - (middle + len(_POST_MIDDLE))
        if middle != -1 and 1 <= middle - found.end() <= 300 and 1 <= after <= 300:
            kept.append(html[position : found.start()])
            position = close + len("</p>")
    if not kept:
        return html
    kept.append(html[position:])
    return "".join(kept)
