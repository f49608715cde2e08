"""Markdown posts with YAML front matter, read into :class:`Post` objects.

A post that cannot be used (unreadable, not UTF-8, front matter not closed or not YAML, no
title, a date that is not a date, too large) becomes a :class:`PostProblem` naming the file
and the reason; loading goes on with the rest.

Only the front matter is read for most posts: the body is read when the front matter has no
usable excerpt. Results are kept in a :class:`~digest.content.cache.PostCache` keyed by path, size
and modification time, so a warm run parses nothing that has not changed.
"""

from __future__ import annotations

import html
import json
import logging
import multiprocessing
import os
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from frontmatter.default_handlers import YAMLHandler

from digest.content.cache import CacheRow, PostCache

logger = logging.getLogger(__name__)

_UTC = ZoneInfo("UTC")
_BASE_LOADER: type[Any] = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # libyaml if there


class _NodeLoader(_BASE_LOADER):  # type: ignore[misc]
    """Composes nodes without resolving tags: FrontMatterHandler never reads them."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        return ""


EXCERPT_LENGTH = 280
SHORT_EXCERPT_WORDS = 12  # a front matter excerpt shorter than this is topped up from the body
HEAD_BYTES = 8 * 1024  # most front matter fits; more is read only when it does not


class FrontMatterHandler(YAMLHandler):
    """python-frontmatter's YAML handler, loading the way digest reads front matter.

    Every scalar stays a string (as with PyYAML's BaseLoader): dates, booleans and numbers
    are read by digest's own rules (the site's timezone, "yes"/"true"), not by YAML's
    implicit typing. libyaml parses the text into nodes; the nodes are turned into str,
    list and dict here directly, which is several times faster than PyYAML's generic
    constructor and matters on a cold run over thousands of posts. An alias is shared, not
    copied, so a "billion laughs" document stays small; a recursive one is an error.
    """

    def load(self, fm: str, **kwargs: Any) -> Any:
        loader = _NodeLoader(fm)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        return None if node is None else _construct(node, {}, set())


def _construct(node: yaml.Node, done: dict[int, Any], open_: set[int]) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return node.value
    key = id(node)
    if key in done:
        return done[key]
    if key in open_:
        raise yaml.constructor.ConstructorError(
            None, None, "found a recursive alias", node.start_mark
        )
    open_.add(key)
    value: Any
    if isinstance(node, yaml.SequenceNode):
        value = [_construct(item, done, open_) for item in node.value]
    else:
        value = {}
        for key_node, value_node in node.value:
            name = _construct(key_node, done, open_)
            if not isinstance(name, str):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found unhashable key",
                    key_node.start_mark,
                )
            value[name] = _construct(value_node, done, open_)
    open_.discard(key)
    done[key] = value
    return value


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
    url: str | None = None  # where the post is read (a feed entry's link); None: site.post_url


@dataclass(frozen=True)
class PostProblem:
    """A file that was skipped, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class LoadResult:
    posts: list[Post]
    problems: list[PostProblem]
    parsed: int = 0  # files parsed in this run (the rest came from the cache)
    cached: int = 0


class PostReadError(Exception):
    """Why one file cannot be used (turned into a PostProblem by the loader)."""


# --------------------------------------------------------------------------- text cleaning

_TAG = re.compile(r"<[^>]+>")
_DROP_BLOCKS = re.compile(
    r"<(script|style|figure|figcaption|nav|iframe|svg)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_MD_DECOR = re.compile(r"(\*\*|__|\*|_|~~|`+)(?=\S)(.+?)(?<=\S)\1")
_CODE_FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
_WS = re.compile(r"\s+")
_BOILERPLATE = re.compile(
    r"(why you can trust|independently tests and researches|we may earn an affiliate|"
    r"commissions? from (our )?links|subscribe to our newsletter|cookie(s)? (policy|settings)|"
    r"skip to (main )?content|sign up for|^written by\b|^reviewed by\b|"
    r"(contributing|senior|staff) (editor|writer)|^\d+ min read$)",
    re.IGNORECASE,
)


def clean_text(value: str) -> str:
    """HTML and Markdown to one line of plain text: tags gone, entities decoded, spaces folded."""
    text = _CODE_FENCE.sub(" ", value)
    text = _DROP_BLOCKS.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _MD_IMAGE.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_REF_LINK.sub(r"\1", text)
    text = re.sub(r"^\s{0,3}(#{1,6}|>|[-*+]|\d+[.)])\s+", "", text, flags=re.MULTILINE)
    text = _MD_DECOR.sub(r"\2", text)
    text = html.unescape(text)
    text = text.replace("\u00a0", " ").replace("\u200b", "")
    return _WS.sub(" ", text).strip()


def _sentence_like(line: str) -> bool:
    words = line.split()
    return len(words) >= 8 or (bool(re.search(r"[.!?:]\s*$", line)) and len(words) >= 4)


def _body_paragraphs(body: str, title: str = "") -> Iterator[str]:
    """The body's prose, paragraph by paragraph, past leading navigation crumbs and a
    repeated title."""
    folded_title = _fold(title)
    body = _CODE_FENCE.sub("\n", body)
    body = _DROP_BLOCKS.sub("\n", body)
    started = False
    for block in re.split(r"\n\s*\n", body):
        if re.match(r"^\s{0,3}#{1,6}\s", block):
            continue  # a heading is not an excerpt
        lines = (clean_text(line) for line in block.splitlines())
        text = " ".join(line for line in lines if line and not _BOILERPLATE.search(line))
        if not text:
            continue
        if folded_title and _fold(text).startswith(folded_title):
            text = _strip_through_title(text, title, min_words=1)
            if _fold(text) == folded_title:
                continue
        if not started and not _sentence_like(text):
            continue  # crumbs such as "Home  News  Tools" before the first sentence
        started = True
        yield text


def cut_at_word(text: str, limit: int = EXCERPT_LENGTH) -> str:
    """At most ``limit`` characters, ending on a whole word, with an ellipsis if cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else text[:limit]
    return cut.rstrip(" ,;:-–—(") + "…"


def tidy_excerpt(raw: str, title: str, limit: int = EXCERPT_LENGTH) -> str:
    """A front matter excerpt, cleaned: HTML gone, crumbs before the title dropped, a word cut
    mid-way by ``...`` removed. Empty when what is left is boilerplate."""
    text = clean_text(raw)
    # Scraped excerpts often start with navigation crumbs and then the title itself.
    folded_title = _fold(title)
    if folded_title and len(folded_title) > 12:
        position = _fold(text).find(folded_title[:40])
        if 0 <= position < 200:
            text = _strip_through_title(text, title)
    if _BOILERPLATE.search(text):
        return ""
    truncated = bool(re.search(r"(\.\.\.|…)\s*$", text))
    if truncated:
        text = re.sub(r"\s*(\.\.\.|…)\s*$", "", text)
        if re.search(r"\w$", text) and " " in text:
            text = text.rsplit(" ", 1)[0]  # the last word was cut mid-way
        text = text.rstrip(" ,;:-–—(") + "…"
    if len(text.rstrip("…").split()) < 3:
        return ""
    return cut_at_word(text, limit)


def _fold(value: str) -> str:
    value = unicodedata.normalize("NFKC", value).casefold()
    return _WS.sub(" ", re.sub(r"[^\w\s]", " ", value)).strip()


def _strip_through_title(text: str, title: str, min_words: int = 3) -> str:
    """Drop everything up to and including the title (matched loosely) from ``text``."""
    words = [w for w in re.split(r"\W+", title) if w]
    if not words:
        return text
    pattern = r"\W+".join(re.escape(w) for w in words)
    match = re.search(pattern, text, flags=re.IGNORECASE)
    if match is None or match.start() > 200:
        return text
    rest = text[match.end() :].lstrip(" -–—:|")
    return rest if len(rest.split()) >= min_words else text


def excerpt_from_body(body: str, title: str = "", limit: int = EXCERPT_LENGTH) -> str:
    text = ""
    for paragraph in _body_paragraphs(body, title):
        text = f"{text} {paragraph}".strip()
        if len(text) >= limit:
            break
    return cut_at_word(text, limit)


def normalise_title(title: str) -> str:
    """The form two titles share when they are the same title: case, punctuation and
    spacing folded."""
    return _fold(title.replace("-", ""))


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
                    f"date {value!r} is not a date (use 2026-08-17 or 2026-08-17T09:30:00+02:00)"
                ) from None
    else:
        raise PostReadError(f"date {value!r} is not a date")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=tz)
    return moment.astimezone(tz)


def parse_tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = [value]
    tags: list[str] = []
    for item in items:
        tag = _WS.sub(" ", str(item)).strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tuple(tags)


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().casefold() in {"true", "yes", "1", "on"}
    return bool(value)


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def _text_field(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value in _NULLS):
        return None
    text = " ".join(str(value).split())  # folds every Unicode space, no-break ones too
    return text or None


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


def read_post_metadata(path: str | Path, max_size: int, size: int | None = None) -> dict[str, Any]:
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
                data += handle.read()
                front, _ = _split(_decode(data))
    except OSError as exc:
        raise PostReadError(f"cannot read it: {exc.strerror or exc}") from None

    try:
        # The base loader keeps every scalar a string: dates, booleans and numbers are read
        # by the rules below (timezone, "yes"/"true"), not by YAML's implicit typing.
        meta = _HANDLER.load(front)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise PostReadError(f"front matter is not valid YAML{where}: {problem}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise PostReadError("front matter is not a mapping of keys to values")

    title = _text_field(meta.get("title"))
    if not title:
        raise PostReadError("no title in the front matter")
    if _text_field(meta.get("date")) is None:
        raise PostReadError("no date in the front matter")
    raw_date = meta["date"]
    # Validated now, so that a bad date is reported once, at parse time; the UTC reading is
    # what the cache indexes (see approximate_timestamp).
    timestamp = parse_date(raw_date, _UTC).timestamp()

    raw_excerpt = _text_field(meta.get("excerpt") or meta.get("description") or meta.get("summary"))
    date_text = raw_date.isoformat() if isinstance(raw_date, (date, datetime)) else str(raw_date)
    known = {
        "title", "date", "excerpt", "description", "summary", "coverImage", "cover_image",
        "image", "author", "tags", "category", "source", "draft", "featured", "slug",
    }  # fmt: skip
    extra = {k: v for k, v in meta.items() if k not in known and _json_safe(v)}
    return {
        "slug": _text_field(meta.get("slug")) or os.path.splitext(os.path.basename(path))[0],
        "title": title,
        "date": date_text,
        "category": _text_field(meta.get("category")),
        "tags": list(parse_tags(meta.get("tags"))),
        "excerpt": raw_excerpt,
        "cover_image": _text_field(
            meta.get("coverImage") or meta.get("cover_image") or meta.get("image")
        ),
        "author": _text_field(meta.get("author")),
        "source": _text_field(meta.get("source")),
        "draft": _flag(meta.get("draft", False)),
        "featured": _flag(meta.get("featured", False)),
        "extra": extra,
        "ts": timestamp,
    }


def finish_excerpt(path: Path, title: str, raw: str | None) -> str:
    """The excerpt a reader sees: the front matter's, tidied, or else the body's opening.

    Done only for posts that may go into an issue, so a cold run over a large folder does
    not read or clean thousands of bodies it will never show.
    """
    excerpt = tidy_excerpt(raw, title) if raw else ""
    if len(excerpt.split()) >= SHORT_EXCERPT_WORDS:
        return excerpt
    # Missing, boilerplate, or little left after the crumbs: the body may say more.
    try:
        body = _split(_decode(path.read_bytes()))[1]
    except (OSError, PostReadError):
        return excerpt
    from_body = excerpt_from_body(body or "", title)
    return from_body if len(from_body) > len(excerpt) else excerpt


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


def post_from_record(path: Path, record: dict[str, Any], tz: ZoneInfo, excerpt: str) -> Post:
    return Post(
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
    path: str, max_size: int, size: int | None = None
) -> tuple[str | None, str | None, float | None]:
    """(record as JSON, problem, approximate UTC timestamp) of one file.

    Runs in worker processes; the record comes back as the JSON text the cache stores, which
    crosses the process boundary cheaply and is decoded only for posts that are used.

    The timestamp reads a time without an offset as UTC: off by at most the timezone's
    offset, it only narrows which cached posts are built.
    """
    try:
        record = read_post_metadata(path, max_size, size)
    except PostReadError as exc:
        return None, str(exc), None
    return json.dumps(record, ensure_ascii=False), None, record["ts"]


def _parse_many(
    paths: list[str], sizes: list[int], max_size: int
) -> Iterator[tuple[str | None, str | None, float | None]]:
    """Parse files, on every core when there are enough of them to be worth a process."""
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
            yield _parse_for_cache(path, max_size, size)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        chunk = max(64, len(paths) // (workers * 8))
        yield from pool.map(
            _parse_for_cache, paths, [max_size] * len(paths), sizes, chunksize=chunk
        )


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
) -> LoadResult:
    """Read every post below ``folder``. Bad files become problems; the rest become posts.

    With ``between``, only posts dated in ``[start, end)`` are built (every file is still
    checked, and every problem reported): a week's issue does not pay for the archive.
    """
    from digest.errors import ContentError

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
            stat = entry.stat()
        except OSError as exc:
            result.problems.append(PostProblem(Path(entry.path), f"cannot read it: {exc.strerror}"))
            continue
        seen.add(entry.path)
        hit = known.get(entry.path)
        if hit is not None and hit[0] == stat.st_size and hit[1] == stat.st_mtime_ns:
            result.cached += 1
            keep(entry.path, None, hit[3], hit[2])
        else:
            to_parse.append((entry.path, stat.st_size, stat.st_mtime_ns))

    parsed = _parse_many([p for p, _, _ in to_parse], [z for _, z, _ in to_parse], max_size)
    for (path, size, mtime), (text, reason, ts) in zip(to_parse, parsed, strict=True):
        result.parsed += 1
        fresh.append(CacheRow(path, size, mtime, ts, text, reason))
        keep(path, text, reason, ts)
    wanted.sort()

    missing = [path for path, record in wanted if record is None]
    stored = cache.records(missing) if cache is not None and missing else {}
    excerpts: dict[str, str] = {}
    for path, cached_text in wanted:
        excerpt: str | None = None
        record: dict[str, Any]
        if cached_text is None:
            record, excerpt = stored[path]
        else:
            record = json.loads(cached_text)
        if excerpt is None:
            excerpt = finish_excerpt(Path(path), record["title"], record["excerpt"])
            excerpts[path] = excerpt
        post = post_from_record(Path(path), record, tz, excerpt)
        if between is None or between[0] <= post.date < between[1]:
            result.posts.append(post)
    if cache is not None:
        cache.update(fresh, excerpts, forget=[p for p in known if p not in seen])
    for problem in result.problems:
        logger.info("skipped %s", problem)
    return result
