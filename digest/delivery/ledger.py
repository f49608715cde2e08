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

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.errors import LockError, SendError, StoreError
from digest.states import State
from digest.store.clock import parse_utc, rewrite_sql, utc_text
from digest.store.database import (
    Cursor,
    DatabaseLocks,
    StoreSpec,
    Target,
    as_target,
    dialect_of,
    open_store,
)
from digest.store.migrations import Migration


class DeliveryState(State):
    """A ledger row's state; the value is what the ledger stores."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED_PERMANENT = "failed-permanent"
    FAILED_RETRYABLE = "failed-retryable"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"


PENDING = DeliveryState.PENDING
SENDING = DeliveryState.SENDING
SENT = DeliveryState.SENT
FAILED_PERMANENT = DeliveryState.FAILED_PERMANENT
FAILED_RETRYABLE = DeliveryState.FAILED_RETRYABLE
SKIPPED = DeliveryState.SKIPPED
UNCERTAIN = DeliveryState.UNCERTAIN
STATES: tuple[str, ...] = tuple(DeliveryState)

TRANSITIONS: dict[str, frozenset[str]] = {
    # target state: the states a row may move to it from
    SENDING: frozenset({PENDING, FAILED_RETRYABLE, UNCERTAIN}),
    SENT: frozenset({SENDING, UNCERTAIN}),
    FAILED_PERMANENT: frozenset({SENDING, FAILED_RETRYABLE}),
    FAILED_RETRYABLE: frozenset({SENDING}),
    UNCERTAIN: frozenset({SENDING}),
    PENDING: frozenset({SENDING, UNCERTAIN, FAILED_RETRYABLE}),
    # SENDING: the subscriber left after the row was claimed, before the hand-off
    SKIPPED: frozenset({PENDING, SENDING, FAILED_RETRYABLE, UNCERTAIN}),
}
"""Which moves are allowed. ``--force`` (:meth:`Ledger.reset_for_resend`) is the one other
way back to ``pending``: from the finished states, by the operator's explicit choice."""
FINISHED = frozenset({SENT, FAILED_PERMANENT, SKIPPED})

CHUNK = 1000
"""How many rows a sender reads, leases or looks up at a time."""


class LeaseLost(SendError):
    """This sender no longer holds rows it was about to claim, hand over or record: its
    lease ran out (the process was frozen, or lost touch with the database) and another
    sender took them. The sender stops without sending them; the holder settles them."""


@dataclass(frozen=True)
class Fence:
    """Who must still hold the rows a change touches: ``owner`` and, when claiming or
    handing over, each row's lease generation as this sender leased it."""

    owner: str
    generations: dict[int, int] | None = None


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


def _iso(moment: datetime) -> str:
    return utc_text(moment)


def _fence_params(fence: Fence | None, subscriber_id: int) -> tuple[Any, ...]:
    if fence is None:
        return ()
    if fence.generations is None:
        return (fence.owner,)
    return (fence.owner, fence.generations.get(subscriber_id, -1))


def _busy(shared: bool) -> str:
    if shared:
        return (
            "the ledger is locked for itself by another process (digest db migrate, or an "
            "older digest send); wait for it to finish"
        )
    return "another digest send is running; wait for it to finish (it resumes where it stopped)"


@dataclass(frozen=True)
class Delivery:
    issue_id: str
    subscriber_id: int
    email: str
    variant: str
    state: str
    attempts: int
    batch_key: str | None
    handed_off: bool
    confirmed: bool
    message_id: str | None
    provider_message_id: str | None
    last_error: str | None
    sent_at: str | None
    updated_at: str | None = None
    attempted_at: str | None = None
    """When the request that may have carried the message started (see ``_ATTEMPTED``)."""
    lease_generation: int = 0
    """The row's fencing token when it was read (see :meth:`Ledger.lease`)."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one delivery, ready to be committed."""

    subscriber_id: int
    state: str
    provider_message_id: str | None = None
    error: str | None = None
    confirmed: bool = True
    # set when claiming (state ``sending``)
    batch_key: str | None = None
    variant: str | None = None
    message_id: str | None = None


class Ledger:
    """The deliveries table. Several senders may share an issue (see :meth:`lease`)."""

    def __init__(self, path: Target | str) -> None:
        self.path = as_target(path)
        self._lock_fd: int | None = None
        self._db_lock = False
        self._shared = False
        self._db = open_store(self.path, MIGRATIONS, store="ledger", what="the send ledger")

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
        if self._lock_fd is not None or self._db_lock:
            return
        if isinstance(self._db, DatabaseLocks):
            # On PostgreSQL the lock lives in the database: every host sees it, and the
            # server drops it when the holder's connection goes (the process died).
            if not self._db.try_lock("digest send", shared=shared):
                holder = self._db.holder("digest send") or "another process"
                raise LockError(f"{self.path} is held by {holder}: {_busy(shared)}")
            self._db_lock = True
            self._shared = shared
            return
        assert isinstance(self.path, Path)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LockError(
                f"{lock_path} is held by {holder or 'another process'}: {_busy(shared)}"
            ) from None
        if not shared:  # shared holders are many: the file names the exclusive one only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"digest send (pid {os.getpid()})\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._db_lock and isinstance(self._db, DatabaseLocks):
            self._db_lock = False
            self._db.unlock("digest send", shared=self._shared)
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- helpers

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def _transaction(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._run("BEGIN IMMEDIATE")
        try:
            self._many(sql, rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._run("COMMIT")

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
            (issue_id, subject, provider, _iso(now)),
        )

    def mark_enqueued(self, issue_id: str, now: datetime) -> None:
        self._run("UPDATE issues SET enqueued_at = ? WHERE issue_id = ?", (_iso(now), issue_id))

    def mark_completed(self, issue_id: str, now: datetime | None) -> None:
        stamp = _iso(now) if now else None
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
        stamp = _iso(now)
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

    _COLUMNS = (
        "issue_id, subscriber_id, email, variant, state, attempts, batch_key, handed_off, "
        "confirmed, message_id, provider_message_id, last_error, sent_at, updated_at, "
        "attempted_at, lease_generation"
    )

    @staticmethod
    def _delivery(row: Sequence[Any]) -> Delivery:
        return Delivery(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            bool(row[7]),
            bool(row[8]),
            row[9],
            row[10],
            row[11],
            row[12],
            row[13],
            row[14],
            int(row[15] or 0),
        )

    def iter_state(
        self,
        issue_id: str,
        states: Sequence[str],
        *,
        chunk: int = 1000,
        after: int = 0,
        by_variant: bool = False,
    ) -> Iterator[list[Delivery]]:
        """Rows in these states, in subscriber order, ``chunk`` at a time.

        ``by_variant``: one state after another, each in (variant, subscriber) order, so
        that rows of one variant come together (the sender then holds few variants at once).
        """
        if by_variant:
            for state in states:
                yield from self._iter_by_variant(issue_id, state, chunk)
            return
        marks = ",".join("?" * len(states))
        last = after
        while True:
            rows = self._run(
                f"SELECT {self._COLUMNS} FROM deliveries WHERE issue_id = ? "
                f"AND state IN ({marks}) AND subscriber_id > ? ORDER BY subscriber_id LIMIT ?",
                (issue_id, *states, last, chunk),
            ).fetchall()
            if not rows:
                return
            yield [self._delivery(r) for r in rows]
            last = rows[-1][1]

    def _iter_by_variant(self, issue_id: str, state: str, chunk: int) -> Iterator[list[Delivery]]:
        last: tuple[str, int] = ("", -1)
        while True:
            rows = self._run(
                f"SELECT {self._COLUMNS} FROM deliveries WHERE issue_id = ? AND state = ? "
                "AND (variant, subscriber_id) > (?, ?) ORDER BY variant, subscriber_id LIMIT ?",
                (issue_id, state, *last, chunk),
            ).fetchall()
            if not rows:
                return
            yield [self._delivery(r) for r in rows]
            last = (rows[-1][3], rows[-1][1])

    def get(self, issue_id: str, subscriber_id: int) -> Delivery | None:
        row = self._run(
            f"SELECT {self._COLUMNS} FROM deliveries WHERE issue_id = ? AND subscriber_id = ?",
            (issue_id, subscriber_id),
        ).fetchone()
        return self._delivery(row) if row else None

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
        stamp = _iso(now)
        if reset:
            marks = ",".join("?" * len(FINISHED))
            cursor = self._run(
                "UPDATE deliveries SET state = ?, attempts = 0, batch_key = NULL, "
                "handed_off = 0, confirmed = 0, last_error = NULL, updated_at = ? "
                f"WHERE issue_id = ? AND state IN ({marks})",
                (PENDING, stamp, issue_id, *sorted(FINISHED)),
            )
            self.mark_completed(issue_id, None)
            return cursor.rowcount
        by_target: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            if outcome.state not in TRANSITIONS:
                raise StoreError(f"{self.path}: no such delivery state {outcome.state!r}")
            by_target.setdefault(outcome.state, []).append(outcome)
        fenced = ""
        if fence is not None:
            fenced = " AND lease_owner = ?" + (
                " AND lease_generation = ?" if fence.generations is not None else ""
            )
        lost = 0
        self._run("BEGIN IMMEDIATE")
        try:
            changed = 0
            for target, group in by_target.items():
                sources = sorted(TRANSITIONS[target])
                marks = ",".join("?" * len(sources))
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
                            target,
                            target,
                            o.batch_key,
                            o.variant,
                            o.message_id,
                            target,
                            target,
                            stamp,
                            o.provider_message_id,
                            o.error,
                            int(o.confirmed),
                            stamp,
                            target,
                            stamp,
                            issue_id,
                            o.subscriber_id,
                            *sources,
                            *_fence_params(fence, o.subscriber_id),
                        )
                        for o in group
                    ],
                )
                moved = self._db.total_changes - before
                if moved != len(group) and fence is not None:
                    taken = self._taken(issue_id, group, fence)
                    lost += taken
                    moved += taken
                if moved != len(group):
                    stuck = self._not_from(issue_id, group, sources)
                    raise StoreError(
                        f"{self.path}: {issue_id}: cannot move {len(group) - moved} row(s) to "
                        f"{target}: {stuck}"
                    )
                changed += moved
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

    def hand_off(
        self, issue_id: str, subscriber_ids: Sequence[int], *, fence: Fence, now: datetime
    ) -> None:
        """The fence check before a message leaves: mark these ``sending`` rows handed off,
        in one transaction, only if ``fence`` still holds every one of them (its owner, its
        generation, a lease not yet run out); else change nothing and raise
        :class:`LeaseLost`, and the transport does not send.

        Written with ``synchronous=NORMAL`` (see :meth:`mark_handed_off`).
        """
        generations = fence.generations or {}
        self._run("PRAGMA synchronous=NORMAL")
        try:
            self._run("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._many(
                    "UPDATE deliveries SET handed_off = 1 WHERE issue_id = ? "
                    "AND subscriber_id = ? AND state = ? AND lease_owner = ? "
                    "AND lease_generation = ? AND lease_until >= ?",
                    [
                        (issue_id, sid, SENDING, fence.owner, generations.get(sid, -1), _iso(now))
                        for sid in subscriber_ids
                    ],
                )
                held = self._db.total_changes - before
                if held != len(subscriber_ids):
                    raise LeaseLost(
                        f"{issue_id}: the lease on {len(subscriber_ids) - held} of "
                        f"{len(subscriber_ids)} row(s) about to be sent ran out or passed to "
                        "another sender; stopped before sending them"
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._run("COMMIT")
        finally:
            self._run("PRAGMA synchronous=FULL")

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

    def counts(self, issue_id: str) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, number in self._run(
            "SELECT state, COUNT(*) FROM deliveries WHERE issue_id = ? GROUP BY state",
            (issue_id,),
        ):
            counts[state] = number
        return counts

    def unconfirmed(self, issue_id: str) -> int:
        """Rows counted as sent without the provider's reply (a crash after hand-off)."""
        row = self._run(
            "SELECT COUNT(*) FROM deliveries WHERE issue_id = ? AND state = ? AND confirmed = 0",
            (issue_id, SENT),
        ).fetchone()
        return int(row[0])

    def uncertain(self, issue_id: str, *, limit: int | None = 50) -> list[Delivery]:
        """Rows whose message may or may not have reached the provider (every one with
        ``limit=None``)."""
        sql = (
            f"SELECT {self._COLUMNS} FROM deliveries WHERE issue_id = ? AND state = ? "
            "ORDER BY subscriber_id"
        )
        params: tuple[Any, ...] = (issue_id, UNCERTAIN)
        if limit is not None:
            sql, params = sql + " LIMIT ?", (*params, limit)
        rows = self._run(sql, params).fetchall()
        return [self._delivery(r) for r in rows]

    def queued_ids(self, issue_id: str, subscriber_ids: Sequence[int]) -> set[int]:
        """Which of these subscribers already have a row for the issue."""
        if not subscriber_ids:
            return set()
        marks = ",".join("?" * len(subscriber_ids))
        rows = self._run(
            f"SELECT subscriber_id FROM deliveries WHERE issue_id = ? "
            f"AND subscriber_id IN ({marks})",
            (issue_id, *subscriber_ids),
        )
        return {int(r[0]) for r in rows}

    def failures(self, issue_id: str, *, limit: int = 50) -> list[Delivery]:
        rows = self._run(
            f"SELECT {self._COLUMNS} FROM deliveries WHERE issue_id = ? AND state IN (?, ?) "
            "ORDER BY subscriber_id LIMIT ?",
            (issue_id, FAILED_PERMANENT, FAILED_RETRYABLE, limit),
        ).fetchall()
        return [self._delivery(r) for r in rows]

    def issues(self) -> list[str]:
        return [r[0] for r in self._run("SELECT issue_id FROM issues ORDER BY issue_id")]

    # -- leases: several senders (processes, hosts) on one issue

    def lease(
        self,
        issue_id: str,
        states: Sequence[str],
        *,
        owner: str,
        after: int | tuple[str, int],
        limit: int,
        until: datetime,
        now: datetime,
    ) -> list[Delivery]:
        """Take up to ``limit`` rows in ``states`` past subscriber ``after`` that no other
        sender holds, in subscriber order, and hold them until ``until``.

        With ``after`` a (variant, subscriber) pair, rows come in (variant, subscriber)
        order instead, so that a sender meets each preference variant's rows together.

        A row is free when it was never leased, its lease expired (its sender died or lost
        touch), or ``owner`` holds it already. A row that passes to another owner gets the
        next lease generation: the fencing token :meth:`claim` and :meth:`hand_off` compare.
        PostgreSQL takes the rows with ``FOR UPDATE
        SKIP LOCKED``, so senders never wait for each other's rows; SQLite, whose writers
        take turns anyway, takes them inside ``BEGIN IMMEDIATE``.
        """
        marks = ",".join("?" * len(states))
        postgres = dialect_of(self._db) == "postgresql"
        by_variant = isinstance(after, tuple)
        past, order = (
            ("(variant, subscriber_id) > (?, ?)", "variant, subscriber_id")
            if by_variant
            else ("subscriber_id > ?", "subscriber_id")
        )
        # The rows are picked first, then updated: on PostgreSQL a LIMIT ... FOR UPDATE SKIP
        # LOCKED subquery inside the UPDATE's WHERE may run again for each row the UPDATE
        # scans (a plain subplan), and then took every free row, not ``limit`` of them.
        picked = (
            f"SELECT subscriber_id FROM deliveries WHERE issue_id = ? AND state IN ({marks}) "
            f"AND {past} AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?) "
            f"ORDER BY {order} LIMIT ?" + (" FOR UPDATE SKIP LOCKED" if postgres else "")
        )
        sql = (
            f"WITH picked AS {'MATERIALIZED ' if postgres else ''}({picked}) "
            "UPDATE deliveries SET lease_owner = ?, lease_until = ?, lease_generation = "
            "CASE WHEN lease_owner = ? THEN lease_generation ELSE lease_generation + 1 END "
            "WHERE issue_id = ? "
            f"AND subscriber_id IN (SELECT subscriber_id FROM picked) RETURNING {self._COLUMNS}"
        )
        position = after if isinstance(after, tuple) else (after,)
        params = (
            issue_id, *states, *position, _iso(now), owner, limit,
            owner, _iso(until), owner, issue_id,
        )  # fmt: skip
        if postgres:
            rows = self._run(sql, params).fetchall()
        else:
            self._run("BEGIN IMMEDIATE")
            try:
                rows = self._run(sql, params).fetchall()
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._run("COMMIT")
        found = [self._delivery(r) for r in rows]
        if by_variant:
            return sorted(found, key=lambda d: (d.variant, d.subscriber_id))
        return sorted(found, key=lambda d: d.subscriber_id)

    def lease_batch(
        self,
        issue_id: str,
        batch_key: str,
        states: Sequence[str],
        *,
        owner: str,
        until: datetime,
        now: datetime,
    ) -> tuple[list[Delivery], int]:
        """Hold every free row in ``states`` sent under ``batch_key`` (free as in
        :meth:`lease`); returns the rows now held and how many rows in ``states`` carry
        the key in all, held by this sender or not.

        Settling a crashed batch by sending it again under its idempotency key is safe only
        for the batch whole: the provider drops every later request under the key as a
        repeat of the first, so a part sent first would leave the rest counted and never
        delivered.
        """
        marks = ",".join("?" * len(states))
        postgres = dialect_of(self._db) == "postgresql"
        picked = (
            f"SELECT subscriber_id FROM deliveries WHERE issue_id = ? AND state IN ({marks}) "
            "AND batch_key = ? AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)"
            + (" FOR UPDATE SKIP LOCKED" if postgres else "")
        )
        sql = (
            f"WITH picked AS {'MATERIALIZED ' if postgres else ''}({picked}) "
            "UPDATE deliveries SET lease_owner = ?, lease_until = ?, lease_generation = "
            "CASE WHEN lease_owner = ? THEN lease_generation ELSE lease_generation + 1 END "
            "WHERE issue_id = ? "
            f"AND subscriber_id IN (SELECT subscriber_id FROM picked) RETURNING {self._COLUMNS}"
        )
        params = (
            issue_id, *states, batch_key, _iso(now), owner,
            owner, _iso(until), owner, issue_id,
        )  # fmt: skip
        count_sql = (
            f"SELECT COUNT(*) FROM deliveries WHERE issue_id = ? AND state IN ({marks}) "
            "AND batch_key = ?"
        )
        # one transaction under the store's write lock: the count sees what the lease left
        self._run("BEGIN IMMEDIATE")
        try:
            rows = self._run(sql, params).fetchall()
            total = int(self._run(count_sql, (issue_id, *states, batch_key)).fetchone()[0])
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._run("COMMIT")
        found = sorted((self._delivery(r) for r in rows), key=lambda d: d.subscriber_id)
        return found, total

    def renew(self, issue_id: str, *, owner: str, until: datetime) -> int:
        """Extend every unfinished row ``owner`` holds to ``until`` (the sender's heartbeat)."""
        # Under the store's write lock, like record() and claim(): on PostgreSQL a
        # many-row UPDATE racing a transaction over the same rows could deadlock.
        return self._locked(
            "UPDATE deliveries SET lease_until = ? WHERE issue_id = ? AND lease_owner = ? "
            "AND state IN (?, ?, ?, ?)",
            (_iso(until), issue_id, owner, PENDING, SENDING, FAILED_RETRYABLE, UNCERTAIN),
        )

    def _locked(self, sql: str, params: Sequence[Any]) -> int:
        self._run("BEGIN IMMEDIATE")
        try:
            count = self._run(sql, params).rowcount
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._run("COMMIT")
        return count

    def release(self, issue_id: str, *, owner: str) -> None:
        """Give back every row ``owner`` holds (a sender that stops cleanly)."""
        self._locked(
            "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL "
            "WHERE issue_id = ? AND lease_owner = ?",
            (issue_id, owner),
        )

    def held_elsewhere(self, issue_id: str, *, owner: str, now: datetime) -> datetime | None:
        """When the first live lease of another sender on an unfinished row ends (None: no
        other sender holds anything)."""
        row = self._run(
            "SELECT MIN(lease_until) FROM deliveries WHERE issue_id = ? AND state IN (?, ?, ?) "
            "AND lease_owner IS NOT NULL AND lease_owner <> ? AND lease_until >= ?",
            (issue_id, PENDING, SENDING, FAILED_RETRYABLE, owner, _iso(now)),
        ).fetchone()
        return parse_utc(row[0]) if row and row[0] else None

    def scrub_address(self, email: str) -> int:
        """Blank an erased person's address in every delivery row, and the provider's id,
        Message-ID and last error where they hold it (the outbox names its files after the
        address); the rows stay, as the evidence of what was sent. Returns how many rows
        held it."""
        held = "%" + email.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        blank = "CASE WHEN {0} LIKE ? ESCAPE '\\' THEN '(erased)' ELSE {0} END"
        cursor = self._run(
            "UPDATE deliveries SET email = '(erased)', "
            f"provider_message_id = {blank.format('provider_message_id')}, "
            f"message_id = {blank.format('message_id')}, "
            f"last_error = {blank.format('last_error')} WHERE email = ?",
            (held, held, held, email),
        )
        return cursor.rowcount

    def summary(self) -> list[dict[str, Any]]:
        """Per issue: when it started and how many deliveries are in each state."""
        issues: dict[str, dict[str, Any]] = {}
        for issue_id, started_at, subject in self._run(
            "SELECT issue_id, started_at, subject FROM issues ORDER BY started_at, issue_id"
        ):
            issues[issue_id] = {
                "issue_id": issue_id,
                "started_at": started_at,
                "subject": subject,
                "states": dict.fromkeys(STATES, 0),
            }
        for issue_id, state, number in self._run(
            "SELECT issue_id, state, COUNT(*) FROM deliveries GROUP BY issue_id, state"
        ):
            if issue_id in issues:
                issues[issue_id]["states"][state] = number
        return list(issues.values())


def scrub_address(path: Target, email: str) -> int:
    """:meth:`Ledger.scrub_address` on the ledger at ``path``, if there is one."""
    if isinstance(path, Path) and not path.exists():
        return 0
    with Ledger(path) as ledger:
        return ledger.scrub_address(email)
