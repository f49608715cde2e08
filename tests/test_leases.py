"""A sender's heartbeat: its leases are renewed while it lives, and the beat stops with it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from digest.delivery.leases import Heartbeat, sender_id
from digest.delivery.ledger import PENDING, SENDING, SENT, Fence, LeaseLost, Ledger, Outcome
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


def _handed_off(ledger: Ledger, subscriber_id: int) -> bool:
    row = ledger.get(ISSUE, subscriber_id)
    return bool(row and row.handed_off)


def test_a_row_taken_over_gets_the_next_generation_and_fences_its_first_holder_out(
    store_at: Callable[[str], Target],
) -> None:
    frozen, other = sender_id(), sender_id()
    later = NOW + 2 * LEASE  # the frozen sender's lease ran out
    with Ledger(store_at("ledger.sqlite")) as ledger:
        ledger.enqueue(ISSUE, ((i, f"r{i}@example.com") for i in range(1, 4)), now=NOW)
        mine = ledger.lease(
            ISSUE, [PENDING], owner=frozen, after=0, limit=3, until=NOW + LEASE, now=NOW
        )
        assert [d.lease_generation for d in mine] == [1, 1, 1]
        # the frozen sender had claimed row 1 and was about to send it
        first = Fence(frozen, {d.subscriber_id: d.lease_generation for d in mine})
        ledger.claim(ISSUE, [1], batch_key="k", variant="all", message_ids=["<1>"], now=NOW,
                     fence=first)  # fmt: skip
        # the same owner leasing again keeps the generation
        again = ledger.lease(
            ISSUE, [PENDING], owner=frozen, after=1, limit=3, until=NOW + LEASE, now=NOW
        )
        assert [(d.subscriber_id, d.lease_generation) for d in again] == [(2, 1), (3, 1)]
        taken = ledger.lease(
            ISSUE, [PENDING, SENDING], owner=other, after=0, limit=3, until=later + LEASE,
            now=later,
        )  # fmt: skip
        assert [(d.subscriber_id, d.lease_generation) for d in taken] == [(1, 2), (2, 2), (3, 2)]
        with pytest.raises(LeaseLost, match="ran out or passed to another sender"):
            ledger.hand_off(ISSUE, [1], fence=first, now=NOW)  # resumed: the token is old
        assert not _handed_off(ledger, 1)
        with pytest.raises(LeaseLost, match="1 row\\(s\\) passed to another sender"):
            ledger.claim(ISSUE, [2], batch_key="k", variant="all", message_ids=["<2>"], now=NOW,
                         fence=first)  # fmt: skip
        row = ledger.get(ISSUE, 2)
        assert row is not None and (row.state, row.attempts) == (PENDING, 0)
        # the new holder claims, hands over and records as usual
        second = Fence(other, {d.subscriber_id: d.lease_generation for d in taken})
        ledger.claim(ISSUE, [2], batch_key="k2", variant="all", message_ids=["<2>"], now=later,
                     fence=second)  # fmt: skip
        ledger.hand_off(ISSUE, [2], fence=second, now=later)
        assert _handed_off(ledger, 2)
        # a result the old holder brings back for a row it lost is not recorded; the rest is
        with pytest.raises(LeaseLost):
            ledger.transition(ISSUE, [Outcome(2, SENT)], now=later, fence=Fence(frozen))
        row = ledger.get(ISSUE, 2)
        assert row is not None and row.state == SENDING
        ledger.transition(ISSUE, [Outcome(2, SENT)], now=later, fence=Fence(other))
        row = ledger.get(ISSUE, 2)
        assert row is not None and row.state == SENT


def test_a_hand_off_after_the_lease_ran_out_is_refused_even_if_nobody_took_the_row(
    store_at: Callable[[str], Target],
) -> None:
    owner = sender_id()
    with Ledger(store_at("ledger.sqlite")) as ledger:
        ledger.enqueue(ISSUE, [(1, "r1@example.com"), (2, "r2@example.com")], now=NOW)
        rows = ledger.lease(
            ISSUE, [PENDING], owner=owner, after=0, limit=2, until=NOW + LEASE, now=NOW
        )
        fence = Fence(owner, {d.subscriber_id: d.lease_generation for d in rows})
        ledger.claim(ISSUE, [1, 2], batch_key="k", variant="all", message_ids=["a", "b"],
                     now=NOW, fence=fence)  # fmt: skip
        with pytest.raises(LeaseLost, match="the lease on 2 of 2 row\\(s\\) about to be sent"):
            ledger.hand_off(ISSUE, [1, 2], fence=fence, now=NOW + 2 * LEASE)
        assert not _handed_off(ledger, 1) and not _handed_off(ledger, 2)
        ledger.hand_off(ISSUE, [1, 2], fence=fence, now=NOW + LEASE / 2)
        assert _handed_off(ledger, 1) and _handed_off(ledger, 2)


def test_a_crashed_batch_is_leased_whole_or_counted_as_held_elsewhere(
    store_at: Callable[[str], Target],
) -> None:
    dead, me, other = sender_id(), sender_id(), sender_id()
    later = NOW + 2 * LEASE  # the dead sender's lease ran out
    with Ledger(store_at("ledger.sqlite")) as ledger:
        ledger.enqueue(ISSUE, ((i, f"r{i}@example.com") for i in range(1, 7)), now=NOW)
        held = ledger.lease(
            ISSUE, [PENDING], owner=dead, after=0, limit=6, until=NOW + LEASE, now=NOW
        )
        fence = Fence(dead, {d.subscriber_id: d.lease_generation for d in held})
        ledger.claim(ISSUE, [1, 2, 3, 4], batch_key="k", variant="all",
                     message_ids=[f"<{i}>" for i in range(1, 5)], now=NOW, fence=fence)  # fmt: skip
        ledger.claim(ISSUE, [5], batch_key="k5", variant="all", message_ids=["<5>"], now=NOW,
                     fence=fence)  # fmt: skip
        # another sender took rows 3 and 4 of the batch (a chunk's edge between them)
        ledger.lease(ISSUE, [SENDING], owner=other, after=2, limit=2, until=later + LEASE,
                     now=later)  # fmt: skip
        rows, total = ledger.lease_batch(
            ISSUE, "k", [SENDING], owner=me, until=later + LEASE, now=later
        )
        assert ([d.subscriber_id for d in rows], total) == ([1, 2], 4)  # not whole: it waits
        # once the other sender's lease has run out too, the batch is leased whole
        latest = later + 2 * LEASE
        rows, total = ledger.lease_batch(
            ISSUE, "k", [SENDING], owner=me, until=latest + LEASE, now=latest
        )
        assert ([d.subscriber_id for d in rows], total) == ([1, 2, 3, 4], 4)
        assert {d.lease_generation for d in rows if d.subscriber_id in (3, 4)} == {3}
        assert ledger.get(ISSUE, 5) is not None  # another batch's row is not touched
        rows, total = ledger.lease_batch(
            ISSUE, "k5", [SENDING], owner=me, until=latest + LEASE, now=latest
        )
        assert ([d.subscriber_id for d in rows], total) == ([5], 1)
