"""A header of free text (the Subject) as RFC 2047 encoded words that decode exactly.

Python's header folder splits a non-ASCII value between encoded and plain words and puts
the space between them at a line's end or inside an encoded word; decoders that ignore
whitespace between encoded words (RFC 2047, section 6.2) then lose it ("Code’s auto"
arrives as "Code’sauto") or double it. Here the whole value is encoded, spaces included
(as ``_``), in words cut only between characters; the folding whitespace between the
words carries nothing, so every decoder reads the value back as it was.
"""

from __future__ import annotations

WORD_START = "=?utf-8?q?"
WORD_END = "?="
LINE = 78  # the recommended line length (RFC 5322, section 2.1.1)
MAX_WORD = 75  # an encoded word's limit (RFC 2047, section 2)
_LITERAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def _q(char: str) -> str:
    if char == " ":
        return "_"
    if char in _LITERAL:
        return char
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8"))


def encoded_words(value: str, name: str = "Subject") -> str:
    """``value`` as encoded words folded with CRLF and a space, each line (the first with
    ``name: ``) at most 78 characters."""
    words: list[str] = []
    room = min(LINE - len(name) - 2, MAX_WORD) - len(WORD_START) - len(WORD_END)
    current = ""
    for char in value:
        piece = _q(char)
        if current and len(current) + len(piece) > room:
            words.append(WORD_START + current + WORD_END)
            room = min(LINE - 1, MAX_WORD) - len(WORD_START) - len(WORD_END)
            current = ""
        current += piece
    words.append(WORD_START + current + WORD_END)
    return "\r\n ".join(words)
