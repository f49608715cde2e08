"""RSS 2.0, Atom and JSON Feed 1.x documents, read into plain entry records.

:func:`parse_feed` turns the bytes of a feed into a list of JSON-safe records (what the
per-source cache stores); :func:`post_from_entry` turns one record into the same
:class:`~digest.content.posts.Post` a Markdown file becomes. RSS and Atom are read by
feedparser, which copes with what real feeds do (CDATA, undeclared or wrong encodings,
HTML in titles, ``xml:base`` and relative links, RSS 0.9x to Atom 1.0); JSON Feed (1.0 and
1.1) is read here by its specification (https://jsonfeed.org/version/1.1).

Every piece of HTML is sanitised (:mod:`.sanitize`) before it goes into a record, so
nothing unsafe is cached or reaches an email.

Real-world quirks handled on purpose:

* an entry without a date is dated when digest first saw it (``first_seen``, kept across
  fetches), so it appears in one issue, not never or every week;
* an entry without an id is identified by its link, else by its title and date;
* relative links and image addresses are resolved against the entry's or feed's base;
* dates keep the offset they were written with (``-0800`` stays ``-08:00``); a date with
  no offset at all is read as UTC, as feedparser does.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import feedparser

from digest.content.posts import MAX_YEAR, MIN_YEAR, YEARS, Post, content_safe
from digest.content.select import slugify
from digest.content.sources.jsondepth import json_too_deep
from digest.content.sources.sanitize import absolute_url, first_image, sanitize_html
from digest.content.sources.trailers import drop_post_paragraphs, strip_trailers
from digest.content.text import (
    DEFAULT_CLEANER,
    EXCERPT_SOURCE_LIMIT,
    SHORT_EXCERPT_WORDS,
    ExcerptCleaner,
    body_words,
    clean_text,
    cut_at_word,
    head_of,
    sketch,
)

# Bump when what a record holds changes, so cached records are parsed again.
RECORD_VERSION = 1

_JSON_FEED_VERSION = re.compile(r"^https?://jsonfeed\.org/version/1(\.\d+)?/?$")
_IMAGE_TYPES = re.compile(r"^image/", re.IGNORECASE)
_IMAGE_EXTENSIONS = re.compile(r"\.(jpe?g|png|gif|webp|avif)(\?|$)", re.IGNORECASE)


class FeedParseError(Exception):
    """The bytes are not a feed digest can read (the message says why)."""


class FeedEntryError(ValueError):
    """One entry cannot be used (the message says why); the feed's other entries can."""


@dataclass(frozen=True)
class ParsedFeed:
    kind: str  # "rss20", "atom10", "json1.1", … (feedparser's version names for XML)
    title: str
    entries: list[dict[str, Any]]


# --------------------------------------------------------------------------- parsing


def parse_feed(
    data: bytes,
    *,
    base_url: str | None = None,
    content_type: str | None = None,
    now: datetime,
) -> ParsedFeed:
    """Read a feed's bytes. ``base_url`` is where it came from (for relative links);
    ``now`` dates entries that carry no date. Raises :class:`FeedParseError`."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"{" or (content_type and "json" in content_type.lower() and head != b"<"):
        return _parse_json_feed(data, base_url, now)
    return _parse_xml_feed(data, base_url, content_type, now)


def _parse_xml_feed(
    data: bytes, base_url: str | None, content_type: str | None, now: datetime
) -> ParsedFeed:
    # feedparser does ~6 µs of Python per parser event, and expat reports one per tag, per
    # character reference and per line: a megabyte of "&amp;" is 200,000 events. Counted
    # first (three linear byte counts), a feed with more is refused, not parsed for seconds.
    events = data.count(b"<") + data.count(b"&") + data.count(b"\n")
    if events > MAX_XML_EVENTS:
        raise FeedParseError(
            f"the feed holds {events:,} tags, character references and lines, over "
            f"{MAX_XML_EVENTS:,}; not parsed"
        )
    headers: dict[str, str] = {}
    if base_url:
        headers["content-location"] = base_url
    if content_type:
        headers["content-type"] = content_type
    # Links are resolved by feedparser (xml:base, the document's address); addresses inside
    # HTML are resolved here against the entry's own link, where the HTML was written. The
    # HTML is sanitised here too (nh3, below), so feedparser's slower sanitiser is off.
    parsed = feedparser.parse(
        data, response_headers=headers, resolve_relative_uris=False, sanitize_html=False
    )
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        detail = f": {_short(str(problem))}" if problem else ""
        raise FeedParseError(f"not an RSS, Atom or JSON feed{detail}")
    feed = parsed.feed
    base = absolute_url(feed.get("link"), base_url) or base_url
    entries = []
    for entry in parsed.entries:
        record = _xml_entry(entry, base, now)
        if record is not None:
            entries.append(record)
    return ParsedFeed(parsed.get("version") or "xml", _plain(feed.get("title", "")), entries)


def _xml_entry(entry: Mapping[str, Any], base: str | None, now: datetime) -> dict[str, Any] | None:
    link = absolute_url(entry.get("link"), base)
    entry_base = link or base
    title_detail = entry.get("title_detail") or {}
    raw_title = entry.get("title") or ""
    is_html = "html" in str(title_detail.get("type", "text/plain"))
    title = clean_text(raw_title) if is_html else _plain(raw_title)

    summary = sanitize_html(_html_of(entry.get("summary_detail"), entry.get("summary")), entry_base)
    contents = entry.get("content") or []
    body = ""
    for item in contents:  # the richest one: text/html over text/plain
        value = _html_of(item, item.get("value"))
        if len(value) > len(body):
            body = value
    body = sanitize_html(body, entry_base)
    if summary and body and (summary == body or clean_text(summary) == clean_text(body)):
        summary = ""  # RSS without content:encoded: feedparser repeats the description

    date_text = None
    for key in ("published", "updated", "created"):
        moment = _entry_date(entry.get(key), entry.get(f"{key}_parsed"))
        if moment is not None:
            date_text = moment.isoformat()
            break

    cover = _xml_cover(entry, entry_base)
    categories = [
        _plain(tag.get("term") or tag.get("label") or "") for tag in entry.get("tags") or []
    ]
    author = entry.get("author") or ""
    identity = entry.get("id") or entry.get("guid") or ""
    return _record(
        identity=str(identity),
        title=title,
        link=link,
        date=date_text,
        summary=summary,
        body=body or summary,
        cover=cover or first_image(body or summary),
        categories=categories,
        author=_plain(author),
        now=now,
    )


def _html_of(detail: Mapping[str, Any] | None, value: Any) -> str:
    """A text construct as HTML: plain text is escaped, HTML is kept (and sanitised later)."""
    text = str(value or "")
    kind = str((detail or {}).get("type", "text/html"))
    if "html" in kind or "xml" in kind:
        return text
    return "<p>" + html.escape(text).replace("\n\n", "</p><p>") + "</p>" if text else ""


def _xml_cover(entry: Mapping[str, Any], base: str | None) -> str | None:
    for media in entry.get("media_content") or []:
        kind = str(media.get("type") or "")
        medium = str(media.get("medium") or "")
        url = media.get("url")
        if (
            medium == "image"
            or _IMAGE_TYPES.match(kind)
            or (not kind and not medium and url and _IMAGE_EXTENSIONS.search(str(url)))
        ):
            found = absolute_url(url, base)
            if found:
                return found
    for thumb in entry.get("media_thumbnail") or []:
        found = absolute_url(thumb.get("url"), base)
        if found:
            return found
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and _IMAGE_TYPES.match(str(link.get("type") or "")):
            found = absolute_url(link.get("href"), base)
            if found:
                return found
    image = entry.get("image")
    if isinstance(image, Mapping):
        return absolute_url(image.get("href") or image.get("url"), base)
    return None


def _entry_date(raw: Any, parsed: Any) -> datetime | None:
    """The entry's date with the offset it was written with; feedparser's UTC reading as a
    fallback for the formats only it understands."""
    moment = _parse_date_text(raw.strip()) if isinstance(raw, str) and raw.strip() else None
    if moment is not None and (moment.utcoffset() or not parsed or _says_utc(moment, raw)):
        return moment
    if parsed:  # a named zone ("CET", "PST") only feedparser knows
        try:
            return datetime.fromtimestamp(calendar.timegm(parsed), tz=timezone.utc)
        except (OverflowError, ValueError, TypeError):
            return None
    return None


def _says_utc(moment: datetime, raw: Any) -> bool:
    if moment.tzinfo is None:
        return False
    return bool(re.search(r"(\b(GMT|UTC?)|[+-]00:?00|Z)\s*$", str(raw), re.IGNORECASE))


# Zone names feeds write that RFC 822 parsers do not know (the US ones they do).
_NAMED_ZONES = {
    "CET": "+0100", "CEST": "+0200", "MET": "+0100", "MEST": "+0200", "WET": "+0000",
    "WEST": "+0100", "EET": "+0200", "EEST": "+0300", "BST": "+0100", "MSK": "+0300",
    "JST": "+0900", "KST": "+0900", "HKT": "+0800", "SGT": "+0800", "AEST": "+1000",
    "AEDT": "+1100", "ACST": "+0930", "AWST": "+0800", "NZST": "+1200", "NZDT": "+1300",
}  # fmt: skip
_ZONE_NAME = re.compile(r"\s([A-Z]{3,4})\s*$")


def _parse_date_text(text: str) -> datetime | None:
    named = _ZONE_NAME.search(text)
    if named and named.group(1) in _NAMED_ZONES:
        text = text[: named.start()] + " " + _NAMED_ZONES[named.group(1)]
    try:
        moment = parsedate_to_datetime(text)  # RFC 822 / 2822, as RSS writes it
    except (TypeError, ValueError, IndexError):
        iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
        iso = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", iso)  # +0200 -> +02:00
        try:
            moment = datetime.fromisoformat(iso.replace(" ", "T", 1) if "T" not in iso else iso)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


MAX_XML_EVENTS = 100_000  # a week of a busy full-text feed holds a tenth of that
MAX_JSON_DEPTH = 100  # a JSON Feed nests 4 deep; 200,000 deep overflowed the parser's stack


def _json_int(text: str) -> int | str:
    return int(text) if len(text) <= 40 else text


def _parse_json_feed(data: bytes, base_url: str | None, now: datetime) -> ParsedFeed:
    try:
        text = data.decode("utf-8-sig")
        too_deep = json_too_deep(text, MAX_JSON_DEPTH)
        if too_deep is not None:
            raise FeedParseError(
                f"not valid JSON: nested more than {MAX_JSON_DEPTH} deep at character {too_deep}"
            )
        # JSON Feed 1.0 ids may be numbers, read as strings: a long one stays the string it
        # is (int() refuses more than 4,300 digits, and nothing here counts with it)
        document = json.loads(text, parse_int=_json_int)
    except UnicodeDecodeError as exc:
        raise FeedParseError(f"a JSON Feed must be UTF-8 (byte at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise FeedParseError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError as exc:  # a number the parser refuses
        raise FeedParseError(f"not valid JSON: {_short(str(exc))}") from None
    if not isinstance(document, dict):
        raise FeedParseError("not a JSON Feed: the top level is not an object")
    version = document.get("version")
    if not isinstance(version, str) or not _JSON_FEED_VERSION.match(version.strip()):
        raise FeedParseError(
            f"not a JSON Feed: version is {_short(repr(version))}, "
            "expected https://jsonfeed.org/version/1.1"
        )
    items = document.get("items")
    if not isinstance(items, list):
        raise FeedParseError("not a JSON Feed: items is not a list")
    base = _str(document.get("home_page_url")) or _str(document.get("feed_url")) or base_url
    base = absolute_url(base, base_url) or base_url
    feed_author = _json_author(document)
    entries = []
    for item in items:
        if isinstance(item, dict):
            record = _json_entry(item, base, feed_author, now)
            if record is not None:
                entries.append(record)
    kind = "json" + version.rstrip("/").rsplit("/", 1)[-1]
    return ParsedFeed(kind, _plain(_str(document.get("title")) or ""), entries)


def _json_entry(
    item: Mapping[str, Any], base: str | None, feed_author: str, now: datetime
) -> dict[str, Any] | None:
    link = absolute_url(_str(item.get("url")), base) or absolute_url(
        _str(item.get("external_url")), base
    )
    entry_base = link or base
    content_html = _str(item.get("content_html"))
    content_text = _str(item.get("content_text"))
    body = sanitize_html(
        content_html or (_html_of({"type": "text"}, content_text) if content_text else ""),
        entry_base,
    )
    summary_text = _str(item.get("summary"))
    summary = _html_of({"type": "text"}, summary_text) if summary_text else ""
    date_text = None
    for key in ("date_published", "date_modified"):
        raw = _str(item.get(key))
        moment = _parse_date_text(raw) if raw else None
        if moment is not None:
            date_text = moment.isoformat()
            break
    cover = (
        absolute_url(_str(item.get("image")), entry_base)
        or absolute_url(_str(item.get("banner_image")), entry_base)
        or _json_attachment_image(item, entry_base)
        or first_image(body)
    )
    tags = item.get("tags")
    categories = [_plain(t) for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    identity = item.get("id")
    return _record(
        # JSON Feed 1.0 allowed numbers as ids; the spec says to read them as strings.
        identity="" if identity is None or isinstance(identity, (dict, list)) else str(identity),
        title=_plain(_str(item.get("title")) or ""),
        link=link,
        date=date_text,
        summary=summary,
        body=body,
        cover=cover,
        categories=categories,
        author=_json_author(item) or feed_author,
        now=now,
    )


def _json_attachment_image(item: Mapping[str, Any], base: str | None) -> str | None:
    attachments = item.get("attachments")
    for attachment in attachments if isinstance(attachments, list) else []:
        if isinstance(attachment, dict) and _IMAGE_TYPES.match(_str(attachment.get("mime_type"))):
            found = absolute_url(_str(attachment.get("url")), base)
            if found:
                return found
    return None


def _json_author(holder: Mapping[str, Any]) -> str:
    authors = holder.get("authors")  # 1.1
    if not isinstance(authors, list):
        authors = [holder.get("author")]  # 1.0
    names = [_plain(_str(a.get("name"))) for a in authors if isinstance(a, dict)]
    return ", ".join(n for n in names if n)


def _record(
    *,
    identity: str,
    title: str,
    link: str | None,
    date: str | None,
    summary: str,
    body: str,
    cover: str | None,
    categories: Iterable[str],
    author: str,
    now: datetime,
) -> dict[str, Any] | None:
    untitled = not title
    if untitled:
        # A microblog entry has no title: its opening words stand in.
        title = cut_at_word(clean_text(summary or body), 80)
    if not title:
        return None
    identity = identity.strip() or link or _digest(f"{title}\n{date or ''}")
    unique: list[str] = []
    for category in categories:
        if category and category not in unique:
            unique.append(category)
    return {
        "v": RECORD_VERSION,
        "id": identity,
        "title": title,
        "link": link,
        "date": date,
        "first_seen": now.astimezone(timezone.utc).isoformat(),
        "summary": summary,
        "body": body,
        "cover": cover,
        "categories": unique,
        "author": author or None,
        "untitled": untitled,
    }


def _digest(text: str) -> str:
    return "urn:digest:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _plain(value: str) -> str:
    """Plain text from a feed: entities decoded (feeds often escape twice), spaces folded."""
    return " ".join(html.unescape(value).split())


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def carry_first_seen(
    entries: list[dict[str, Any]], previous: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Keep the moment each entry was first seen, so an undated entry keeps its date."""
    seen = {str(p.get("id")): p.get("first_seen") for p in previous}
    for entry in entries:
        earlier = seen.get(entry["id"])
        if isinstance(earlier, str):
            entry["first_seen"] = earlier
    return entries


# --------------------------------------------------------------------------- posts

_BLOCK_END = re.compile(r"</(p|div|li|h[1-6]|blockquote|pre|figure|tr|table)>|<br\s*/?>", re.I)


def _paragraphs(sanitized: str) -> str:
    """Sanitised HTML with a blank line after every block, as excerpt_from_body reads it."""
    return _BLOCK_END.sub("\n\n", sanitized)


def feed_excerpt(
    title: str, summary: str, body: str, cleaner: ExcerptCleaner = DEFAULT_CLEANER
) -> str:
    """The excerpt a reader sees, cleaned like any excerpt (the site's excerpt rules): the
    summary, topped up from the body when the summary is missing or short."""
    summary = head_of(summary, EXCERPT_SOURCE_LIMIT)  # an excerpt is made from the opening
    text = " ".join(clean_text(p) for p in _paragraphs(summary).split("\n\n"))
    text, ellipsis = strip_trailers(text)
    text = (text + "…" if ellipsis else text).strip()
    excerpt = cleaner.tidy(text, title).text if text else ""
    if len(excerpt.split()) >= SHORT_EXCERPT_WORDS:
        return excerpt
    from_body = cleaner.from_body(drop_post_paragraphs(body), title).text
    from_body = strip_trailers(from_body)[0].strip()
    return from_body if len(from_body) > len(excerpt) else excerpt


def entry_slug(record: Mapping[str, Any]) -> str:
    """A slug from the entry's link (its last path segment), else from its title."""
    link = record.get("link")
    if isinstance(link, str):
        segments = [s for s in urlsplit(link).path.split("/") if s]
        while segments and segments[-1].lower() in {"index.html", "index.htm", "amp"}:
            segments.pop()
        if segments:
            last = re.sub(r"\.(html?|php|aspx?)$", "", unquote(segments[-1]), flags=re.I)
            slug = slugify(last)
            if slug != "section" and not slug.isdigit():
                return slug
    return slugify(str(record.get("title") or "post"))[:80]


def finish_entry(record: dict[str, Any], cleaner: ExcerptCleaner) -> tuple[str, tuple[int, ...]]:
    """The entry's excerpt and near-duplicate sketch, worked out once per entry and set of
    excerpt rules and kept in the record, so an unchanged feed does not clean its entries
    again on every run."""
    done = record.get("finished")
    if isinstance(done, dict) and done.get("v") == cleaner.fingerprint:
        return str(done.get("excerpt", "")), tuple(int(h) for h in done.get("sketch", ()))
    title = "" if record.get("untitled") else str(record["title"])
    body = record.get("body") or ""
    excerpt = feed_excerpt(title, record.get("summary") or "", body, cleaner)
    hashes = sketch(body_words(drop_post_paragraphs(body)))
    record["finished"] = {"v": cleaner.fingerprint, "excerpt": excerpt, "sketch": list(hashes)}
    return excerpt, hashes


def post_from_entry(
    record: dict[str, Any],
    *,
    source_label: str,
    tz: ZoneInfo,
    folder: Path | None = None,
    default_category: str | None,
    category_of: Callable[[list[str]], str | None],
    slug: str | None = None,
    cleaner: ExcerptCleaner = DEFAULT_CLEANER,
) -> Post:
    """One feed entry as a Post: dated in ``tz`` (the same instant as written), its link
    as its URL and source, its categories through the config's sections and aliases."""
    date_text = record.get("date") or record["first_seen"]
    moment = datetime.fromisoformat(date_text)
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise FeedEntryError(f"date {date_text!r} is out of range ({YEARS})")
    moment = moment.astimezone(tz)
    categories = list(record.get("categories") or [])
    category = category_of(categories) or default_category
    link = record.get("link")
    title = str(record["title"])
    extra: dict[str, Any] = {
        "guid": record["id"],
        "feed": source_label,
        "body_html": record.get("body") or "",
    }
    if not record.get("date"):
        extra["undated"] = True
    excerpt, hashes = finish_entry(record, cleaner)
    return content_safe(
        Post(
            path=(folder or Path(source_label)) / (slug or entry_slug(record)),
            slug=slug or entry_slug(record),
            title=title,
            date=moment,
            category=category,
            tags=tuple(categories),
            excerpt=excerpt,
            cover_image=record.get("cover"),
            author=record.get("author"),
            source=link,
            url=link,
            extra=extra,
            sketch=hashes,
        )
    )
