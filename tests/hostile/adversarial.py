"""1 MB adversarial texts: the shapes that make a backtracking matcher or a recursive
parser take super-linear time, each repeated to about a megabyte.

Each is named for the pattern it stands for. ``ADVERSARIAL`` holds them all; every text
path of digest must get through each within a budget (``test_adversarial.py``).
"""

from __future__ import annotations

MB = 1_000_000


def _fill(unit: str, tail: str = "", head: str = "", size: int = MB) -> str:
    count = max(1, (size - len(head) - len(tail)) // max(1, len(unit)))
    return head + unit * count + tail


# Built lazily: a module-level megabyte per shape would cost every test run the memory.
SHAPES: dict[str, tuple[str, str, str]] = {
    # (unit, tail, head)
    "read-more": ("read more ", "x", ""),  # trailers: overlapping \s* and \W* in a group+
    "continue-reading": ("continue reading ", "x", ""),
    "ellipsis-brackets": ("[…] ", "x", ""),
    "capitals": ("A", "#", "End. "),  # a trailing-name rule: [A-Z][\w.-]+\s* {1,4} and $
    "capital-words": ("Aa ", "#", "End. "),
    "byline": ("By Ann Lee, ", "x", ""),
    "by-and": ("By Ann and ", "x", ""),
    "credit": ("Photo: ", "x", ""),
    "dateline": ("AAAA, ", "x", ""),
    "crumbs": ("Tech ", "x", ""),
    "spaces": (" ", "x", ""),
    "tabs-newlines": ("\t\n", "x", ""),
    "dots": (".", "x", ""),
    "sentence-ends": (". A", "", ""),
    "words": ("word ", "", ""),
    "entities": ("&amp;", "", ""),
    "entity-numbers": ("&#", "", ""),
    "open-brackets": ("[", "", ""),
    "link-openers": ("[a](", "", ""),
    "nested-links": ("[a ", "", ""),
    "parens": ("(", "", ""),
    "stars": ("*a", "", ""),
    "underscores": ("_a", "", ""),
    "backticks": ("`", "", ""),
    "angles": ("<", "", ""),
    "html-comments": ("<!--", "", ""),
    "nested-div": ("<div>", "", ""),
    "nested-blockquote": ("> ", "x", ""),
    "nested-list": ("- ", "x", ""),
    "escaped-quotes": ('\\"', "", '["'),
    "json-nesting": ("[", "", ""),
    "yaml-flow": ("[", "", "title: "),
    "dashes": ("-", "", ""),
    "digits": ("9", "", ""),
    "date-parts": ("2026-", "", ""),
    "colons": (":", "", ""),
    "percent": ("%", "", ""),
    "markers": ("[[digest:", "", ""),
    "control": ("\x1b]", "", ""),
    "bidi": ("\u202e", "a", ""),
    "unicode": ("é\u0301", "", ""),
}


def adversarial(name: str, size: int = MB) -> str:
    unit, tail, head = SHAPES[name]
    return _fill(unit, tail, head, size)


NAMES = tuple(SHAPES)
