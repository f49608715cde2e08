"""What the ledger reports: rows by state, counts, failures, the issues it holds, and the
erasure of an address from its rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from digest.delivery.ledger_rows import (
    FAILED_PERMANENT,
    FAILED_RETRYABLE,
    SENT,
    STATES,
    UNCERTAIN,
    LedgerStore,
)
from digest.delivery.providers.base import Delivery


class LedgerQueries(LedgerStore):
    """Reading the deliveries table (and blanking an erased address in it)."""

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
