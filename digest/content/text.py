"""Plain text from Markdown and HTML, and excerpts without what a scraper kept.

Markdown goes through markdown-it-py and HTML through lxml, so text is taken from the
parse tree rather than carved out with patterns: ``my_var_name``, ``__init__``, "if a < b
and c > d", code spans and nested links come out as a reader wrote them.

Excerpts (from the front matter, or from the body's first paragraphs) are then cleaned by
named rules (:data:`RULES`) that remove what a scraper kept around the text: navigation
crumbs, a repeated title, "Posted:" stamps, bylines with dates, image credits, press-release
datelines, boilerplate sentences (affiliate notes, "sign up here"), and an author's name
left dangling at the end. A site adds its own patterns in ``content.excerpt_patterns``.
Every removal is recorded, so ``digest check --excerpts`` can show what went and why.
"""

from __future__ import annotations

import hashlib
import heapq
import html
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from digest.content.excerpts import PROMOTION, cut_at_boundary

if TYPE_CHECKING:  # the parsers load when a post is parsed: a warm `digest select` needs none
    from lxml import etree  # type: ignore[import-untyped]
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

EXCERPT_LENGTH = 280
RULES_VERSION = 8  # bump when a rule changes, so cached excerpts are made again
SHORT_EXCERPT_WORDS = 12  # a front matter excerpt shorter than this is topped up from the body
# Markdown parsing costs about 20 µs a character on hostile input ("[" × n), so what is
# parsed is bounded: an excerpt (280 characters) is made from the text's opening, a
# near-duplicate sketch from a longer opening; no real post hides its first paragraph
# deeper than that.
EXCERPT_SOURCE_LIMIT = 8_000
SKETCH_SOURCE_LIMIT = 24_000


def head_of(source: str, limit: int) -> str:
    """The first ``limit`` characters of ``source``, cut at a blank line in the second
    half of them when there is one (so the last paragraph kept is whole)."""
    if len(source) <= limit:
        return source
    cut = source.rfind("\n\n", limit // 2, limit)
    return source[: cut if cut != -1 else limit]


# --------------------------------------------------------------------------- entities

_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def decode_entities(value: str) -> str:
    """``value`` with HTML character references decoded; done once, when a post is read.

    A source escaped twice (``&amp;#8217;``) is decoded twice, so no reference is left to
    be shown as text or escaped again by a template.
    """
    for _ in range(2):
        if "&" not in value or _ENTITY.search(value) is None:
            break
        value = html.unescape(value)
    return value


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Block:
    """One block of a document as plain text: a paragraph, heading, list item or code."""

    kind: str  # "p", "h", "li", "code", "quote"
    text: str


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


_WS = re.compile(r"\s+")
_DROP_TAGS = frozenset(
    {"script", "style", "figure", "figcaption", "nav", "iframe", "svg", "noscript", "form",
     "button", "select", "template", "object", "embed", "video", "audio", "canvas", "img",
     "picture", "source", "head", "title", "meta", "link"}
)  # fmt: skip
_BLOCK_TAGS = frozenset(
    {"p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote",
     "ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "td", "th",
     "h1", "h2", "h3", "h4", "h5", "h6", "pre", "br", "hr", "address", "details", "summary"}
)  # fmt: skip
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# Literal link syntax left over when a link held another one ("[a [b](u) c](v)"): CommonMark
# keeps the inner link and leaves the outer brackets as text.
_LEFTOVER_LINK = re.compile(r"\[([^\[\]]*)\]\((?:[^()\s]|\([^()\s]*\))*\)")


def _fold_space(text: str) -> str:
    return _WS.sub(" ", text.replace("\u00a0", " ").replace("\u200b", "")).strip()


def html_blocks(markup: str) -> list[Block]:
    """The text of an HTML fragment, block by block (scripts, figures, navigation dropped)."""
    if not markup.strip():
        return []
    import lxml.html  # type: ignore[import-untyped]
    from lxml import etree

    try:
        root = lxml.html.fragment_fromstring(markup, create_parent="div")
    except (etree.ParserError, ValueError):
        return []
    blocks: list[Block] = []
    current: list[str] = []
    kind = ["p"]

    def flush() -> None:
        text = _fold_space("".join(current))
        if text:
            blocks.append(Block(kind[0], decode_entities(text)))
        current.clear()
        kind[0] = "p"

    def walk(element: etree._Element) -> None:
        tag = element.tag if isinstance(element.tag, str) else ""
        tag = tag.lower()
        if tag in _DROP_TAGS or not isinstance(element.tag, str):
            if element.tail:
                current.append(element.tail)
            return
        block = tag in _BLOCK_TAGS
        if block:
            flush()
            if tag in _HEADINGS:
                kind[0] = "h"
            elif tag == "li":
                kind[0] = "li"
            elif tag == "pre":
                kind[0] = "code"
        if element.text:
            current.append(element.text)
        for child in element:
            walk(child)
        if block:
            flush()
        if element.tail:
            current.append(element.tail)

    walk(root)
    flush()
    return blocks


def _inline_text(children: Sequence[Token]) -> str:
    out: list[str] = []
    index = 0
    while index < len(children):
        token = children[index]
        kind = token.type
        if kind in ("text", "code_inline"):
            out.append(token.content)
        elif kind in ("softbreak", "hardbreak"):
            out.append(" ")
        elif kind == "html_inline":
            if re.match(r"<br\b", token.content, re.IGNORECASE):
                out.append(" ")
        elif kind in ("em_open", "strong_open") and token.markup.startswith("_"):
            # "__init__" and "_private" are names, not emphasis, when a single word is marked.
            closing = kind.replace("_open", "_close")
            if (
                index + 2 < len(children)
                and children[index + 1].type == "text"
                and children[index + 2].type == closing
                and re.fullmatch(r"\w+", children[index + 1].content)
            ):
                marks = token.markup
                out.append(f"{marks}{children[index + 1].content}{marks}")
                index += 3
                continue
        elif kind == "image":
            pass  # an image's alt text is not prose
        index += 1
    text = "".join(out)
    for _ in range(3):
        cleaned = _LEFTOVER_LINK.sub(r"\1", text)
        if cleaned == text:
            break
        text = cleaned
    return text


def markdown_blocks(source: str, *, dedent: bool = False) -> list[Block]:
    """The text of a Markdown document (with any HTML in it), block by block.

    ``dedent`` strips every line's leading spaces first: scraped bodies indent prose by
    accident, which Markdown would read as code.
    """
    if dedent:
        source = _dedent_outside_fences(source)
    blocks: list[Block] = []
    stack: list[str] = []
    for token in _markdown().parse(source):
        if token.type.endswith("_open"):
            stack.append(token.type[: -len("_open")])
        elif token.type.endswith("_close"):
            if stack:
                stack.pop()
        elif token.type == "inline":
            text = _fold_space(_inline_text(token.children or []))
            if not text:
                continue
            if "heading" in stack:
                kind = "h"
            elif "list_item" in stack:
                kind = "li"
            elif "blockquote" in stack:
                kind = "quote"
            else:
                kind = "p"
            blocks.append(Block(kind, text))
        elif token.type == "html_block":
            blocks.extend(html_blocks(token.content))
        elif token.type in ("fence", "code_block"):
            text = token.content.strip()
            if text:
                blocks.append(Block("code", text))
    return blocks


def _dedent_outside_fences(source: str) -> str:
    lines: list[str] = []
    fence: str | None = None
    for line in source.splitlines():
        stripped = line.strip()
        if fence is None and re.match(r"(```|~~~)", stripped):
            fence = stripped[:3]
        elif fence is not None and stripped.startswith(fence):
            fence = None
            lines.append(stripped)
            continue
        lines.append(line if fence is not None else stripped)
    return "\n".join(lines)


def clean_text(value: str) -> str:
    """HTML and Markdown to one line of plain text: markup gone, entities decoded."""
    blocks = markdown_blocks(head_of(value, EXCERPT_SOURCE_LIMIT))
    return " ".join(b.text for b in blocks if b.kind != "code")


# --------------------------------------------------------------------------- excerpt rules

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DATE = (
    rf"(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}\s+{_MONTH},?\s+\d{{4}}"
    r"|\d{4}-\d{2}-\d{2})"
)
_TIME = (
    r"(?:\d{1,2}:\d{2}(?:\s*[AaPp]\.?\s?[Mm]\.?)?"
    r"(?:\s+(?:[ECMP][SD]?T|UTC|GMT|BST|CET|CEST|IST|JST|AEST)(?:[+-]\d{1,2})?)?)"
)
_STAMP = rf"(?:{_TIME}\s*[·|,•-]?\s*{_DATE}|{_DATE}(?:,?\s*(?:at\s+)?{_TIME})?)"
_NAME = r"[A-Z][\w'’.-]+(?:\s+(?:[A-Z][\w'’.-]+|de|van|von|da|di|del|la|le)){0,3}"
_ROLE = (
    r"(?:(?:Senior|Staff|Contributing|Associate|Managing|Deputy|Chief|Lead|Executive)\s+){0,2}"
    r"(?:Contributor|Editor|Writer|Reporter|Analyst|Correspondent|Columnist|Producer)"
)
_AGENCIES = (
    r"(?:Getty Images|Shutterstock|Unsplash|Reuters|AP Photo|Associated Press|AFP|Alamy|"
    r"iStock(?:photo)?|Pexels|EPA|Bloomberg|Wikimedia Commons|\(opens in a new window\))"
)
_POSTED = re.compile(
    rf"(?:\bIn Brief\s+)?\b(?:Posted|Published|Updated|Last updated)(?:\s+on)?:?\s*{_STAMP}",
    re.IGNORECASE,
)
# At most six names: an unbounded list let "By Ann Lee, By Ann Lee, …" run to the end of
# the text from every "By" and back, which is quadratic.
_BYLINE = re.compile(
    rf"\b(?:By|(?:Written|Reported|Words)\s+by)\s+{_NAME}(?:\s*(?:,|and|&)\s*{_NAME}){{0,5}}"
    rf"(?:,?\s+{_ROLE}\w*)?\s*[,|·•-]?\s*(?:(?:Updated|Published):?\s*)?{_STAMP}"
)
_ROLE_BYLINE = re.compile(
    rf"\b{_NAME},\s*{_ROLE}(?:{_ROLE})?(?:\s*[,|·•-]?\s*{_STAMP}(?:\s+[A-Z]{{2,4}}\b)?)?"
)
_CREDIT = re.compile(
    r"(?P<bar>\|\s*)?\b(?:Image|Photo|Photograph|Illustration|Video|Picture)\s*"
    r"(?:Credits?|by)?\s*:\s*",
    re.IGNORECASE,
)
_CREDIT_END = re.compile(rf"^.{{0,80}}{_AGENCIES}", re.DOTALL)
# Credits that name a photo agency: in parentheses anywhere, or bare ("JuSun/Getty Images",
# "NurPhoto via Getty Images"); news agencies count only after a slash or "via", since
# "according to Reuters" is prose.
_PAREN_CREDIT = re.compile(rf"\((?:[^()]{{0,80}}?(?:/|\bvia\b|\bfor\b)\s*)?{_AGENCIES}\)")
_BARE_CREDIT = re.compile(
    r"(?:Getty\s?Images|Shutterstock|iStock(?:photo)?|Alamy|AP Photo)(?:\s+Plus)?"
    r"|(?:/|\bvia\s+)(?:Reuters|AFP|EPA|Unsplash|Bloomberg|Pexels|Wikimedia Commons)\b"
)
# A byline cut off at the end of a scraped excerpt: "… chip production. By Anna…"
_TRAILING_BYLINE = re.compile(
    r"(?<=[.!?])[\"”’]?\s+(?:(?:Written|Reported)\s+)?[Bb]y(?:\s+[A-Z][^.!?…]{0,60})?"
    r"(?:\.\.\.|…)?\s*$"
)
# A photo caption and its credit before the text: "OpenAI CEO Sam Altman. | Bloomberg via
# Getty Images OpenAI says…"
_CAPTION_CREDIT = re.compile(rf"^[^|]{{1,200}}?\s\|\s.{{0,80}}{_AGENCIES}", re.DOTALL)
_DATELINE = re.compile(
    rf"(?:^|(?<=[.!?]\s))[A-Z][A-Z.'’ -]{{2,40}}(?:,\s*[A-Z][A-Za-z. ]{{1,30}})?,\s*{_DATE}"
    r"\s*[—–-]+\s*"
)
_CRUMBS = re.compile(r"^(?P<section>[A-Z][\w&]*(?:\s+[&\w]+){0,2})\s+Home\s+(?P=section)\b")
_BOILERPLATE_BUILTIN = (
    r"why you can trust",
    r"independently tests and researches",
    r"(?:we|may) (?:may )?earn (?:an? )?(?:affiliate )?commission",
    r"commissions? from (?:our )?links",
    r"(?:if|when) you (?:buy|purchase) (?:something )?through (?:our )?links",
    r"subscribe to our newsletter",
    r"cookie(?:s)? (?:policy|settings)",
    r"skip to (?:main )?content",
    r"\bsign up here\b",
    r"\bsign up (?:for|to) (?:our|the) (?:newsletter|mailing list)",
    r"originally appeared (?:in|on)\b",
    r"to get (?:stories|articles|posts) like this",
    r"\blisten on (?:apple podcasts|spotify|google podcasts|youtube)",
    r"^(?:written|reviewed|edited) by\b",
    r"^\d+ min(?:ute)? read$",
    r"\b(?:contributing|senior|staff) (?:editor|writer)\b",
    r"\bexpert staff finds the best\b",
    r"^loading the (?:player|video)\b",
    r"\b(?:recommendations|reviews|ratings) are based on\b",
    r"\bwhat exactly does it mean\?",
    r"\badd us as a preferred source\b",
    r"\bdoes not affect (?:what we cover|the price you pay)\b",
    r"\bwe gather data from\b",
    r"\bpore over customer reviews\b",
    r"\b(?:are|is) (?:not )?compensated\b",
    r"\bfollow us on (?:google|twitter|x|facebook)\b",
    *PROMOTION,
)
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"”’)]))\s+(?=[\"“‘'(A-Z0-9])")
# One to four capitalised words, each at most 40 characters and separated by spacing: the
# words cannot be split more than one way, so a long run of capitals fails in linear time
# ("[A-Z][\w.-]+\s*" repeated could split "AAA…A#" every way there is).
_TRAILING_NAME = re.compile(
    r"(?<=[.!?])[\"”’]?\s+[A-Z][\w'’.-]{1,40}(?:\s+[A-Z][\w'’.-]{1,40}){0,3},?\s*$"
)
TAIL = 400  # the end of an excerpt the trailing rules look at


@dataclass(frozen=True)
class Removal:
    """What one rule took out of one excerpt."""

    rule: str
    text: str


@dataclass
class Cleaned:
    text: str
    removed: list[Removal] = field(default_factory=list)


def _fold(value: str) -> str:
    value = unicodedata.normalize("NFKC", value).casefold()
    return _WS.sub(" ", re.sub(r"[^\w\s]", " ", value)).strip()


def normalise_title(title: str) -> str:
    """The form two titles share when they are the same title: case, punctuation and
    spacing folded."""
    return _fold(title.replace("-", ""))


def _title_span(text: str, title: str, within: int = 240) -> tuple[int, int] | None:
    """Where the title (or, in a cut-off excerpt, its first words) appears near the start."""
    words = [w for w in re.split(r"\W+", title) if w]
    if len(words) < 2 and len(title) < 12:
        return None
    for count in range(len(words), max(2, min(4, len(words))) - 1, -1):
        pattern = r"\W+".join(re.escape(w) for w in words[:count])
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match is not None and match.start() <= within:
            cut_off = re.match(r"\W*\w*(…|\.\.\.)\s*$", text[match.end() :])
            if count < len(words) and cut_off is None:
                continue  # only a whole title, or a title cut off at the very end
            return match.start(), match.end()
    return None


class ExcerptCleaner:
    """The excerpt rules, with a site's own patterns (``content.excerpt_patterns``)."""

    def __init__(self, patterns: Iterable[str] = (), limit: int = EXCERPT_LENGTH) -> None:
        self.patterns = tuple(patterns)
        self.limit = limit
        self.boilerplate = re.compile(
            "|".join(f"(?:{p})" for p in _BOILERPLATE_BUILTIN), re.IGNORECASE
        )
        self.custom = [re.compile(p, re.IGNORECASE) for p in self.patterns]
        key = "\0".join((str(RULES_VERSION), str(limit), *self.patterns)).encode()
        self.fingerprint = hashlib.sha256(key).hexdigest()[:12]

    # ---- rules on one run of text

    def scrub(self, text: str, title: str, removed: list[Removal], *, body: bool = False) -> str:
        """Apply every rule to ``text``; what is taken out is added to ``removed``."""

        def take(rule: str, piece: str) -> None:
            piece = piece.strip()
            if piece:
                removed.append(Removal(rule, piece))

        for pattern in self.custom:
            for match in list(pattern.finditer(text)):
                take("pattern", match.group(0))
            text = pattern.sub(" ", text)

        crumbs = _CRUMBS.match(text)
        span = _title_span(text, title) if title else None
        if span is not None and span[0] == 0 and re.match(r"\s*[a-z,;(]", text[span[1] :]):
            span = None  # the excerpt's first sentence begins with the title's words
        if crumbs is not None and span is None:
            take("crumbs", text)  # a crumb trail with no title to end it: no excerpt
            return ""
        if span is not None:
            take("crumbs" if crumbs else "repeated-title", text[: span[1]])
            text = text[span[1] :]
        text = text.lstrip(" -–—:|·'\"’”")

        for match in list(_POSTED.finditer(text)):
            take("posted-stamp", match.group(0))
        text = _POSTED.sub(" ", text)

        for regex in (_BYLINE, _ROLE_BYLINE):
            byline = regex.search(text)
            if byline is None:
                continue
            before = text[: byline.start()].strip()
            if len(before.split()) >= 4:
                # The dek before a byline is the summary; what follows is credits and body.
                take("byline", text[byline.start() :])
                text = before
            else:
                take("byline", text[: byline.end()])
                text = text[byline.end() :]

        caption = _CAPTION_CREDIT.match(text)
        if caption is not None:
            take("image-credit", caption.group(0))
            text = text[caption.end() :]
        credit = _CREDIT.search(text)
        while credit is not None:
            start = 0 if credit.group("bar") else credit.start()
            rest = text[credit.end() :]
            end = _CREDIT_END.match(rest)
            if end is None:
                take("image-credit", text[start:])
                text = text[:start]
                break
            take("image-credit", text[start : credit.end() + end.end()])
            text = text[:start] + " " + rest[end.end() :]
            credit = _CREDIT.search(text)

        for match in list(_PAREN_CREDIT.finditer(text)):
            take("image-credit", match.group(0))
        text = _PAREN_CREDIT.sub(" ", text)
        agency = _BARE_CREDIT.search(text)
        while agency is not None:
            # A photo credit left in the text ("… first. Jane Doe JuSun/Getty ImagesThe …"):
            # the credit starts after the last sentence before it; a summary before that
            # stays, and what follows the credit is the article's body.
            ends = list(re.finditer(r"[.!?…][\"”’)]?\s", text[: agency.start()]))
            start = ends[-1].end() if ends else 0
            if len(text[:start].split()) >= 4:
                take("image-credit", text[start:])
                text = text[:start]
                break
            take("image-credit", text[: agency.end()])
            text = text[agency.end() :]
            agency = _BARE_CREDIT.search(text)

        for match in list(_DATELINE.finditer(text)):
            take("dateline", match.group(0))
        text = _DATELINE.sub("", text)

        kept: list[str] = []
        sentences = _SENTENCE_END.split(_fold_space(text))
        junk = [s for s in sentences if self.boilerplate.search(s)]
        junk_share = sum(len(j) for j in junk) / max(1, sum(len(x) for x in sentences))
        if body and len(junk) >= 2 and junk_share >= 0.5:
            take("boilerplate", text)  # a disclosure paragraph: none of it is the story
            return ""
        for sentence in sentences:
            if sentence in junk:
                take("boilerplate", sentence)
            else:
                kept.append(sentence)
        text = " ".join(kept)
        tail = _TRAILING_BYLINE.search(text, max(0, len(text) - TAIL))
        if tail is not None:
            take("byline", tail.group(0))
            text = text[: tail.start() + 1]

        if not re.search(r"(\.\.\.|…)\s*$", text):
            tail = _TRAILING_NAME.search(text, max(0, len(text) - TAIL))
            if tail is not None and len(text[: tail.start()].split()) >= 6:
                take("trailing-name", tail.group(0))
                text = text[: tail.start() + 1]
        return _fold_space(text)

    # ---- excerpts

    def tidy(self, raw: str, title: str) -> Cleaned:
        """A front matter excerpt, cleaned; empty when nothing worth showing is left."""
        removed: list[Removal] = []
        text = self.scrub(clean_text(raw), title, removed)
        truncated = bool(re.search(r"(\.\.\.|…)\s*$", text))
        if truncated:
            text = re.sub(r"\s*(\.\.\.|…)\s*$", "", text)
            if re.search(r"\w$", text) and " " in text:
                text = text.rsplit(" ", 1)[0]  # the last word was cut mid-way
            text = text.rstrip(" ,;:-–—(") + "…"
        if len(text.rstrip("…").split()) < 3:
            if text:
                removed.append(Removal("too-short", text))
            return Cleaned("", removed)
        return Cleaned(cut_at_boundary(text, self.limit), removed)

    def paragraphs(
        self,
        body: str,
        title: str,
        removed: list[Removal],
        *,
        strict: bool = True,
        blocks: Sequence[Block] | None = None,
    ) -> Iterator[str]:
        """The body's prose, paragraph by paragraph: headings, lists, code, crumbs, bylines,
        credits and other fragments that are not sentences are skipped. ``blocks`` is the
        body already parsed (:func:`body_blocks`)."""
        first = True
        for block in body_blocks(body) if blocks is None else blocks:
            if block.kind in ("h", "code", "li"):
                continue
            raw = block.text
            if not first and title and _fold(raw).startswith(_fold(title)):
                span = _title_span(raw, title)  # the title again, as its own paragraph
                if span is not None and span[0] == 0:
                    removed.append(Removal("repeated-title", raw[: span[1]]))
                    raw = raw[span[1] :]
            text = self.scrub(raw, title if first else "", removed, body=True)
            if not text:
                continue
            # Before the first sentence, a block must read as one: ending like a sentence,
            # or long (crumbs and series labels are neither). After it, a block must end like
            # a sentence or be long (bylines, dates and credits do not).
            ends = re.search(r"[.!?:…]\W*$", text) is not None
            words = len(text.split())
            if first:
                keep = _sentence_like(text) and (ends or words >= 20 or not strict)
            else:
                keep = ends or words >= 8
            if not keep:
                removed.append(Removal("fragment", text))
                continue
            first = False
            yield text

    def from_body(self, body: str, title: str) -> Cleaned:
        removed: list[Removal] = []
        text = ""
        blocks = body_blocks(body)
        for strict in (True, False):  # a long fragment may open the text when nothing else does
            removed.clear()
            for paragraph in self.paragraphs(body, title, removed, strict=strict, blocks=blocks):
                text = f"{text} {paragraph}".strip()
                if len(text) >= self.limit:
                    break
            if text:
                break
        return Cleaned(cut_at_boundary(text, self.limit), removed)


def body_blocks(body: str) -> list[Block]:
    """The blocks of a body's opening (:data:`EXCERPT_SOURCE_LIMIT`), as excerpts read it."""
    return markdown_blocks(head_of(body, EXCERPT_SOURCE_LIMIT), dedent=True)


def _sentence_like(line: str) -> bool:
    words = line.split()
    return len(words) >= 8 or (bool(re.search(r"[.!?:…]\W*$", line)) and len(words) >= 4)


def cut_at_word(text: str, limit: int = EXCERPT_LENGTH) -> str:
    """At most ``limit`` characters, ending on a whole word, with an ellipsis if cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else text[:limit]
    return cut.rstrip(" ,;:-–—(") + "…"


DEFAULT_CLEANER = ExcerptCleaner()


def tidy_excerpt(raw: str, title: str, limit: int = EXCERPT_LENGTH) -> str:
    cleaner = DEFAULT_CLEANER if limit == EXCERPT_LENGTH else ExcerptCleaner(limit=limit)
    return cleaner.tidy(raw, title).text


def excerpt_from_body(body: str, title: str = "", limit: int = EXCERPT_LENGTH) -> str:
    cleaner = DEFAULT_CLEANER if limit == EXCERPT_LENGTH else ExcerptCleaner(limit=limit)
    return cleaner.from_body(body, title).text


# --------------------------------------------------------------------------- near-duplicates

SKETCH_SIZE = 128
SHINGLE_WORDS = 4
MIN_SKETCH_WORDS = 30  # shorter bodies are too short to call two of them the same


def body_words(body: str) -> list[str]:
    """The words of a body's prose (code, headings and markup left out), case-folded."""
    source = head_of(body, SKETCH_SOURCE_LIMIT)
    text = " ".join(b.text for b in markdown_blocks(source, dedent=True) if b.kind != "code")
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())


def sketch(words: Sequence[str], size: int = SKETCH_SIZE) -> tuple[int, ...]:
    """A bottom-k MinHash sketch of a text's word shingles: the ``size`` smallest 60-bit
    hashes of its 4-word shingles. Two sketches estimate the Jaccard similarity of the
    texts (:func:`similarity`); empty when the text is too short to judge."""
    if len(words) < MIN_SKETCH_WORDS:
        return ()
    hashes = {
        int.from_bytes(
            hashlib.blake2b(
                " ".join(words[i : i + SHINGLE_WORDS]).encode(), digest_size=8
            ).digest(),
            "big",
        )
        >> 4
        for i in range(len(words) - SHINGLE_WORDS + 1)
    }
    return tuple(sorted(heapq.nsmallest(size, hashes)))


def similarity(
    a: Iterable[int], b: Iterable[int], size: int = SKETCH_SIZE, at_least: float = 0.0
) -> float:
    """The estimated Jaccard similarity of two texts from their sketches (0 when either is
    empty): of the ``size`` smallest hashes of both, the share that both texts hold.

    Pass frozensets when comparing one sketch many times. With ``at_least``, a pair that
    cannot reach it (too few hashes in common) returns 0.0 without the full estimate.
    """
    set_a = a if isinstance(a, frozenset) else frozenset(a)
    set_b = b if isinstance(b, frozenset) else frozenset(b)
    if not set_a or not set_b:
        return 0.0
    common = set_a & set_b
    count = min(size, len(set_a) + len(set_b) - len(common))
    if len(common) < at_least * count:
        return 0.0  # even if every common hash were among the smallest, it falls short
    union = sorted(set_a | set_b)[:count]
    both = sum(1 for h in union if h in common)
    return both / count
