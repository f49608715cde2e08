"""Every source of posts, loaded into one list: Markdown folders and feeds alike.

:func:`load_sources` reads each configured source in turn. A source that fails this time
(a missing folder; a feed that is unreachable, slow, too large, answers 4xx/5xx or is not a
feed) is reported in the result's ``sources`` and ``problems`` and the others go on; a
feed that failed keeps the entries of its last good fetch, so a blog that is down at send
time does not vanish from the issue. Only when every source fails is it an error.

Feeds cost nothing when they have not changed: a 304, a 200 with the same bytes, or a
feed file with the same size and modification time reuses the entries parsed last time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from digest.config import SourceConfig
from digest.content.cache import PostCache
from digest.content.frontmatter import YamlLimits
from digest.content.posts import (
    MAX_YEAR,
    MIN_YEAR,
    LoadResult,
    Post,
    PostProblem,
    Progress,
    load_posts,
)
from digest.content.sources.state import SourceState, SourceStates
from digest.content.text import DEFAULT_CLEANER, ExcerptCleaner
from digest.errors import ContentError, SourceError
from digest.safelog import clean

if TYPE_CHECKING:  # feeds, and the HTTP client they need, load only when a feed is configured
    import httpx

logger = logging.getLogger(__name__)

MAX_FETCHES = 8  # feeds fetched at the same time


@dataclass(frozen=True)
class SourceReport:
    """How one source went in this load."""

    label: str
    kind: str  # "markdown" or "feed"
    outcome: str  # loaded, fetched, not-modified, unchanged, failed
    posts: int  # posts it gave (all of them, before the window is applied)
    error: str | None = None
    failures_in_row: int = 0
    stale: bool = False  # failed, and its last good entries were used
    last_success: str | None = None  # ISO time of its last good load (health record)

    def failing(self, after: int) -> bool:
        """Failed ``after`` or more loads in a row (``content.failing_after``)."""
        return self.failures_in_row >= after

    def describe(self) -> str:
        if self.outcome == "failed":
            kept = f"; using {self.posts} entries from its last good fetch" if self.stale else ""
            return f"{self.label}: failed ({self.error}){kept}"
        return f"{self.label}: {self.outcome}, {self.posts} post{'s' if self.posts != 1 else ''}"


@dataclass
class SourcesResult(LoadResult):
    """Posts from every source, plus how each source went."""

    sources: list[SourceReport] = field(default_factory=list)
    feeds_parsed: int = 0  # feed documents parsed in this load (0 when nothing changed)


CategoryOf = Callable[[list[str]], str | None]


def _first(categories: list[str]) -> str | None:
    return categories[0] if categories else None


def load_sources(
    sources: Sequence[SourceConfig],
    *,
    tz: ZoneInfo,
    root: Path,
    now: datetime,
    states: SourceStates | None = None,
    cache_dir: Path | None = None,
    max_size: int = 5_000_000,
    between: tuple[datetime, datetime] | None = None,
    client: httpx.Client | None = None,
    category_of: CategoryOf = _first,
    primary_folder: Path | None = None,
    cleaner: ExcerptCleaner = DEFAULT_CLEANER,
    limits: YamlLimits | None = None,
    progress: Progress | None = None,
    finish: bool = True,
) -> SourcesResult:
    """Read every source; see the module docstring for what a failure does.

    Without ``finish``, Markdown posts are not finished (no excerpt or sketch read from
    their bodies; :func:`~digest.content.posts.load_posts`): what a check needs.

    Each Markdown folder has its own post cache below ``cache_dir``; ``primary_folder``
    (``content.posts_dir``) keeps the one at ``cache_dir`` itself, where it always was.
    """
    result = SourcesResult(posts=[], problems=[])
    own_client = client is None and any(s.is_remote for s in sources)
    http = client
    if own_client:
        from digest.content.sources.fetch import make_client

        http = make_client()
    reports: dict[int, SourceReport] = {}
    known: dict[int, SourceState | None] = {
        i: states.get(source) if states is not None else None for i, source in enumerate(sources)
    }
    try:
        # Folders first, in this thread: a large cold folder is parsed on every core, which
        # is only safe before other threads exist.
        for i, source in enumerate(sources):
            if source.path is not None:
                folder_cache = None
                if cache_dir is not None:
                    primary = primary_folder is not None and source.file(root) == primary_folder
                    where = cache_dir if primary else cache_dir / _short_hash(source, root)
                    folder_cache = PostCache(where)
                reports[i] = _load_folder(
                    source,
                    root,
                    tz,
                    folder_cache,
                    max_size,
                    between,
                    cleaner,
                    limits,
                    result,
                    progress,
                    finish,
                )
        # Feeds at the same time: a slow or dead one costs its timeout once, not in turn.
        feeds_at = [i for i, source in enumerate(sources) if source.feed is not None]
        if feeds_at:
            with ThreadPoolExecutor(max_workers=min(MAX_FETCHES, len(feeds_at))) as pool:
                futures = {
                    i: pool.submit(
                        _feed_entries,
                        sources[i],
                        root,
                        now,
                        _state(known, i, sources[i], root),
                        http,
                    )
                    for i in feeds_at
                }
                for i in feeds_at:
                    reports[i] = _load_feed(
                        sources[i],
                        source_path(sources[i], root),
                        futures[i],
                        known[i],
                        tz,
                        between,
                        category_of,
                        cleaner,
                        result,
                    )
        for i, source in enumerate(sources):
            report = reports[i]
            state = known[i]
            if state is not None and states is not None:
                if report.outcome == "failed":
                    assert report.error is not None
                    state.failed(report.error, now)
                else:
                    state.succeeded(report.outcome, now, report.posts)
                if source.path is not None:
                    state.kind = "markdown"
                states.put(source, state)
                report = SourceReport(
                    report.label,
                    report.kind,
                    report.outcome,
                    report.posts,
                    report.error,
                    state.failures_in_row,
                    report.stale,
                    state.last_success,
                )
            if report.outcome == "failed":
                logger.warning("source %s", report.describe())
                where = Path(source.name) if source.name else source_path(source, root)
                result.problems.append(PostProblem(where, f"source failed: {report.error}"))
            result.sources.append(report)
    finally:
        if own_client and http is not None:
            http.close()
    failed = [r for r in result.sources if r.outcome == "failed"]
    if failed and len(failed) == len(result.sources) and not any(r.stale for r in failed):
        if len(failed) == 1 and failed[0].kind == "markdown":
            raise ContentError(failed[0].error or "the posts folder cannot be read")
        raise ContentError(
            "every source failed: " + "; ".join(f"{r.label}: {r.error}" for r in failed)
        )
    return result


def source_path(source: SourceConfig, root: Path) -> Path:
    """What a source's posts and problems are filed under: its folder or file, or for a
    URL its host and path (a Path cannot hold ``https://``)."""
    if source.is_remote and source.feed is not None:
        parts = urlsplit(source.feed)
        return Path(parts.netloc + (parts.path.rstrip("/") or ""))
    return source.file(root)


def _short_hash(source: SourceConfig, root: Path) -> str:
    return "folder-" + hashlib.sha256(source.location(root).encode()).hexdigest()[:12]


def _load_folder(
    source: SourceConfig,
    root: Path,
    tz: ZoneInfo,
    cache: PostCache | None,
    max_size: int,
    between: tuple[datetime, datetime] | None,
    cleaner: ExcerptCleaner,
    limits: YamlLimits | None,
    result: SourcesResult,
    progress: Progress | None = None,
    finish: bool = True,
) -> SourceReport:
    folder = source.file(root)
    try:
        loaded = load_posts(
            folder,
            tz,
            cache=cache,
            max_size=max_size,
            between=between,
            cleaner=cleaner,
            limits=limits,
            progress=progress,
            finish=finish,
        )
    except ContentError as exc:
        return SourceReport(source.label, "markdown", "failed", 0, str(exc))
    finally:
        if cache is not None:
            cache.close()
    result.posts.extend(loaded.posts)
    result.problems.extend(loaded.problems)
    result.parsed += loaded.parsed
    result.cached += loaded.cached
    return SourceReport(source.label, "markdown", "loaded", len(loaded.posts))


def _state(
    known: dict[int, SourceState | None], i: int, source: SourceConfig, root: Path
) -> SourceState:
    state = known[i]
    if state is None:
        state = known[i] = SourceState(label=source.label, location=source.location(root))
    return state


def _load_feed(
    source: SourceConfig,
    folder: Path,
    fetched: Future[tuple[list[dict[str, Any]], str, bool]],
    state: SourceState | None,
    tz: ZoneInfo,
    between: tuple[datetime, datetime] | None,
    category_of: CategoryOf,
    cleaner: ExcerptCleaner,
    result: SourcesResult,
) -> SourceReport:
    try:
        entries, outcome, parsed = fetched.result()
    except SourceError as exc:
        stale = state.entries if state is not None else None
        if not stale:
            return SourceReport(source.label, "feed", "failed", 0, str(exc))
        posts = _posts(source, folder, stale, tz, between, category_of, cleaner, result.problems)
        result.posts.extend(posts)
        return SourceReport(source.label, "feed", "failed", len(stale), str(exc), stale=True)
    result.feeds_parsed += parsed
    posts = _posts(source, folder, entries, tz, between, category_of, cleaner, result.problems)
    result.posts.extend(posts)
    return SourceReport(source.label, "feed", outcome, len(entries))


def _feed_entries(
    source: SourceConfig,
    root: Path,
    now: datetime,
    state: SourceState,
    client: httpx.Client | None,
) -> tuple[list[dict[str, Any]], str, bool]:
    """The feed's entries, how they were had (fetched: parsed now; not-modified: a 304;
    unchanged: the same file or the same bytes) and whether they were parsed. Updates
    ``state``'s cache fields only once the new answer is known good, so a broken answer is
    never remembered as the last good one. Runs in a worker thread; raises SourceError."""
    from digest.content.sources import feeds
    from digest.content.sources.fetch import fetch_feed

    cached = state.entries if _current(state.entries) else None
    content_type: str | None = None
    remember: dict[str, Any] = {}
    if source.is_remote:
        assert client is not None and source.feed is not None
        fetched = fetch_feed(
            client,
            source.feed,
            etag=state.etag if cached is not None else None,
            last_modified=state.last_modified if cached is not None else None,
            timeout=source.timeout,
            max_bytes=source.max_bytes,
            max_redirects=source.max_redirects,
            allow_private=source.allow_private_addresses,
        )
        if fetched.not_modified:
            if cached is None:
                raise SourceError("answered 304 Not Modified to a request that had no validators")
            return cached, "not-modified", False
        assert fetched.body is not None
        data, base, content_type = fetched.body, fetched.url, fetched.content_type
        remember = {"etag": fetched.etag, "last_modified": fetched.last_modified}
    else:
        path = source.file(root)
        try:
            stat = path.stat()
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
        if (
            cached is not None
            and stat.st_size == state.file_size
            and stat.st_mtime_ns == state.file_mtime_ns
        ):
            return cached, "unchanged", False
        if stat.st_size > source.max_bytes:
            raise SourceError(
                f"{path} is {stat.st_size:,} bytes, over max_bytes ({source.max_bytes:,})"
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
        remember = {"file_size": stat.st_size, "file_mtime_ns": stat.st_mtime_ns}
        base = None  # a file has no web address: links resolve against the feed's own
    digest_of = hashlib.sha256(data).hexdigest()
    if cached is not None and digest_of == state.content_hash:
        _remember(state, remember)
        return cached, "unchanged", False
    try:
        parsed = feeds.parse_feed(data, base_url=base, content_type=content_type, now=now)
    except feeds.FeedParseError as exc:
        raise SourceError(str(exc)) from None
    entries = feeds.carry_first_seen(_unique(parsed.entries), state.entries or [])
    state.entries, state.content_hash, state.kind = entries, digest_of, parsed.kind
    _remember(state, remember)
    return entries, "fetched", True


def _remember(state: SourceState, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        setattr(state, name, value)


def _current(entries: list[dict[str, Any]] | None) -> bool:
    from digest.content.sources import feeds

    return bool(entries is not None and all(e.get("v") == feeds.RECORD_VERSION for e in entries))


def _unique(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per id (some feeds repeat an item), the first kept."""
    seen: set[str] = set()
    kept = []
    for entry in entries:
        if entry["id"] not in seen:
            seen.add(entry["id"])
            kept.append(entry)
    return kept


def _posts(
    source: SourceConfig,
    folder: Path,
    entries: list[dict[str, Any]],
    tz: ZoneInfo,
    between: tuple[datetime, datetime] | None,
    category_of: CategoryOf,
    cleaner: ExcerptCleaner,
    problems: list[PostProblem],
) -> list[Post]:
    from digest.content.sources import feeds

    posts: list[Post] = []
    slugs: set[str] = set()
    for entry in entries:
        slug = feeds.entry_slug(entry)
        base, n = slug, 2
        while slug in slugs:
            slug, n = f"{base}-{n}", n + 1
        slugs.add(slug)
        # One bad entry is one problem, named with its feed and id; the others go on.
        try:
            date_text = entry.get("date") or entry.get("first_seen")
            if between is not None and date_text:
                moment = datetime.fromisoformat(date_text)
                if not between[0] <= moment < between[1] and MIN_YEAR <= moment.year <= MAX_YEAR:
                    continue
            post = feeds.post_from_entry(
                entry,
                source_label=source.label,
                folder=folder,
                tz=tz,
                default_category=source.category,
                category_of=category_of,
                slug=slug,
                cleaner=cleaner,
            )
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            reason = f"entry {clean(str(entry.get('id')), 120)}: {exc}"
            problems.append(PostProblem(Path(source.name) if source.name else folder, reason))
            continue
        posts.append(post)
    return posts


def describe_age(moment: str | None, now: datetime) -> str:
    """``3h ago`` for an ISO time, ``never`` for None."""
    if not moment:
        return "never"
    seconds = max((now - datetime.fromisoformat(moment)).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"
