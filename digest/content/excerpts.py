"""Where an excerpt ends, and the promotional lines it never shows.

:func:`cut_at_boundary` ends a long excerpt where a reader would stop: after the last
whole sentence that fits, else at the last clause break (a comma, semicolon, colon or
dash) with an ellipsis, else after the last whole word; never inside a word, and never
"." followed by "…". It works on positions found with ``str.rfind``, no regular
expression.

:data:`PROMOTION` holds the excerpt rules for a site's promotional and disclosure lines
("This is The Stepback, a weekly newsletter …", "Disclosure: …", a byline with its date,
a studio's credit); :mod:`digest.content.text` drops a sentence any of them matches,
as its other boilerplate rules. Each is linear: no nested or overlapping quantifiers.
"""

from __future__ import annotations

PROMOTION = (
    r"^this is the \w+, a (?:weekly|daily|monthly) newsletter\b",
    r"^\(?disclosure:",
    r"^by [a-z]+ [a-z]+ (?:[a-z]+ )?[a-z]{3}\.? \d{1,2}\b",
    r"\bstudios?, (?:inc|llc|ltd)\.?$",
)

_CLOSERS = "\"”’')"
_CLAUSE_BREAKS = (", ", "; ", ": ", " — ", " – ", " - ")
_ABBREVIATIONS = frozenset(
    ["mr", "mrs", "ms", "dr", "st", "vs", "inc", "co", "jan", "feb", "mar", "apr", "jun",
     "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "e.g", "i.e"]
)  # fmt: skip


def _sentence_end(text: str, limit: int) -> int:
    """The end (after its stop) of the last whole sentence within ``limit``; 0 if none."""
    for end in range(min(limit, len(text) - 1), 1, -1):
        if text[end] != " ":
            continue
        stop = end - 1 if text[end - 1] in _CLOSERS else end  # '."' ends one too
        mark = text[stop - 1]
        if mark not in ".!?":
            continue
        word = text[text.rfind(" ", 0, stop) + 1 : stop - 1].casefold()
        if mark == "." and (word in _ABBREVIATIONS or len(word) == 1):
            continue  # "Aug. 9", "J. Smith": not a sentence's end
        return end
    return 0


def cut_at_boundary(text: str, limit: int) -> str:
    """At most ``limit`` characters (and an ellipsis), ending at a sentence, a clause or
    a word, in that order of preference, a sentence or a clause only when it keeps half
    the room (two thirds for a clause). A word is never split: when the last space in
    the room comes early (a long address after it), the excerpt ends there; a first word
    longer than the room is kept whole."""
    if len(text) <= limit:
        return text
    end = _sentence_end(text, limit)
    if end >= limit // 2:
        return text[:end]
    room = text[: limit + 1]
    clause = max(room.rfind(mark) for mark in _CLAUSE_BREAKS)
    if clause >= limit * 2 // 3:
        return text[:clause].rstrip(" ,;:-–—(") + "…"
    space = room.rfind(" ")
    if space <= 0:  # one word longer than the room (an address): kept whole, not split
        first = text.find(" ")
        cut = text if first < 0 else text[:first]
        return cut if cut == text else cut.rstrip(" ,;:-–—(.") + "…"
    return text[:space].rstrip(" ,;:-–—(.") + "…"
