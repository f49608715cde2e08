"""Leases: several senders (processes, hosts) share one issue, each holding the rows it
sends until its lease runs out, and the fence check before a message leaves."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from digest.delivery.ledger_rows import (
    FAILED_RETRYABLE,
    PENDING,
    SENDING,
    UNCERTAIN,
    Fence,
    LeaseLost,
    LedgerStore,
    iso,
)
from digest.delivery.providers.base import Delivery
from digest.store.clock import parse_utc
from digest.store.database import dialect_of


class LedgerLeases(LedgerStore):
    """Which sender holds which rows of an issue, and until when."""

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
                        (issue_id, sid, SENDING, fence.owner, generations.get(sid, -1), iso(now))
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
        sql = self._holding(picked, postgres)
        position = after if isinstance(after, tuple) else (after,)
        params = (
            issue_id, *states, *position, iso(now), owner, limit,
            owner, iso(until), owner, issue_id,
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

    def _holding(self, picked: str, postgres: bool) -> str:
        """The UPDATE that leases the rows ``picked`` selects (parameters: owner, until,
        owner, issue) and returns them; a row's fencing generation moves on when its owner
        changes."""
        return (
            f"WITH picked AS {'MATERIALIZED ' if postgres else ''}({picked}) "
            "UPDATE deliveries SET lease_owner = ?, lease_until = ?, lease_generation = "
            "CASE WHEN lease_owner = ? THEN lease_generation ELSE lease_generation + 1 END "
            "WHERE issue_id = ? "
            f"AND subscriber_id IN (SELECT subscriber_id FROM picked) RETURNING {self._COLUMNS}"
        )

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
        sql = self._holding(picked, postgres)
        params = (
            issue_id, *states, batch_key, iso(now), owner,
            owner, iso(until), owner, issue_id,
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
            (iso(until), issue_id, owner, PENDING, SENDING, FAILED_RETRYABLE, UNCERTAIN),
        )

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
            (issue_id, PENDING, SENDING, FAILED_RETRYABLE, owner, iso(now)),
        ).fetchone()
        return parse_utc(row[0]) if row and row[0] else None
