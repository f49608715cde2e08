"""A SQLite cache of post metadata, keyed by path, size and modification time.

A warm run stats every file (cheap) and parses only those whose size or mtime changed.
The cache is disposable: delete the folder and the next run rebuilds it. A cache that
cannot be opened or is from another version of digest is ignored and rebuilt, never fatal.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Bump when what read_post_metadata() stores changes, so old entries are re-parsed.
SCHEMA_VERSION = 3

Entry = tuple[int, int, "dict[str, Any] | None", "str | None"]


class PostCache:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "posts.sqlite"
        self._db: sqlite3.Connection | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                db.execute("DROP TABLE IF EXISTS posts")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute(
                "CREATE TABLE IF NOT EXISTS posts (path TEXT PRIMARY KEY, size INTEGER,"
                " mtime_ns INTEGER, record TEXT, problem TEXT)"
            )
            db.commit()
            self._db = db
        except sqlite3.Error as exc:
            logger.warning("post cache %s unusable (%s); reading every file", self.path, exc)

    def snapshot(self) -> dict[str, Entry]:
        if self._db is None:
            return {}
        rows = self._db.execute("SELECT path, size, mtime_ns, record, problem FROM posts")
        return {
            path: (size, mtime, json.loads(record) if record else None, problem)
            for path, size, mtime, record, problem in rows
        }

    def update(
        self,
        fresh: Iterable[tuple[str, int, int, dict[str, Any] | None, str | None]],
        forget: Iterable[str] = (),
    ) -> None:
        if self._db is None:
            return
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO posts VALUES (?, ?, ?, ?, ?)",
                    [
                        (path, size, mtime, json.dumps(record) if record else None, problem)
                        for path, size, mtime, record, problem in fresh
                    ],
                )
                self._db.executemany("DELETE FROM posts WHERE path = ?", [(p,) for p in forget])
        except sqlite3.Error as exc:
            logger.warning("post cache %s not updated: %s", self.path, exc)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
