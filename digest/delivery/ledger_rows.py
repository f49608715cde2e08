"""A ledger row: its states and the moves allowed between them (:data:`TRANSITIONS`, which
:meth:`digest.delivery.ledger.Ledger.transition` applies), the row and outcome types, and
the store access every part of the ledger shares (:class:`LedgerStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digest.delivery.providers.base import Delivery
from digest.errors import SendError, StoreError
from digest.states import State
from digest.store.clock import utc_text
from digest.store.database import Connection, Cursor, Target


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


def iso(moment: datetime) -> str:
    return utc_text(moment)


def fence_params(fence: Fence | None, subscriber_id: int) -> tuple[Any, ...]:
    if fence is None:
        return ()
    if fence.generations is None:
        return (fence.owner,)
    return (fence.owner, fence.generations.get(subscriber_id, -1))


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


class LedgerStore:
    """The ledger's connection and the statements every part of it runs."""

    path: Target
    _db: Connection

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

    def _locked(self, sql: str, params: Sequence[Any]) -> int:
        self._run("BEGIN IMMEDIATE")
        try:
            count = self._run(sql, params).rowcount
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._run("COMMIT")
        return count

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
