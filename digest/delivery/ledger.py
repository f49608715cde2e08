"""The send ledger: what was sent to whom, and the source of truth for resuming.

One row per (issue id, subscriber). A row moves through these states, and every move is
committed before the next step that depends on it::

    pending ──claim──▶ sending ──▶ sent                (the provider said so)
       ▲                 │  ├────▶ failed-permanent    (the provider refused this address)
       ├─ refused for now┤  (older ledgers: failed-retryable ──claim──▶ sending …)
       └──── no request ─┤  └────▶ uncertain           (bytes left, no answer came)
                         │           │  reconciled: sent, or back to pending
                         │           └─ resent (idempotency key, or --resend-uncertain)
    (queued, with no posts in the subscriber's sections)  skipped

A message is ``sent`` only on evidence: the provider's answer, a file renamed into place,
or the provider's own record of it (reconciliation). ``uncertain`` is never counted as sent.
``sending`` rows after a crash are settled by the provider (see :mod:`digest.delivery.reconcile`):
``handed_off`` records that the provider was about to receive the last byte of that message
(SMTP: the end of DATA); a ``sending`` row without it was certainly never accepted.

Every state change goes through :meth:`Ledger.transition`, which checks each move against
:data:`TRANSITIONS` (a move the table does not allow is a bug, and raises).

SQLite in WAL mode: a commit is one write to the log, durable against the process being
killed at any point; ``synchronous=FULL`` makes it durable against power loss as well,
except for hand-off marks (see :meth:`Ledger.mark_handed_off`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.delivery.ledger_leases import LedgerLeases
from digest.delivery.ledger_queries import LedgerQueries
from digest.delivery.ledger_rows import (
    CHUNK,
    FAILED_PERMANENT,
    FAILED_RETRYABLE,
    FINISHED,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    STATES,
    TRANSITIONS,
    UNCERTAIN,
    DeliveryState,
    Fence,
    LeaseLost,
    Outcome,
    fence_params,
    iso,
)
from digest.delivery.providers.base import Delivery
from digest.errors import StoreError
from digest.store.clock import rewrite_sql
from digest.store.database import StoreSpec, Target, as_target, open_store
from digest.store.lock import StoreLock
from digest.store.migrations import Migration

# the names the rest of digest reads from the ledger
__all__ = [
    "CHUNK",
    "FAILED_PERMANENT",
    "FAILED_RETRYABLE",
    "FINISHED",
    "MIGRATIONS",
    "PENDING",
    "SENDING",
    "SENT",
    "SKIPPED",
    "SPEC",
    "STATES",
    "TRANSITIONS",
    "UNCERTAIN",
    "Delivery",
    "DeliveryState",
    "Fence",
    "LeaseLost",
    "Ledger",
    "Outcome",
    "scrub_address",
]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS issues (
    issue_id     TEXT PRIMARY KEY,
    subject      TEXT NOT NULL DEFAULT '',
    provider     TEXT NOT NULL DEFAULT '',
    started_at   TEXT NOT NULL,
    enqueued_at  TEXT,
    completed_at TEXT,
    runs         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS deliveries (
    issue_id        TEXT NOT NULL,
    subscriber_id   INTEGER NOT NULL,
    email           TEXT NOT NULL,
    variant         TEXT NOT NULL DEFAULT '',
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    batch_key       TEXT,
    handed_off      INTEGER NOT NULL DEFAULT 0,
    confirmed       INTEGER NOT NULL DEFAULT 0,
    message_id      TEXT,
    provider_message_id TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    sent_at         TEXT,
    PRIMARY KEY (issue_id, subscriber_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (issue_id, state, subscriber_id);
CREATE INDEX IF NOT EXISTS deliveries_variant
    ON deliveries (issue_id, state, variant, subscriber_id);
"""

# The schema's history, oldest first (digest.store.migrations); add new steps at the end.
_LEASES = """
ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until TEXT;
CREATE INDEX IF NOT EXISTS deliveries_lease ON deliveries (issue_id, lease_owner);
"""

_PACE = """
CREATE TABLE IF NOT EXISTS send_pace (
    pace_key  TEXT PRIMARY KEY,   -- a provider account
    next_slot REAL NOT NULL       -- when the next request may start, seconds since the epoch
);
CREATE TABLE IF NOT EXISTS send_tokens (
    pace_key   TEXT NOT NULL,
    token      INTEGER NOT NULL,
    busy_until REAL NOT NULL,     -- in flight, or answered less than a window ago, until then
    PRIMARY KEY (pace_key, token)
);
"""

_STAMPED = {
    "issues": ("started_at", "enqueued_at", "completed_at"),
    "deliveries": ("created_at", "updated_at", "sent_at", "lease_until"),
}
_STAMPS = "".join(rewrite_sql(table, cols, "sqlite") for table, cols in _STAMPED.items())
_STAMPS_POSTGRESQL = "".join(
    rewrite_sql(table, cols, "postgresql") for table, cols in _STAMPED.items()
)

# When the request that may have carried a row's message started: reconciliation asks the
# provider about messages from then on (an uncertain row keeps the attempt it is unsure of).
_ATTEMPTED = "ALTER TABLE deliveries ADD COLUMN attempted_at TEXT;\n"
# The fencing token: bumped each time a row's lease passes to another sender, and compared
# (with the owner) when the row is claimed and when its message is handed over, so a sender
# that lost the row (frozen past its lease) cannot send it.
_FENCE = """
ALTER TABLE deliveries ADD COLUMN lease_generation INTEGER NOT NULL DEFAULT 0;
"""

MIGRATIONS = (
    Migration(1, "issues and deliveries, as before schema versions", _SCHEMA),
    Migration(2, "leases: several senders share one issue", _LEASES),
    Migration(3, "the provider's pace, shared by every sender", _PACE),
    Migration(4, "one timestamp form (digest.store.clock)", _STAMPS, _STAMPS_POSTGRESQL),
    Migration(5, "the time of each row's attempt, for reconciliation", _ATTEMPTED),
    Migration(6, "a fencing token per leased row", _FENCE),
)
SPEC = StoreSpec(
    "ledger", "the send ledger", MIGRATIONS, ("issues", "deliveries", "send_pace", "send_tokens")
)


def _busy(shared: bool) -> str:
    if shared:
        return (
            "the ledger is locked for itself by another process (digest db migrate, or an "
            "older digest send); wait for it to finish"
        )
    return "another digest send is running; wait for it to finish (it resumes where it stopped)"


class Ledger(LedgerQueries, LedgerLeases):
    """The deliveries table. Several senders may share an issue (see :meth:`lease`)."""

    def __init__(self, path: Target | str) -> None:
        self.path = as_target(path)
        self._db = open_store(self.path, MIGRATIONS, store="ledger", what="the send ledger")
        self._lock = StoreLock(self._db, self.path, "digest send")

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.unlock()
        self._db.close()

    # -- one sender at a time

    def lock(self, *, shared: bool = False) -> None:
        """Hold the ledger's lock; the kernel (or the database server) drops it if the
        process dies.

        Senders hold it ``shared``: any number send at once, each leasing its rows.
        ``digest db migrate`` holds it exclusively, so no send runs while rows move.
        """
        self._lock.acquire(shared=shared, busy=_busy(shared))

    def unlock(self) -> None:
        self._lock.release()

    # -- issues

    def issue(self, issue_id: str) -> dict[str, Any] | None:
        row = self._run(
            "SELECT issue_id, subject, provider, started_at, enqueued_at, completed_at, runs "
            "FROM issues WHERE issue_id = ?",
            (issue_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("issue_id", "subject", "provider", "started_at", "enqueued_at", "completed_at")
        return {**dict(zip(keys, row[:6], strict=True)), "runs": row[6]}

    def start_run(self, issue_id: str, *, subject: str, provider: str, now: datetime) -> None:
        self._run(
            "INSERT INTO issues (issue_id, subject, provider, started_at, runs) "
            "VALUES (?, ?, ?, ?, 1) ON CONFLICT (issue_id) DO UPDATE SET runs = issues.runs + 1, "
            "subject = excluded.subject, provider = excluded.provider",
            (issue_id, subject, provider, iso(now)),
        )

    def mark_enqueued(self, issue_id: str, now: datetime) -> None:
        self._run("UPDATE issues SET enqueued_at = ? WHERE issue_id = ?", (iso(now), issue_id))

    def mark_completed(self, issue_id: str, now: datetime | None) -> None:
        stamp = iso(now) if now else None
        self._run("UPDATE issues SET completed_at = ? WHERE issue_id = ?", (stamp, issue_id))

    def reset_for_resend(self, issue_id: str, now: datetime) -> int:
        """``--force``: queue every finished row of the issue again. Returns how many."""
        return self.transition(issue_id, [], now=now, reset=True)

    # -- rows

    def enqueue(
        self,
        issue_id: str,
        rows: Iterable[tuple[int, str] | tuple[int, str, str]],
        *,
        now: datetime,
        chunk: int = 5000,
    ) -> int:
        """Queue (subscriber id, email[, variant]) once; rows already queued are left alone.

        The variant (the subscriber's choice of sections, when known) lets
        :meth:`iter_state` hand rows out grouped by it.
        """
        stamp = iso(now)
        added = 0
        batch: list[tuple[Any, ...]] = []

        def flush() -> int:
            before = self._db.total_changes
            self._transaction(
                "INSERT OR IGNORE INTO deliveries (issue_id, subscriber_id, email, variant, "
                "state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
            return self._db.total_changes - before

        for row in rows:
            variant = row[2] if len(row) > 2 else ""
            batch.append((issue_id, row[0], row[1], variant, PENDING, stamp, stamp))
            if len(batch) >= chunk:
                added += flush()
                batch = []
        if batch:
            added += flush()
        return added

    def claim(
        self,
        issue_id: str,
        subscriber_ids: Sequence[int],
        *,
        batch_key: str,
        variant: str,
        message_ids: Sequence[str],
        now: datetime,
        variants: Sequence[str] | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Mark rows ``sending`` (committed) before the provider is given them.

        ``variants``, one per row, when a batch mixes variants (else each row gets ``variant``).
        ``fence``: only while that sender holds them at their generations (:meth:`transition`).
        """
        per_row = variants if variants is not None else [variant] * len(subscriber_ids)
        self.transition(
            issue_id,
            [
                Outcome(sid, SENDING, batch_key=batch_key, variant=row_variant, message_id=mid)
                for sid, mid, row_variant in zip(subscriber_ids, message_ids, per_row, strict=True)
            ],
            now=now,
            fence=fence,
        )

    def mark_handed_off(self, issue_id: str, subscriber_id: int) -> None:
        """Record that the message's last byte is about to go (committed at once).

        Written with ``synchronous=NORMAL``: one write to the WAL, no fsync, so the gap
        between this commit and the byte leaving is as short as it can be. It is durable
        against the process being killed; the next full commit makes it durable on disk.
        """
        self._run("PRAGMA synchronous=NORMAL")
        try:
            self._run(
                "UPDATE deliveries SET handed_off = 1 WHERE issue_id = ? AND subscriber_id = ?",
                (issue_id, subscriber_id),
            )
        finally:
            self._run("PRAGMA synchronous=FULL")

    def record(self, issue_id: str, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        """Commit what happened to each delivery, in one transaction."""
        self.transition(issue_id, outcomes, now=now)

    def transition(
        self,
        issue_id: str,
        outcomes: Sequence[Outcome],
        *,
        now: datetime,
        reset: bool = False,
        fence: Fence | None = None,
    ) -> int:
        """The one place a delivery's state changes: every move in one transaction.

        Each move is checked against :data:`TRANSITIONS`; a row that is not in an allowed
        source state makes the whole transaction roll back with a :class:`StoreError` (a
        bug: two paths disagree about a row). ``reset`` (``--force``) moves every finished
        row of the issue back to ``pending`` and returns how many.

        With a ``fence``, only rows that sender still holds move (with the generations
        given, only at those generations); the others are left to their new holder and,
        once the rest is committed, :class:`LeaseLost` names how many.
        """
        stamp = iso(now)
        if reset:
            return self._reset(issue_id, stamp)
        by_target: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            if outcome.state not in TRANSITIONS:
                raise StoreError(f"{self.path}: no such delivery state {outcome.state!r}")
            by_target.setdefault(outcome.state, []).append(outcome)
        lost = changed = 0
        self._run("BEGIN IMMEDIATE")
        try:
            for target, group in by_target.items():
                taken = self._move(issue_id, target, group, stamp, fence)
                lost += taken
                changed += len(group)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._run("COMMIT")
        if lost:
            raise LeaseLost(
                f"{issue_id}: {lost} row(s) passed to another sender (this one's lease ran "
                "out); stopped without touching them"
            )
        return changed

    def _reset(self, issue_id: str, stamp: str) -> int:
        """``--force``: every finished row of the issue back to ``pending``."""
        marks = ",".join("?" * len(FINISHED))
        cursor = self._run(
            "UPDATE deliveries SET state = ?, attempts = 0, batch_key = NULL, "
            "handed_off = 0, confirmed = 0, last_error = NULL, updated_at = ? "
            f"WHERE issue_id = ? AND state IN ({marks})",
            (PENDING, stamp, issue_id, *sorted(FINISHED)),
        )
        self.mark_completed(issue_id, None)
        return cursor.rowcount

    def _move(
        self, issue_id: str, target: str, group: Sequence[Outcome], stamp: str, fence: Fence | None
    ) -> int:
        """Move ``group`` to ``target`` inside :meth:`transition`'s transaction; returns how
        many of its rows another sender holds now (left alone), or raises
        :class:`StoreError` when a row is in no state it may move from."""
        sources = sorted(TRANSITIONS[target])
        marks = ",".join("?" * len(sources))
        fenced = ""
        if fence is not None:
            fenced = " AND lease_owner = ?" + (
                " AND lease_generation = ?" if fence.generations is not None else ""
            )
        before = self._db.total_changes
        self._many(
            "UPDATE deliveries SET state = ?, "
            "attempts = attempts + (CASE WHEN ? = 'sending' THEN 1 ELSE 0 END), "
            "batch_key = COALESCE(?, batch_key), variant = COALESCE(?, variant), "
            "message_id = COALESCE(?, message_id), "
            "handed_off = CASE WHEN ? = 'sending' THEN 0 ELSE handed_off END, "
            "attempted_at = CASE WHEN ? = 'sending' AND state <> 'uncertain' THEN ? "
            "ELSE attempted_at END, "
            "provider_message_id = COALESCE(?, provider_message_id), "
            "last_error = ?, confirmed = ?, updated_at = ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
            f"WHERE issue_id = ? AND subscriber_id = ? AND state IN ({marks}){fenced}",
            [
                (
                    target, target, o.batch_key, o.variant, o.message_id, target, target,
                    stamp, o.provider_message_id, o.error, int(o.confirmed), stamp, target,
                    stamp, issue_id, o.subscriber_id, *sources,
                    *fence_params(fence, o.subscriber_id),
                )
                for o in group
            ],
        )  # fmt: skip
        moved = self._db.total_changes - before
        taken = 0
        if moved != len(group) and fence is not None:
            taken = self._taken(issue_id, group, fence)
            moved += taken
        if moved != len(group):
            stuck = self._not_from(issue_id, group, sources)
            raise StoreError(
                f"{self.path}: {issue_id}: cannot move {len(group) - moved} row(s) to "
                f"{target}: {stuck}"
            )
        return taken

    def _taken(self, issue_id: str, group: Sequence[Outcome], fence: Fence) -> int:
        """How many rows of ``group`` another sender (or another lease) holds now."""
        taken = 0
        for start in range(0, len(group), 500):
            part = group[start : start + 500]
            marks = ",".join("?" * len(part))
            for sid, owner, generation in self._run(
                "SELECT subscriber_id, lease_owner, lease_generation FROM deliveries "
                f"WHERE issue_id = ? AND subscriber_id IN ({marks})",
                (issue_id, *(o.subscriber_id for o in part)),
            ):
                wanted = fence.generations.get(sid) if fence.generations is not None else None
                if owner != fence.owner or (wanted is not None and generation != wanted):
                    taken += 1
        return taken

    def _not_from(self, issue_id: str, group: Sequence[Outcome], sources: Sequence[str]) -> str:
        wrong = []
        for outcome in group[:2000]:
            row = self.get(issue_id, outcome.subscriber_id)
            state = row.state if row else "missing"
            if state not in sources:
                wrong.append(f"subscriber {outcome.subscriber_id} is {state}")
            if len(wrong) >= 3:
                break
        return "; ".join(wrong) or "unknown rows"


def scrub_address(path: Target, email: str) -> int:
    """:meth:`Ledger.scrub_address` on the ledger at ``path``, if there is one."""
    if isinstance(path, Path) and not path.exists():
        return 0
    with Ledger(path) as ledger:
        return ledger.scrub_address(email)
