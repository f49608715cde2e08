"""A SQLite cache of post metadata, keyed by path, size and modification time.

A warm run stats every file (cheap) and parses only those whose size or mtime changed; it
builds only the posts near the requested window, fetching just their rows. The cache is
disposable: delete the folder and the next run rebuilds it. A cache that cannot be opened or
is from another version of digest is ignored and rebuilt, never fatal.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from digest.store.sqlite import retry_when_busy

logger = logging.getLogger(__name__)

# Bump when what read_post_metadata() stores changes, so old entries are re-parsed.
SCHEMA_VERSION = 6  # 6: bounded front matter, field types checked, controls stripped


class CacheRow(NamedTuple):
    path: str
    size: int
    mtime_ns: int
    timestamp: float | None  # approximate UTC moment of the post; None for a problem
    record: str | None  # JSON text
    problem: str | None


class PostCache:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "posts.sqlite"
        self._db: sqlite3.Connection | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30)

            def setup() -> None:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("BEGIN IMMEDIATE")
                try:
                    version = db.execute("PRAGMA user_version").fetchone()[0]
                    if version != SCHEMA_VERSION:
                        db.execute("DROP TABLE IF EXISTS posts")
                        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS posts (path TEXT PRIMARY KEY, size INTEGER,"
                        " mtime_ns INTEGER, ts REAL, record TEXT, problem TEXT, excerpt TEXT)"
                    )
                    db.commit()
                except BaseException:
                    db.rollback()
                    raise

            retry_when_busy(setup)
            self._db = db
        except sqlite3.Error as exc:
            logger.warning("post cache %s unusable (%s); reading every file", self.path, exc)

    def index(self) -> dict[str, tuple[int, int, float | None, str | None]]:
        """path -> (size, mtime_ns, timestamp, problem) for every cached file."""
        if self._db is None:
            return {}
        try:
            rows = self._db.execute("SELECT path, size, mtime_ns, ts, problem FROM posts")
            return {path: (size, mtime, ts, problem) for path, size, mtime, ts, problem in rows}
        except sqlite3.Error as exc:
            logger.warning("post cache %s unreadable (%s); reading every file", self.path, exc)
            return {}

    def records(self, paths: Sequence[str]) -> dict[str, tuple[dict[str, Any], str | None]]:
        """The stored record and finished excerpt (if any) of each path."""
        found: dict[str, tuple[dict[str, Any], str | None]] = {}
        if self._db is None:
            return found
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (path TEXT PRIMARY KEY)")
        self._db.execute("DELETE FROM wanted")
        self._db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", [(p,) for p in paths])
        rows = self._db.execute(
            "SELECT posts.path, record, excerpt FROM posts JOIN wanted USING (path)"
        )
        for path, record, excerpt in rows:
            found[path] = (json.loads(record), excerpt)
        return found

    def update(
        self,
        fresh: Iterable[CacheRow],
        excerpts: Mapping[str, str] | None = None,
        forget: Iterable[str] = (),
    ) -> None:
        if self._db is None:
            return
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO posts VALUES (?, ?, ?, ?, ?, ?, NULL)",
                    [
                        (
                            row.path,
                            row.size,
                            row.mtime_ns,
                            row.timestamp,
                            row.record,
                            row.problem,
                        )
                        for row in fresh
                    ],
                )
                self._db.executemany(
                    "UPDATE posts SET excerpt = ? WHERE path = ?",
                    [(text, path) for path, text in (excerpts or {}).items()],
                )
                self._db.executemany("DELETE FROM posts WHERE path = ?", [(p,) for p in forget])
        except sqlite3.Error as exc:
            logger.warning("post cache %s not updated: %s", self.path, exc)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
