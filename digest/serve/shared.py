"""`digest serve` on several hosts: the subscribe rate limit in the database.

With ``database:`` set, every `digest serve` process behind a load balancer uses
:class:`SharedRateLimiter` in place of the in-memory
:class:`~digest.serve.security.RateLimiter`, so a client cannot get N times its subscribe
allowance by landing on N hosts. Without ``database:`` (one process on the SQLite files) it
stays in memory, as before. (The webhook replay memory and the per-address mail limit live
in the subscriber store, so they are shared wherever that store is.)

Each call is one statement on the database's clock (PostgreSQL's ``clock_timestamp()``), so
hosts need not agree on the time. The token bucket is updated in one atomic
``INSERT … ON CONFLICT DO UPDATE``: concurrent requests from one client on two hosts take one
token each, never the same one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from digest.store.database import StoreSpec, Target, open_store
from digest.store.migrations import Migration

_SCHEMA = """
CREATE TABLE IF NOT EXISTS serve_buckets (
    bucket  TEXT PRIMARY KEY,   -- what is limited, e.g. subscribe:<client address>
    tokens  REAL NOT NULL,
    updated REAL NOT NULL,      -- seconds since the epoch, the database's clock
    allowed INTEGER NOT NULL DEFAULT 1
);
"""

MIGRATIONS = (Migration(1, "serve's rate limits", _SCHEMA),)
SPEC = StoreSpec("serve", "the shared serve state", MIGRATIONS, ("serve_buckets",))

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"

_TAKE = """
INSERT INTO serve_buckets (bucket, tokens, updated, allowed) VALUES (:bucket, :burst - 1, :now, 1)
ON CONFLICT (bucket) DO UPDATE SET
    allowed = CASE WHEN LEAST(:burst, serve_buckets.tokens
        + (:now - serve_buckets.updated) * :rate) >= 1 THEN 1 ELSE 0 END,
    tokens = LEAST(:burst, serve_buckets.tokens + (:now - serve_buckets.updated) * :rate)
        - CASE WHEN LEAST(:burst, serve_buckets.tokens
            + (:now - serve_buckets.updated) * :rate) >= 1 THEN 1 ELSE 0 END,
    updated = :now
RETURNING allowed, tokens
"""


def _positional(template: str, now_sql: str) -> tuple[str, list[str]]:
    """``:name`` markers as ``?`` (``:now`` as ``now_sql``), and the names in order."""
    names: list[str] = []

    def mark(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "now" and now_sql != "?":
            return now_sql
        names.append(name)
        return "?"

    return re.sub(r":([a-z]+)\b", mark, template), names


class _Shared:
    """One connection for the process, used by one caller at a time."""

    def __init__(self, target: Target) -> None:
        self._db = open_store(target, MIGRATIONS, store="serve", what=SPEC.what)
        self._lock = threading.Lock()

    def run(self, sql: str, params: tuple[Any, ...], *, fetch: bool = True) -> Any:
        with self._lock:
            cursor = self._db.execute(sql, params)
            return cursor.fetchone() if fetch else None

    def close(self) -> None:
        self._db.close()


class SharedRateLimiter:
    """At most ``burst`` requests at once per key, refilled at ``per_minute``, across hosts."""

    def __init__(
        self,
        target: Target,
        per_minute: float,
        burst: int,
        *,
        prefix: str,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (seconds) is for tests; by default the database server's clock is used,
        the one clock every host shares."""
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.prefix = prefix
        self.clock = clock
        self._sql, self._names = _positional(_TAKE, "?" if clock else _NOW)
        self._shared = _Shared(target)
        self._tokens: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        values = {
            "bucket": f"{self.prefix}:{key}",
            "burst": self.burst,
            "rate": self.rate,
            "now": self.clock() if self.clock else None,
        }
        allowed, tokens = self._shared.run(self._sql, tuple(values[name] for name in self._names))
        self._tokens[key] = float(tokens)
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        return bool(allowed)

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` may make another request (from the last answer)."""
        tokens = self._tokens.get(key, self.burst)
        if tokens >= 1.0:
            return 0
        return max(1, int((1.0 - tokens) / self.rate + 0.999))

    def close(self) -> None:
        self._shared.close()
