"""Opening digest's SQLite files the same way everywhere: WAL, a busy timeout, a schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from digest.errors import StoreError


def open_database(
    path: Path, schema: str, *, what: str, synchronous: str = "FULL"
) -> sqlite3.Connection:
    """Open (creating it and its folder if needed) the database at ``path``.

    Autocommit mode: callers open transactions explicitly. WAL lets readers (``digest
    status``, the preview) run beside a send. ``what`` names the file in errors.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(schema)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(
            f"{path}: cannot open {what}: {exc} (check that its folder is writable)"
        ) from None
    return db
