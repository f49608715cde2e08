"""Markdown posts with YAML front matter, read into :class:`Post` objects.

A post that cannot be used (unreadable, not UTF-8, front matter not closed or not YAML, no
title, a date that is not a date, too large) becomes a :class:`PostProblem` naming the file
and the reason; loading goes on with the rest.

Only the front matter is read for most posts: the body is read when the front matter has no
usable excerpt. Results are kept in a :class:`~digest.content.cache.PostCache` keyed by path, size
and modification time, so a warm run parses nothing that has not changed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path
from stat import S_ISREG
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from digest.content.cache import CacheRow, PostCache
from digest.content.files import is_inside
from digest.content.frontmatter import FrontMatterHandler, FrontMatterTooLarge, YamlLimits
from digest.content.text import (
    DEFAULT_CLEANER,
    EXCERPT_LENGTH,
    SHORT_EXCERPT_WORDS,
    ExcerptCleaner,
    Removal,
    body_words,
    clean_text,
    cut_at_word,
    decode_entities,
    excerpt_from_body,
    normalise_title,
    sketch,
    tidy_excerpt,
)
from digest.errors import ContentError
from digest.safelog import clean
from digest.textsafe import defuse_markers, defuse_url, strip_controls

logger = logging.getLogger(__name__)

_UTC = ZoneInfo("UTC")

HEAD_BYTES = 8 * 1024  # most front matter fits; more is read only when it does not

_HANDLER = FrontMatterHandler()


@dataclass(frozen=True)
class Post:
    """One post, as the rest of digest sees it. ``date`` is aware, in the site's timezone."""

    path: Path
    slug: str
    title: str
    date: datetime
    category: str | None = None
    tags: tuple[str, ...] = ()
    excerpt: str = ""
    cover_image: str | None = None
    author: str | None = None
    source: str | None = None
    draft: bool = False
    featured: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # A MinHash sketch of the body (digest.content.text.sketch), for near-duplicates.
    sketch: tuple[int, ...] = field(default=(), compare=False, hash=False, repr=False)
    url: str | None = None  # where the post is read (a feed entry's link); None: site.post_url
    words: int | None = None  # words in the body (None: not counted, e.g. a feed entry)


@dataclass(frozen=True)
class PostProblem:
    """A file that was skipped, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        # a file name can hold a newline: shown escaped, it cannot forge a line of output
        return f"{clean(str(self.path), 1000)}: {clean(self.reason, 1000)}"


@dataclass
class LoadResult:
    posts: list[Post]
    problems: list[PostProblem]
    parsed: int = 0  # files parsed in this run (the rest came from the cache)
    cached: int = 0


class PostReadError(Exception):
    """Why one file cannot be used (turned into a PostProblem by the loader)."""


# --------------------------------------------------------------------------- text cleaning
# The cleaning itself lives in digest.content.text; these names stay importable from here.
__all__ = [
    "EXCERPT_LENGTH",
    "SHORT_EXCERPT_WORDS",
    "clean_text",
    "cut_at_word",
    "excerpt_from_body",
    "normalise_title",
    "strip_controls",
    "tidy_excerpt",
]


# --------------------------------------------------------------------------- parsing fields


def parse_date(value: Any, tz: ZoneInfo) -> datetime:
    """A front matter date (date, datetime, or ISO string) as an aware datetime in ``tz``.

    Values without an offset are wall-clock times in ``tz``; values with one are converted.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            try:
                moment = datetime.combine(date.fromisoformat(text[:10]), time())
                if len(text) > 10:
                    raise ValueError from None
            except ValueError:
                raise PostReadError(
                    f"date {_shown(value)} is not a date "
                    "(use 2026-08-17 or 2026-08-17T09:30:00+02:00)"
                ) from None
    else:
        raise PostReadError(f"date {_shown(value)} is not a date")
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise PostReadError(f"date {_shown(value)} is out of range ({YEARS})")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=tz)
    return moment.astimezone(tz)


# A year this far from the ends of what datetime holds can be moved to any timezone and by
# a week either way without an OverflowError ("9999-12-31T23:59:59-01:00" is year 10000 in
# UTC).
MIN_YEAR, MAX_YEAR = 2, 9998
YEARS = f"a year from {MIN_YEAR} to {MAX_YEAR}"


def _shown(value: Any, limit: int = 60) -> str:
    """A value for a problem report: its repr (control characters escaped), cut short."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def parse_tags(value: Any, key: str = "tags") -> tuple[str, ...]:
    """Tags from a list of names or one comma-separated line.

    Raises PostReadError for a mapping, or a list holding anything but names: a value is
    never turned into text it does not hold (``['a', 'b']``).
    """
    if value is None:
        return ()
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise PostReadError(f"{key}: {_kind(value)} where a list of tags belongs")
    tags: list[str] = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise PostReadError(f"{key}: item {number} is {_kind(item)}, not a tag")
        tag = " ".join(strip_controls(decode_entities(item)).split())
        if tag and tag not in tags:
            tags.append(tag)
    return tuple(tags)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _flag(value: Any, key: str = "") -> bool:
    if isinstance(value, str):
        return value.strip().casefold() in {"true", "yes", "1", "on"}
    if isinstance(value, (list, tuple, dict)):
        raise PostReadError(f"{key}: {_kind(value)} where true or false belongs")
    return bool(value)


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def _text_field(value: Any, key: str = "") -> str | None:
    """A one-line text value: character references decoded, spacing folded, control
    characters gone (also those a reference such as ``&#27;`` decodes to).

    None for a missing or null value; PostReadError for a list or mapping (it is reported
    with its key, never turned into text like ``['one', 'two']``).
    """
    if value is None or (isinstance(value, str) and value in _NULLS):
        return None
    if not isinstance(value, str):
        if isinstance(value, (list, tuple, dict)):
            raise PostReadError(f"{key}: {_kind(value)} where text belongs")
        value = str(value)
    # Folds every Unicode space, no-break ones too; character references are decoded here,
    # once, so no later stage shows "&#8217;" or escapes it again.
    text = " ".join(strip_controls(decode_entities(value)).split())
    return text or None


def _first_text(meta: dict[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` that holds text (each checked for its type)."""
    for key in keys:
        text = _text_field(meta.get(key), key)
        if text:
            return text
    return None


def _clean_extra(value: Any) -> Any:
    if isinstance(value, str):
        return strip_controls(value)
    if isinstance(value, list):
        return [_clean_extra(v) for v in value]
    return value


# --------------------------------------------------------------------------- reading files


def _decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise PostReadError("binary file, not Markdown text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PostReadError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def _split(text: str) -> tuple[str, str | None]:
    """(front matter, body) — body None when it lies past what was read."""
    if not text.lstrip("\ufeff").startswith("---"):
        raise PostReadError("no front matter: the file must start with a line '---'")
    if not _HANDLER.detect(text.lstrip()):
        raise PostReadError("no front matter: the file must start with a line '---'")
    assert _HANDLER.FM_BOUNDARY is not None
    parts = _HANDLER.FM_BOUNDARY.split(text.lstrip(), 2)
    if len(parts) < 3:
        raise PostReadError("front matter is never closed: add a line '---' after it")
    return parts[1], parts[2]


def read_post_metadata(
    path: str | Path, max_size: int, size: int | None = None, limits: YamlLimits | None = None
) -> dict[str, Any]:
    """Parse one file into a plain, JSON-safe record (what the cache stores).

    Raises PostReadError with the reason the file cannot be used.
    """
    try:
        if size is None:
            size = os.stat(path).st_size
        if size == 0:
            raise PostReadError("empty file")
        if size > max_size:
            raise PostReadError(
                f"file is {size:,} bytes, over content.max_file_size ({max_size:,})"
            )
        with open(path, "rb") as handle:
            data = handle.read(HEAD_BYTES)
            complete = len(data) == size
            text = _decode(data if complete else _trim_partial_utf8(data))
            try:
                front, _ = _split(text)
            except PostReadError:
                if complete:
                    raise
                data += handle.read(max_size + 1 - len(data))  # the file may have grown
                front, _ = _split(_decode(data))
    except OSError as exc:
        raise PostReadError(f"cannot read it: {exc.strerror or exc}") from None

    try:
        # The base loader keeps every scalar a string: dates, booleans and numbers are read
        # by the rules below (timezone, "yes"/"true"), not by YAML's implicit typing.
        meta = (_HANDLER if limits is None else FrontMatterHandler(limits)).load(front)
    except FrontMatterTooLarge as exc:
        raise PostReadError(exc.reason) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise PostReadError(f"front matter is not valid YAML{where}: {problem}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise PostReadError("front matter is not a mapping of keys to values")

    title = _text_field(meta.get("title"), "title")
    if not title:
        raise PostReadError("no title in the front matter")
    raw_date = meta.get("date")
    if isinstance(raw_date, (list, dict)):
        raise PostReadError(f"date: {_kind(raw_date)} where a date belongs")
    if _text_field(raw_date, "date") is None:
        raise PostReadError("no date in the front matter")
    # Validated now, so that a bad date is reported once, at parse time; the UTC reading is
    # what the cache indexes (see approximate_timestamp).
    timestamp = parse_date(raw_date, _UTC).timestamp()

    raw_excerpt = _first_text(meta, "excerpt", "description", "summary")
    date_text = raw_date.isoformat() if isinstance(raw_date, (date, datetime)) else str(raw_date)
    known = {
        "title", "date", "excerpt", "description", "summary", "coverImage", "cover_image",
        "image", "author", "tags", "category", "source", "draft", "featured", "slug",
    }  # fmt: skip
    extra = {
        strip_controls(k): _clean_extra(v)
        for k, v in meta.items()
        if k not in known and _json_safe(v)
    }
    return {
        "slug": _text_field(meta.get("slug"), "slug")
        or os.path.splitext(os.path.basename(path))[0],
        "title": title,
        "date": date_text,
        "category": _text_field(meta.get("category"), "category"),
        "tags": list(parse_tags(meta.get("tags"))),
        "excerpt": raw_excerpt,
        "cover_image": _first_text(meta, "coverImage", "cover_image", "image"),
        "author": _text_field(meta.get("author"), "author"),
        "source": _text_field(meta.get("source"), "source"),
        "draft": _flag(meta.get("draft", False), "draft"),
        "featured": _flag(meta.get("featured", False), "featured"),
        "extra": extra,
        "ts": timestamp,
    }


@dataclass(frozen=True)
class Finished:
    """What is worked out from a post's body, for posts that may go into an issue."""

    excerpt: str
    sketch: tuple[int, ...] = ()
    words: int | None = None  # words in the body; None when it could not be read

    def to_cache(self, fingerprint: str) -> str:
        return json.dumps(
            {"v": fingerprint, "excerpt": self.excerpt, "sketch": self.sketch, "words": self.words}
        )

    @classmethod
    def from_cache(cls, text: str | None, fingerprint: str) -> Finished | None:
        """The cached result, or None when there is none or other rules made it."""
        if not text or not text.startswith("{"):
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("v") != fingerprint or "words" not in data:
            return None  # other rules made it, or a cache from before words were counted
        words = data["words"] if isinstance(data["words"], int) else None
        sketched = tuple(int(h) for h in data.get("sketch", ()))
        return cls(str(data.get("excerpt", "")), sketched, words)


UNFINISHED = Finished("")
"""A post loaded without finishing (``load_posts(finish=False)``): no excerpt, no sketch."""


def finish_post(
    path: Path, title: str, raw: str | None, cleaner: ExcerptCleaner = DEFAULT_CLEANER
) -> Finished:
    """The excerpt a reader sees (the front matter's, cleaned, or else the body's opening)
    and the body's near-duplicate sketch.

    Done only for posts that may go into an issue, so a cold run over a large folder does
    not read or clean thousands of bodies it will never show.
    """
    excerpt = strip_controls(cleaner.tidy(raw, title).text) if raw else ""
    try:
        body = _split(_decode(path.read_bytes()))[1] or ""
    except (OSError, PostReadError):
        return Finished(excerpt)
    if len(excerpt.split()) < SHORT_EXCERPT_WORDS:
        # Missing, boilerplate, or little left after the crumbs: the body may say more.
        from_body = strip_controls(cleaner.from_body(body, title).text)
        if len(from_body) > len(excerpt):
            excerpt = from_body
    words = body_words(body)
    return Finished(excerpt, sketch(words), len(words))


@dataclass(frozen=True)
class ExcerptReport:
    """How one post's excerpt was made: where from, and what each rule removed."""

    path: Path
    excerpt: str
    origin: str  # "front matter", "body", or "none"
    removed: tuple[Removal, ...]


def excerpt_report(
    path: Path, max_size: int, cleaner: ExcerptCleaner = DEFAULT_CLEANER
) -> ExcerptReport:
    """Clean one post's excerpt again, keeping what each rule removed (for
    ``digest check --excerpts``)."""
    record = read_post_metadata(path, max_size)
    title, raw = record["title"], record["excerpt"]
    removed: list[Removal] = []
    excerpt, origin = "", "none"
    if raw:
        tidied = cleaner.tidy(raw, title)
        removed.extend(tidied.removed)
        excerpt, origin = tidied.text, "front matter" if tidied.text else "none"
    if len(excerpt.split()) < SHORT_EXCERPT_WORDS:
        try:
            body = _split(_decode(path.read_bytes()))[1] or ""
        except (OSError, PostReadError):
            body = ""
        from_body = cleaner.from_body(body, title)
        if len(from_body.text) > len(excerpt):
            removed.extend(from_body.removed)
            excerpt, origin = from_body.text, "body"
    return ExcerptReport(path, excerpt, origin, tuple(removed))


def finish_excerpt(path: Path, title: str, raw: str | None) -> str:
    return finish_post(path, title, raw).excerpt


def _trim_partial_utf8(data: bytes) -> bytes:
    """Drop a multi-byte character cut in half at the end of a partial read."""
    for back in range(1, 4):
        if len(data) >= back and (data[-back] & 0xC0) == 0xC0:
            need = 2 if data[-back] < 0xE0 else 3 if data[-back] < 0xF0 else 4
            return data[:-back] if back < need else data
        if len(data) >= back and (data[-back] & 0x80) == 0:
            return data
    return data


def _json_safe(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None))) or (
        isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value)
    )


def _defused(value: Any) -> Any:
    if isinstance(value, str):
        return defuse_markers(strip_controls(value))
    if isinstance(value, list):
        return [_defused(v) for v in value]
    return value


def _text(value: str | None) -> str | None:
    return None if value is None else defuse_markers(strip_controls(value))


def _url(value: str | None) -> str | None:
    return None if value is None else defuse_url(strip_controls(value))


def content_safe(post: Post) -> Post:
    """``post`` as data that no later stage can read as anything else: control characters
    and bidirectional overrides gone, marker syntax broken in its text and its URLs (a
    feed author's ``[[digest:email]]`` is never filled with a reader's address).

    Every post is built through here, from a fresh parse and from the cache alike.
    """
    return replace(
        post,
        slug=defuse_markers(strip_controls(post.slug)),
        title=defuse_markers(strip_controls(post.title)),
        category=_text(post.category),
        tags=tuple(defuse_markers(strip_controls(t)) for t in post.tags),
        excerpt=defuse_markers(strip_controls(post.excerpt)),
        cover_image=_url(post.cover_image),
        author=_text(post.author),
        source=_url(post.source),
        url=_url(post.url),
        extra={strip_controls(k): _defused(v) for k, v in post.extra.items()},
    )


def post_from_record(
    path: Path,
    record: dict[str, Any],
    tz: ZoneInfo,
    excerpt: str,
    sketch: tuple[int, ...] = (),
    words: int | None = None,
) -> Post:
    return content_safe(
        Post(
            path=path,
            slug=record["slug"],
            title=record["title"],
            date=parse_date(record["date"], tz),
            category=record["category"],
            tags=tuple(record["tags"]),
            excerpt=excerpt,
            cover_image=record["cover_image"],
            author=record["author"],
            source=record["source"],
            draft=record["draft"],
            featured=record["featured"],
            extra=record.get("extra") or {},
            sketch=sketch,
            words=words,
        )
    )


def iter_post_files(folder: Path) -> Iterator[os.DirEntry[str]]:
    """Every ``*.md`` / ``*.markdown`` file below ``folder``, in a stable order."""
    stack = [folder]
    found: list[os.DirEntry[str]] = []
    while stack:
        current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.name.endswith((".md", ".markdown")):
                    found.append(entry)
    found.sort(key=lambda e: e.path)
    yield from found


def _parse_for_cache(
    path: str, max_size: int, size: int | None = None, limits: YamlLimits | None = None
) -> tuple[str | None, str | None, float | None]:
    """(record as JSON, problem, approximate UTC timestamp) of one file.

    Runs in worker processes; the record comes back as the JSON text the cache stores, which
    crosses the process boundary cheaply and is decoded only for posts that are used.

    The timestamp reads a time without an offset as UTC: off by at most the timezone's
    offset, it only narrows which cached posts are built.
    """
    try:
        record = read_post_metadata(path, max_size, size, limits)
    except PostReadError as exc:
        return None, str(exc), None
    return json.dumps(record, ensure_ascii=False), None, record["ts"]


def _parse_many(
    paths: list[str], sizes: list[int], max_size: int, limits: YamlLimits | None = None
) -> Iterator[tuple[str | None, str | None, float | None]]:
    """Parse files, on every core when there are enough of them to be worth a process."""
    import multiprocessing  # only a cold run pays for it
    from concurrent.futures import ProcessPoolExecutor

    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    # Forking is safe only in a process with one thread (a preview or serve process has more),
    # and "spawn" would re-run an unguarded __main__ script: parse here instead.
    if (
        len(paths) < PARALLEL_THRESHOLD
        or workers < 2
        or threading.active_count() > 1
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        for path, size in zip(paths, sizes, strict=True):
            yield _parse_for_cache(path, max_size, size, limits)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        chunk = max(64, len(paths) // (workers * 8))
        yield from pool.map(
            _parse_for_cache,
            paths,
            [max_size] * len(paths),
            sizes,
            [limits] * len(paths),
            chunksize=chunk,
        )


Progress = Callable[[str, int, int], None]
"""Told ``(stage, done, total)`` while posts are read: ``parsing`` (files the cache did
not answer for) then ``finishing`` (excerpts and sketches not cached yet)."""
PROGRESS_EVERY = 250  # files between two progress calls


def _finish_one(item: tuple[str, str, str | None], cleaner: ExcerptCleaner) -> Finished:
    path, title, raw = item
    return finish_post(Path(path), title, raw, cleaner)


def _finish_many(
    items: list[tuple[str, str, str | None]], cleaner: ExcerptCleaner
) -> Iterator[Finished]:
    """Finish posts (excerpt, sketch), on every core when there are enough of them (a cold
    run over a whole folder, as ``digest check`` does); in order, under the same rules as
    :func:`_parse_many`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    if (
        len(items) < PARALLEL_THRESHOLD
        or workers < 2
        or threading.active_count() > 1
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        for item in items:
            yield _finish_one(item, cleaner)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        chunk = max(32, len(items) // (workers * 8))
        yield from pool.map(_finish_one, items, [cleaner] * len(items), chunksize=chunk)


PARALLEL_THRESHOLD = 2000  # files to parse before a cold run uses more than one core
MAX_WORKERS = 4
_MAX_OFFSET = 26 * 3600  # widest gap between UTC and any local time, with margin


def load_posts(
    folder: Path,
    tz: ZoneInfo,
    *,
    cache: PostCache | None = None,
    max_size: int = 5_000_000,
    between: tuple[datetime, datetime] | None = None,
    cleaner: ExcerptCleaner = DEFAULT_CLEANER,
    limits: YamlLimits | None = None,
    progress: Progress | None = None,
    finish: bool = True,
) -> LoadResult:
    """Read every post below ``folder``. Bad files become problems; the rest become posts.

    With ``between``, only posts dated in ``[start, end)`` are built (every file is still
    checked, and every problem reported): a week's issue does not pay for the archive.
    ``limits`` bound each front matter (:mod:`digest.content.frontmatter`). A symbolic link
    to a file outside ``folder``, and anything but a regular file, is reported, never opened.
    ``progress`` is told how far the long parts (parsing, finishing) are. Without
    ``finish`` (what ``digest check`` asks), bodies are not read: a post's excerpt and
    sketch are the cached ones, else empty: counts, categories and problems only.
    """
    if not folder.is_dir():
        raise ContentError(f"{folder}: no such folder (content.posts_dir in config.yaml)")
    result = LoadResult(posts=[], problems=[])
    low, high = (
        (between[0].timestamp() - _MAX_OFFSET, between[1].timestamp() + _MAX_OFFSET)
        if between
        else (float("-inf"), float("inf"))
    )
    known = cache.index() if cache is not None else {}
    fresh: list[CacheRow] = []
    wanted: list[tuple[str, str | None]] = []  # (path, record JSON, or None when cached)
    seen: set[str] = set()
    to_parse: list[tuple[str, int, int]] = []

    def keep(path: str, record: str | None, reason: str | None, ts: float | None) -> None:
        if reason is not None or ts is None:
            result.problems.append(PostProblem(Path(path), reason or "unreadable"))
        elif low <= ts < high:
            wanted.append((path, record))

    for entry in iter_post_files(folder):
        try:
            if entry.is_symlink() and not is_inside(folder, entry.path):
                result.problems.append(
                    PostProblem(
                        Path(entry.path),
                        "a symbolic link to a file outside the content folder; not read",
                    )
                )
                continue
            stat = entry.stat()
            if not S_ISREG(stat.st_mode):  # a FIFO would block the read for ever
                result.problems.append(
                    PostProblem(Path(entry.path), "not a regular file; not read")
                )
                continue
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            result.problems.append(PostProblem(Path(entry.path), f"cannot read it: {reason}"))
            continue
        seen.add(entry.path)
        hit = known.get(entry.path)
        if hit is not None and hit[0] == stat.st_size and hit[1] == stat.st_mtime_ns:
            result.cached += 1
            keep(entry.path, None, hit[3], hit[2])
        else:
            to_parse.append((entry.path, stat.st_size, stat.st_mtime_ns))

    parsed = _parse_many([p for p, _, _ in to_parse], [z for _, z, _ in to_parse], max_size, limits)
    for (path, size, mtime), (text, reason, ts) in zip(to_parse, parsed, strict=True):
        result.parsed += 1
        fresh.append(CacheRow(path, size, mtime, ts, text, reason))
        keep(path, text, reason, ts)
        if progress and (result.parsed % PROGRESS_EVERY == 0 or result.parsed == len(to_parse)):
            progress("parsing", result.parsed, len(to_parse))
    wanted.sort()

    missing = [path for path, record in wanted if record is None]
    stored = cache.records(missing) if cache is not None and missing else {}
    excerpts: dict[str, str] = {}
    records: list[dict[str, Any]] = []
    finished: list[Finished | None] = []
    for path, cached_text in wanted:
        if cached_text is None:
            record, stored_text = stored[path]
            finished.append(Finished.from_cache(stored_text, cleaner.fingerprint))
        else:
            record = json.loads(cached_text)
            finished.append(None)
        records.append(record)
    unfinished = [i for i, found in enumerate(finished) if found is None] if finish else []
    work = [(wanted[i][0], records[i]["title"], records[i]["excerpt"]) for i in unfinished]
    for done, (i, one) in enumerate(zip(unfinished, _finish_many(work, cleaner), strict=True), 1):
        finished[i] = one
        excerpts[wanted[i][0]] = one.to_cache(cleaner.fingerprint)
        if progress and (done % PROGRESS_EVERY == 0 or done == len(unfinished)):
            progress("finishing", done, len(unfinished))
    for (path, _), record, found in zip(wanted, records, finished, strict=True):
        found = found or UNFINISHED  # only without ``finish``
        post = post_from_record(Path(path), record, tz, found.excerpt, found.sketch, found.words)
        if between is None or between[0] <= post.date < between[1]:
            result.posts.append(post)
    if cache is not None:
        cache.update(fresh, excerpts, forget=[p for p in known if p not in seen])
    for problem in result.problems:
        logger.info("skipped %s", problem)
    return result
