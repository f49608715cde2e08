"""A provider's pace shared through the database by every process sending to it.

Each sender process paces its own requests (:class:`~digest.delivery.providers.http.Pacer`);
with several processes on one account, each would spend the whole limit. :class:`DatabasePace`
keeps one sequence of request slots per provider account in the ledger's ``send_pace`` table:
a request takes the next slot with one atomic statement that moves the slot on by the
request interval, and waits for it. N processes together therefore start no more requests
than the one limit allows. A provider's "wait" (429, Retry-After) moves the shared slot past
the pause, so every process waits, not only the one that was told.

Evenly started requests can still arrive bunched (uploads take varying time), so requests
also hold one of N tokens (``send_tokens``, N the provider's limit per window W) from before
they start until W after their answer: a request arrives no later than its answer, so no
window of W at the provider sees more than N of them, from all processes together.

On PostgreSQL the database server's clock is used, so hosts with different clocks agree; on
SQLite every sender is on this host and its clock is used.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from digest.delivery.ledger import MIGRATIONS
from digest.store.database import Connection, Target, dialect_of, open_store

_PG_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
_PG_RESERVE = (
    f"INSERT INTO send_pace (pace_key, next_slot) VALUES (?, {_PG_NOW} + ?) "
    "ON CONFLICT (pace_key) DO UPDATE SET "
    f"next_slot = GREATEST(send_pace.next_slot, {_PG_NOW}) + ? "
    f"RETURNING next_slot - ? - {_PG_NOW}"
)
_SQLITE_RESERVE = (
    "INSERT INTO send_pace (pace_key, next_slot) VALUES (?, ? + ?) "
    "ON CONFLICT (pace_key) DO UPDATE SET next_slot = MAX(send_pace.next_slot, ?) + ? "
    "RETURNING next_slot - ? - ?"
)
_PG_PAUSE = (
    f"INSERT INTO send_pace (pace_key, next_slot) VALUES (?, {_PG_NOW} + ?) "
    "ON CONFLICT (pace_key) DO UPDATE SET next_slot = GREATEST(send_pace.next_slot, "
    "excluded.next_slot)"
)
_SQLITE_PAUSE = (
    "INSERT INTO send_pace (pace_key, next_slot) VALUES (?, ? + ?) "
    "ON CONFLICT (pace_key) DO UPDATE SET next_slot = MAX(send_pace.next_slot, "
    "excluded.next_slot)"
)


class DatabasePace:
    """Request slots for the account ``key``, shared through the ledger's database."""

    def __init__(self, target: Target, key: str) -> None:
        self.target = target
        self.key = key
        self._local = threading.local()  # one connection per thread (sqlite3 wants that)
        self._all: list[tuple[int, Connection]] = []
        self._lock = threading.Lock()

    def _db(self) -> Connection:
        db: Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = open_store(self.target, MIGRATIONS, store="ledger", what="the send ledger")
            self._local.db = db
            with self._lock:
                self._all.append((threading.get_ident(), db))
        return db

    def reserve(self, interval: float) -> float:
        db = self._db()
        if dialect_of(db) == "postgresql":
            row: Any = db.execute(_PG_RESERVE, (self.key, interval, interval, interval)).fetchone()
        else:
            now = time.time()
            params = (self.key, now, interval, now, interval, interval, now)
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(_SQLITE_RESERVE, params).fetchone()
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return max(0.0, float(row[0]))

    def pause(self, seconds: float) -> None:
        db = self._db()
        if dialect_of(db) == "postgresql":
            db.execute(_PG_PAUSE, (self.key, seconds))
        else:
            db.execute(_SQLITE_PAUSE, (self.key, time.time(), seconds))

    def _now(self, db: Connection) -> float:
        if dialect_of(db) == "postgresql":
            row: Any = db.execute(f"SELECT {_PG_NOW}").fetchone()
            return float(row[0])
        return time.time()

    def acquire(self, capacity: int, hold: float) -> tuple[int | None, float]:
        """One of ``capacity`` tokens free now (see the module doc), or how long to wait."""
        db = self._db()
        postgres = dialect_of(db) == "postgresql"
        db.execute("BEGIN IMMEDIATE")  # on PostgreSQL: the ledger's write lock
        try:
            now = self._now(db)
            db.execute(
                "INSERT OR IGNORE INTO send_tokens (pace_key, token, busy_until) "
                + (
                    "SELECT ?, g, 0 FROM generate_series(0, ? - 1) AS g"
                    if postgres
                    else "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g "
                    "WHERE n + 1 < ?) SELECT ?, n, 0 FROM g"
                ),
                (self.key, capacity) if postgres else (capacity, self.key),
            )
            row: Any = db.execute(
                "SELECT token, busy_until FROM send_tokens WHERE pace_key = ? AND token < ? "
                "ORDER BY busy_until, token LIMIT 1",
                (self.key, capacity),
            ).fetchone()
            if row is None or float(row[1]) > now:
                db.execute("COMMIT")
                return None, (float(row[1]) - now) if row else 1.0
            db.execute(
                "UPDATE send_tokens SET busy_until = ? WHERE pace_key = ? AND token = ?",
                (now + hold, self.key, row[0]),
            )
            db.execute("COMMIT")
            return int(row[0]), 0.0
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def release(self, token: int, window: float) -> None:
        db = self._db()
        if dialect_of(db) == "postgresql":
            db.execute(
                f"UPDATE send_tokens SET busy_until = {_PG_NOW} + ? "
                "WHERE pace_key = ? AND token = ?",
                (window, self.key, token),
            )
        else:
            db.execute(
                "UPDATE send_tokens SET busy_until = ? WHERE pace_key = ? AND token = ?",
                (time.time() + window, self.key, token),
            )

    def close(self) -> None:
        """Close the connections (a SQLite one only from the thread that opened it; the
        others close when their thread ends and drops them)."""
        with self._lock:
            for ident, db in self._all:
                if ident == threading.get_ident() or dialect_of(db) == "postgresql":
                    db.close()
            self._all.clear()
