"""What digest remembers about each source between runs: its cache and its health.

One JSON file per source in ``content.feeds_dir`` (``data/feeds/<name>-<hash>.json``),
replaced atomically. For a feed it holds the validators of the last answer (ETag,
Last-Modified), a hash of the bytes and the entries parsed from them, so an unchanged feed
(a 304, the same bytes, the same file) is not parsed again. For every source it holds a
small health record: when it was last tried, when it last worked, what went wrong, and
how many runs in a row it has failed, which ``digest check`` reports.

The files are a cache: deleting them costs one full fetch per feed and the failure count.
An unreadable or foreign file is ignored (and replaced), never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.config import SourceConfig
from digest.store.atomic import write_atomic

logger = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass
class SourceState:
    """One source's cache and health record."""

    label: str
    location: str
    kind: str = ""  # "markdown", or the feed's format: "rss20", "atom10", "json1.1", …
    # cache (feeds)
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    file_size: int | None = None
    file_mtime_ns: int | None = None
    entries: list[dict[str, Any]] | None = None
    # health
    last_attempt: str | None = None
    last_success: str | None = None
    last_outcome: str | None = None  # fetched, not-modified, unchanged, loaded, failed
    last_error: str | None = None
    failures_in_row: int = 0
    posts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def succeeded(self, outcome: str, now: datetime, posts: int) -> None:
        self.last_attempt = self.last_success = now.isoformat()
        self.last_outcome = outcome
        self.last_error = None
        self.failures_in_row = 0
        self.posts = posts

    def failed(self, error: str, now: datetime) -> None:
        self.last_attempt = now.isoformat()
        self.last_outcome = "failed"
        self.last_error = error
        self.failures_in_row += 1


def state_key(source: SourceConfig, root: Path) -> str:
    """A stable file name for a source: readable start, hash of where it is."""
    where = source.location(root)
    readable = re.sub(r"[^a-z0-9]+", "-", source.label.casefold()).strip("-")[:40] or "source"
    return f"{readable}-{hashlib.sha256(where.encode('utf-8')).hexdigest()[:12]}"


class SourceStates:
    """The folder of state files."""

    def __init__(self, folder: Path, root: Path, *, fresh: bool = False) -> None:
        self.folder = folder
        self.root = root
        self.fresh = fresh  # keep the health records but not the cache (a --no-cache run)

    def _file(self, source: SourceConfig) -> Path:
        return self.folder / f"{state_key(source, self.root)}.json"

    def get(self, source: SourceConfig) -> SourceState:
        fresh = SourceState(label=source.label, location=source.location(self.root))
        path = self._file(source)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return fresh
        except (OSError, ValueError) as exc:
            logger.warning("source state %s unreadable (%s); starting afresh", path, exc)
            return fresh
        if not isinstance(data, dict) or data.pop("version", None) != STATE_VERSION:
            return fresh
        known = set(SourceState.__dataclass_fields__)
        try:
            state = SourceState(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return fresh
        state.label = source.label
        if self.fresh:
            state.entries = state.etag = state.last_modified = state.content_hash = None
        return state

    def put(self, source: SourceConfig, state: SourceState) -> None:
        path = self._file(source)
        try:
            payload = json.dumps({"version": STATE_VERSION, **asdict(state)}, ensure_ascii=False)
            write_atomic(path, payload)
        except OSError as exc:
            logger.warning("source state %s not saved: %s", path, exc)
