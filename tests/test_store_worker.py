"""The thread that owns the subscriber store while ``digest serve`` runs
(digest/serve/store_worker.py): queued calls share one commit, and each keeps its own
outcome."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from digest.audience.subscribers import InvalidEmail, SubscriberStore
from digest.serve.store_worker import StoreWorker
from digest.store.database import Target

pytestmark = pytest.mark.backends

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def test_group_commit_keeps_each_call_apart(store_at: Callable[[str], Target]) -> None:
    worker = StoreWorker(store_at("subscribers.sqlite"))
    pool = concurrent.futures.ThreadPoolExecutor(8)

    def queued_behind_a_held_call(calls: list[Any]) -> list[concurrent.futures.Future[Any]]:
        """Submit ``calls`` while the store's thread is busy, so they queue up together."""
        entered, gate = threading.Event(), threading.Event()

        def hold(store: SubscriberStore) -> None:
            entered.set()
            gate.wait(60)

        held = pool.submit(worker.call, hold)
        assert entered.wait(60)
        futures = [pool.submit(worker.call, call) for call in calls]
        for _ in range(6000):  # a bound on waiting for the pool's threads, not a measure
            if worker._queue.qsize() == len(calls):
                break
            threading.Event().wait(0.01)
        gate.set()
        held.result(timeout=60)
        return futures

    def explode(store: SubscriberStore) -> None:
        store.add("alone@example.com", now=NOW)
        raise RuntimeError("after a write")

    try:
        adds = [lambda s, n=n: s.add(f"g{n}@example.com", now=NOW) for n in range(5)]
        bad = [lambda s: s.add("not an address", now=NOW)]
        first = queued_behind_a_held_call([*adds, *bad])
        assert [f.result(timeout=60)[1] for f in first[:5]] == [True] * 5
        with pytest.raises(InvalidEmail):
            first[5].result(timeout=60)
        assert worker.commits == 1  # five adds and a clean failure: one commit

        more = [lambda s, n=n: s.add(f"h{n}@example.com", now=NOW) for n in range(3)]
        second = queued_behind_a_held_call([*more, explode])
        assert [f.result(timeout=60)[1] for f in second[:3]] == [True] * 3
        with pytest.raises(RuntimeError, match="after a write"):
            second[3].result(timeout=60)
        assert worker.commits == 1  # that batch was rolled back and run call by call
    finally:
        pool.shutdown()
        worker.close()
    with SubscriberStore(store_at("subscribers.sqlite")) as s:
        emails = sorted(x.email for x in s.list())
    # every call applied exactly once; explode's own write stands from its run alone, as it
    # would without batching
    assert emails == sorted(
        [
            "alone@example.com",
            *(f"g{n}@example.com" for n in range(5)),
            *(f"h{n}@example.com" for n in range(3)),
        ]
    )
