"""A sender's heartbeat: its leases are renewed while it lives, and the beat stops with it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from digest.delivery.leases import Heartbeat, sender_id
from digest.delivery.ledger import PENDING, Ledger
from digest.errors import StoreError
from digest.store.clock import utc_text
from digest.store.database import Target
from tests.helpers import wait_for

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ISSUE = "2026-W47"
LEASE = timedelta(seconds=1.5)  # a beat every half second

pytestmark = pytest.mark.backends


def _until(ledger: Ledger, subscriber_id: int) -> str | None:
    row = ledger._run(  # the lease columns are the ledger's own; no Delivery carries them
        "SELECT lease_until FROM deliveries WHERE issue_id = ? AND subscriber_id = ?",
        (ISSUE, subscriber_id),
    ).fetchone()
    return None if row is None else str(row[0])


def test_the_heartbeat_renews_only_its_own_rows_until_closed(
    store_at: Callable[[str], Target],
) -> None:
    target = store_at("ledger.sqlite")
    mine, theirs = sender_id(), sender_id()
    assert mine != theirs
    later = NOW + timedelta(hours=1)  # the heartbeat's clock: every renewal lands here
    with Ledger(target) as ledger:
        ledger.enqueue(ISSUE, ((i, f"r{i}@example.com") for i in range(1, 5)), now=NOW)
        taken = ledger.lease(
            ISSUE, [PENDING], owner=mine, after=0, limit=2, until=NOW + LEASE, now=NOW
        )
        assert [d.subscriber_id for d in taken] == [1, 2]
        ledger.lease(ISSUE, [PENDING], owner=theirs, after=2, limit=2, until=NOW + LEASE, now=NOW)
        beat = Heartbeat(target, ISSUE, mine, LEASE, lambda: later)
        try:
            wait_for(lambda: _until(ledger, 1) == utc_text(later + LEASE), "the heartbeat to renew")
        finally:
            beat.close()
        assert not beat.thread.is_alive()
        assert [_until(ledger, i) for i in (1, 2)] == [utc_text(later + LEASE)] * 2
        assert [_until(ledger, i) for i in (3, 4)] == [utc_text(NOW + LEASE)] * 2


def test_a_renewal_that_fails_is_a_warning_and_the_beat_goes_on(
    store_at: Callable[[str], Target], caplog: pytest.LogCaptureFixture
) -> None:
    target = store_at("ledger.sqlite")
    calls: list[datetime] = []

    def clock() -> datetime:  # read inside the renewal: its failure stands for the store's
        calls.append(NOW)
        if len(calls) == 1:
            raise StoreError("ledger.sqlite: database is locked")
        return NOW

    with Ledger(target) as ledger:
        ledger.enqueue(ISSUE, [(1, "r1@example.com")], now=NOW)
    with caplog.at_level(logging.WARNING, logger="digest.delivery.leases"):
        beat = Heartbeat(target, ISSUE, "me", timedelta(seconds=0.3), clock)
        try:
            wait_for(lambda: len(calls) >= 2, "a second beat", progress=lambda: len(calls))
        finally:
            beat.close()
    assert len(calls) >= 2  # it beat again after the failure
    assert any("could not renew the send leases" in r.getMessage() for r in caplog.records)
