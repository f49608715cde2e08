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

import threading
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

_TAKE = f"""
INSERT INTO serve_buckets (bucket, tokens, updated, allowed) VALUES (?, ? - 1, {_NOW}, 1)
ON CONFLICT (bucket) DO UPDATE SET
    allowed = CASE WHEN LEAST(?, serve_buckets.tokens
        + ({_NOW} - serve_buckets.updated) * ?) >= 1 THEN 1 ELSE 0 END,
    tokens = LEAST(?, serve_buckets.tokens + ({_NOW} - serve_buckets.updated) * ?)
        - CASE WHEN LEAST(?, serve_buckets.tokens
            + ({_NOW} - serve_buckets.updated) * ?) >= 1 THEN 1 ELSE 0 END,
    updated = {_NOW}
RETURNING allowed, tokens
"""


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

    def __init__(self, target: Target, per_minute: float, burst: int, *, prefix: str) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.prefix = prefix
        self._shared = _Shared(target)
        self._tokens: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        rate, burst = self.rate, self.burst
        allowed, tokens = self._shared.run(
            _TAKE,
            (f"{self.prefix}:{key}", burst, burst, rate, burst, rate, burst, rate),
        )
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
