"""`digest serve` on several hosts: its rate limits and webhook replay memory in the database.

With ``database:`` set, every `digest serve` process behind a load balancer uses these in
place of the in-memory :class:`~digest.serve.security.RateLimiter` and
:class:`~digest.serve.webhooks.ReplayGuard`, so a client cannot get N times its subscribe
allowance by landing on N hosts, and a webhook retried to another host is still recognised.
Without ``database:`` (one process on the SQLite files) they stay in memory, as before.

Both keep the interface of the in-memory versions. Each call is one statement on the
database's clock (PostgreSQL's ``clock_timestamp()``), so hosts need not agree on the time.
The token bucket is updated in one atomic ``INSERT … ON CONFLICT DO UPDATE``: concurrent
requests from one client on two hosts take one token each, never the same one.

The replay memory checks before applying and remembers after (as in memory): a delivery
retried to two hosts at the same instant can be applied twice, which is harmless because
applying an event is idempotent (a bounce marks an address bounced once); a later repeat
is recognised on every host.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from digest.serve.webhooks import Delivery
from digest.store.database import StoreSpec, Target, open_store
from digest.store.migrations import Migration

_SCHEMA = """
CREATE TABLE IF NOT EXISTS serve_buckets (
    bucket  TEXT PRIMARY KEY,   -- what is limited, e.g. subscribe:<client address>
    tokens  REAL NOT NULL,
    updated REAL NOT NULL,      -- seconds since the epoch, the database's clock
    allowed INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS webhook_replays (
    provider    TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    seen_at     REAL NOT NULL,
    PRIMARY KEY (provider, delivery_id)
);
CREATE INDEX IF NOT EXISTS webhook_replays_age ON webhook_replays (seen_at);
"""

MIGRATIONS = (Migration(1, "serve's rate limits and webhook replay memory", _SCHEMA),)
SPEC = StoreSpec(
    "serve", "the shared serve state", MIGRATIONS, ("serve_buckets", "webhook_replays")
)

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


class SharedReplayGuard:
    """The webhook deliveries applied within the last ``keep`` seconds, on any host."""

    def __init__(self, target: Target, *, keep: float) -> None:
        self.keep = keep
        self._shared = _Shared(target)

    def seen(self, delivery: Delivery, now: datetime) -> bool:
        if delivery.delivery_id is None:
            return False
        row = self._shared.run(
            "SELECT 1 FROM webhook_replays WHERE provider = ? AND delivery_id = ? "
            f"AND seen_at > {_NOW} - ?",
            (delivery.provider, delivery.delivery_id, self.keep),
        )
        return row is not None

    def remember(self, delivery: Delivery, now: datetime) -> None:
        if delivery.delivery_id is None:
            return
        self._shared.run(
            f"INSERT INTO webhook_replays (provider, delivery_id, seen_at) VALUES (?, ?, {_NOW}) "
            f"ON CONFLICT (provider, delivery_id) DO UPDATE SET seen_at = {_NOW}",
            (delivery.provider, delivery.delivery_id),
            fetch=False,
        )
        self._shared.run(  # forget what is too old to be replayed
            f"DELETE FROM webhook_replays WHERE seen_at < {_NOW} - ?",
            (self.keep,),
            fetch=False,
        )

    def close(self) -> None:
        self._shared.close()
