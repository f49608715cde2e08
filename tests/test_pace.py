"""A provider's pace shared through the ledger's database: request slots one interval apart
for every sender of an account, a provider's pause that every sender waits out, and the
tokens that cap the requests in flight. On the SQLite file and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from digest.delivery.pace import DatabasePace
from digest.store.database import Target

pytestmark = pytest.mark.backends


@contextmanager
def paces(target: Target, *keys: str) -> Iterator[list[DatabasePace]]:
    """One pace per key, as separate sender processes would each open one."""
    opened = [DatabasePace(target, key) for key in keys]
    try:
        yield opened
    finally:
        for pace in opened:
            pace.close()


def test_senders_of_one_account_take_slots_one_interval_apart(
    store_at: Callable[[str], Target],
) -> None:
    target = store_at("ledger.sqlite")
    with paces(target, "postmark:acct", "postmark:acct", "sendgrid:other") as (a, b, other):
        started = time.monotonic()
        first = a.reserve(10.0)
        second = b.reserve(10.0)  # another sender of the same account waits its turn
        third = a.reserve(10.0)
        elapsed = time.monotonic() - started
        assert 0.0 <= first <= elapsed
        assert 10.0 - elapsed <= second <= 10.0
        assert 20.0 - elapsed <= third <= 20.0
        assert other.reserve(10.0) <= elapsed  # another account has its own slots


def test_a_providers_pause_is_waited_out_by_every_sender(
    store_at: Callable[[str], Target],
) -> None:
    target = store_at("ledger.sqlite")
    with paces(target, "mailgun:acct", "mailgun:acct") as (told, other):
        started = time.monotonic()
        told.pause(30.0)  # a 429 with Retry-After: 30, seen by one sender
        wait = other.reserve(1.0)
        elapsed = time.monotonic() - started
        assert 30.0 - elapsed <= wait <= 30.0
        told.pause(5.0)  # a shorter pause never brings the slot forward
        assert 30.0 - (time.monotonic() - started) <= told.reserve(1.0) - 1.0 <= 30.0


def test_tokens_cap_the_requests_in_flight_across_senders(
    store_at: Callable[[str], Target],
) -> None:
    target = store_at("ledger.sqlite")
    with paces(target, "brevo:acct", "brevo:acct") as (a, b):
        assert a.acquire(2, hold=60.0) == (0, 0.0)
        assert b.acquire(2, hold=60.0) == (1, 0.0)
        started = time.monotonic()
        token, wait = a.acquire(2, hold=60.0)  # both taken: wait for the first to come free
        assert token is None
        assert 60.0 - (time.monotonic() - started) - 1.0 <= wait <= 60.0
        b.release(1, window=0.0)  # its answer came, and the window is over
        assert a.acquire(2, hold=60.0) == (1, 0.0)
        # a larger limit later (the provider's headers said so) adds tokens
        assert b.acquire(3, hold=60.0) == (2, 0.0)
