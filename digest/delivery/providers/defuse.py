"""Content must not speak a provider's template language.

A provider that substitutes per recipient (Mailgun, SendGrid, Brevo, SES) receives one
variant's subject, HTML, text and headers and fills *its own* placeholder syntax in them.
Post titles, excerpts, links and cover URLs are in that text, so a feed author who writes
``%recipient.email%`` would have it filled with every reader's address. Before digest's
markers are rewritten into the provider's placeholders (:func:`.http.substitute`), every
occurrence of that provider's syntax is broken, so that the only placeholders left are
digest's own. Each provider declares its syntax (:class:`TemplateSyntax`) next to its
``placeholder()``: a pattern that matches the one character to break at each opening.

How a character is broken keeps what the reader sees the same:

* in HTML, it becomes a numeric character reference (``%`` -> ``&#37;``, ``{`` ->
  ``&#123;``, ``-`` -> ``&#45;``), in text and attribute values alike: the browser decodes
  it, the provider does not see its pattern. Inside ``<style>`` and ``<script>``, where
  references are not decoded, the plain-text rule applies (content never lands there);
* in plain text, the subject and headers, inside a URL (``http(s)://`` up to whitespace) it
  is percent-encoded (``%25``, ``%7B``, ``%2D``; the same resource, and ``{`` is what a
  browser sends encoded anyway); elsewhere a WORD JOINER (U+2060, zero width, no line
  break) follows it. No provider documents an escape that works in every part: Handlebars'
  ``\\{{`` fails when the content itself puts a backslash before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

WORD_JOINER = "\u2060"

_RAW_TEXT = re.compile(r"(<(style|script)\b[^>]*>.*?</\2\s*>)", re.IGNORECASE | re.DOTALL)
_URL = re.compile(r"https?://\S+", re.IGNORECASE)


class Defuse(Protocol):
    """A provider's defusing function: ``text`` with the provider's syntax broken."""

    def __call__(self, text: str, *, html: bool = False) -> str: ...


@dataclass(frozen=True)
class TemplateSyntax:
    """A provider's template syntax, as the characters that open it.

    ``opening`` matches exactly one character: the one whose change breaks an occurrence
    (lookaheads say what must follow it).
    """

    opening: re.Pattern[str]

    def defuse(self, text: str, *, html: bool = False) -> str:
        if not self.opening.search(text):
            return text
        if not html:
            return self._text(text)
        parts = _RAW_TEXT.split(text)
        # split() with two groups yields: text, raw element, element name, text, …
        out: list[str] = []
        for index in range(0, len(parts), 3):
            out.append(self.opening.sub(lambda m: f"&#{ord(m.group())};", parts[index]))
            if index + 1 < len(parts):
                out.append(self._text(parts[index + 1]))
        return "".join(out)

    def _text(self, text: str) -> str:
        urls = [(m.start(), m.end()) for m in _URL.finditer(text)]

        def broken(match: re.Match[str]) -> str:
            char = match.group()
            if any(start <= match.start() < end for start, end in urls):
                return "".join(f"%{byte:02X}" for byte in char.encode())
            return char + WORD_JOINER

        return self.opening.sub(broken, text)
