"""The thread that owns the subscriber store while ``digest serve`` runs.

Every change runs on it, so writes are serialised and none is lost however many requests
arrive at once; calls that queue up while it is busy share one commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar, cast

from digest.audience.subscribers import InvalidEmail, SubscriberStore
from digest.audience.tokens import TokenError
from digest.store.database import Target

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreWorker:
    """One thread that owns the subscriber store; ``await run(fn)`` calls ``fn(store)`` there.

    Calls that queue up while the thread is busy are run together in one transaction (group
    commit): one fsync for the lot instead of one each, and every caller gets its answer only
    after that commit. A call that fails with :data:`CLEAN_FAILURES` (raised before it writes
    anything) fails alone; any other failure rolls the batch back and its calls are run again
    one by one, so one bad call never takes another's write with it.
    """

    def __init__(self, path: Target, *, max_batch: int = 64) -> None:
        self.path = path
        self.max_batch = max_batch
        self.commits = 0  # how many commits carried more than one call (for the curious)
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        opened: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._loop, args=(opened,), name="digest-store", daemon=True
        )
        self._thread.start()
        opened.result()  # a bad path fails here, at start-up, not on the first request

    def call(self, fn: Callable[[SubscriberStore], T]) -> T:
        """Run ``fn`` on the store's thread and wait (for code that is not async)."""
        future: Future[Any] = Future()
        self._queue.put((fn, future))
        return cast(T, future.result())

    async def run(self, fn: Callable[[SubscriberStore], T]) -> T:
        future: Future[Any] = Future()
        self._queue.put((fn, future))
        return cast(T, await asyncio.wrap_future(future))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _loop(self, opened: Future[None]) -> None:
        try:
            store = SubscriberStore(self.path)
        except BaseException as exc:
            opened.set_exception(exc)
            return
        opened.set_result(None)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        following = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if following is None:
                        stopping = True
                        break
                    batch.append(following)
                self._run_batch(store, batch)
        finally:
            store.close()

    @staticmethod
    def _run_one(store: SubscriberStore, call: _Call) -> None:
        fn, future = call
        try:
            future.set_result(fn(store))
        except BaseException as exc:
            future.set_exception(exc)

    def _run_batch(self, store: SubscriberStore, batch: list[_Call]) -> None:
        if len(batch) == 1:
            self._run_one(store, batch[0])
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            with store.transaction():
                for fn, _ in batch:
                    try:
                        outcomes.append((True, fn(store)))
                    except CLEAN_FAILURES as exc:
                        outcomes.append((False, exc))
        except BaseException:
            log.debug("a batch of %d store calls failed; running them one by one", len(batch))
            for call in batch:
                self._run_one(store, call)
            return
        self.commits += 1
        for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


_Call = tuple[Callable[[SubscriberStore], Any], "Future[Any]"]
CLEAN_FAILURES: tuple[type[Exception], ...] = (TokenError, InvalidEmail)
"""Failures raised before a call writes anything: they do not spoil the calls batched with it."""
