"""Opening digest's SQLite files the same way everywhere: WAL, a busy timeout, retries."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from digest.errors import StoreError
from digest.store.private import create_private, make_private

T = TypeVar("T")

# How long opening a database waits for other processes doing the same.
SETUP_PATIENCE = 30.0


def open_sqlite(path: Path, *, what: str, synchronous: str = "FULL") -> sqlite3.Connection:
    """Connect to ``path`` (creating it and its folder), in autocommit and WAL mode."""
    try:
        # the store holds addresses and link secrets: 0600 in a 0700 folder (SQLite gives
        # its -wal and -shm files the mode of the database file)
        create_private(path)
        for companion in ("-wal", "-shm"):
            make_private(path.with_name(path.name + companion))
        db = sqlite3.connect(path, isolation_level=None, timeout=SETUP_PATIENCE)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(
            f"{path}: cannot open {what}: {exc} (check that its folder is writable)"
        ) from None

    def setup() -> None:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")

    try:
        retry_when_busy(setup)
    except sqlite3.Error as exc:
        db.close()
        raise StoreError(
            f"{path}: cannot open {what}: {exc} (check that its folder is writable and "
            "that no other program holds the file)"
        ) from None
    return db


def retry_when_busy(step: Callable[[], T], patience: float = SETUP_PATIENCE) -> T:
    """Run ``step``, retrying while SQLite answers "database is locked" or "busy"."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0.01, 0.05))
