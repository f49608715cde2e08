"""Batches in flight: claimed, fenced, handed to the provider, and every answer recorded.

The send loop (:mod:`digest.delivery.send`) decides what goes in a batch; a
:class:`Dispatcher` takes it from there:

1. wait for a free slot (``send.concurrency``), then claim the rows ``sending`` under this
   sender's fence (its lease owner and each row's lease generation, in the claiming
   transaction): a row another sender took over is never claimed;
2. hand the batch to the provider, on this thread or a worker thread; before the point
   after which a message may be accepted (SMTP's end of DATA, an HTTP request) the
   transport yields a :class:`Handoff`, and the fence is checked again in the same
   transaction that marks the rows handed off. When the lease was lost (the process was
   frozen past ``send.lease`` and another sender took the rows) the generator is closed
   right there: the message never leaves;
3. record every result on the loop's thread: ``sent``, ``failed-permanent`` and
   ``uncertain`` as they are; a transient refusal (``failed-retryable``) puts the row back
   to ``pending`` for the loop to retry after a pause;
4. rows the provider gave no result for (:meth:`Dispatcher.release`): back to ``pending``
   when the request never left or was refused as a whole, ``uncertain`` when it may have
   been accepted.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

from digest.delivery.leases import lease_now
from digest.delivery.ledger import (
    FAILED_PERMANENT,
    FAILED_RETRYABLE,
    PENDING,
    SENT,
    UNCERTAIN,
    Fence,
    LeaseLost,
    Ledger,
    Outcome,
)
from digest.delivery.providers.base import Batch, Event, Handoff, Provider, Result
from digest.delivery.reconcile import outcome_of
from digest.delivery.send_report import SendReport
from digest.errors import ProviderError
from digest.store.database import Target

FINAL = frozenset({SENT, FAILED_PERMANENT, UNCERTAIN})
"""Results that settle a row for this run (progress counts them; a refusal does not)."""


@dataclass
class _Attempt:
    """What one batch's send produced: its events, and the error that ended it, if any."""

    events: list[Event] = field(default_factory=list)
    error: BaseException | None = None
    seen: set[int] = field(default_factory=set)
    handed_off: set[int] = field(default_factory=set)
    results: list[Result] = field(default_factory=list)
    cut: bool = False  # ended by the loop before the provider was done: no verdict on the rest


def _close(events: Iterator[Event]) -> None:
    """Close a provider's generator where it stands (a refused fence: nothing more leaves)."""
    close = getattr(events, "close", None)
    if close is not None:
        close()


class _WorkerLedgers:
    """One ledger connection per worker thread, opened at its first hand-off and kept for
    the send: a connection opened for every request (the schema checked each time) cost
    more than the fence check it was for. A connection stays on its thread (SQLite's rule),
    so each worker closes its own at the end."""

    def __init__(self, path: Target) -> None:
        self.path = path
        self.local = threading.local()
        self.opened = 0

    def get(self) -> Ledger:
        ledger: Ledger | None = getattr(self.local, "ledger", None)
        if ledger is None:
            ledger = self.local.ledger = Ledger(self.path)
            self.opened += 1  # only read after the workers are done
        return ledger

    def close(self, pool: ThreadPoolExecutor, workers: int) -> None:
        """Close every worker's connection on its own thread: one task per worker, each
        held at a barrier until all have started, so no thread takes two."""
        if not self.opened:
            return
        barrier = threading.Barrier(workers)

        def close_mine() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=30)
            ledger: Ledger | None = getattr(self.local, "ledger", None)
            if ledger is not None:
                self.local.ledger = None
                ledger.close()

        for future in [pool.submit(close_mine) for _ in range(workers)]:
            with contextlib.suppress(Exception):  # a connection that will not close is
                future.result()  # closed by the thread's end anyway


class Dispatcher:
    """One sender's batches in flight; every ledger write but the hand-off stays on the
    thread that created it (hand-offs of worker threads go through their own connection,
    before the request)."""

    def __init__(
        self,
        *,
        issue_id: str,
        provider: Provider,
        ledger: Ledger,
        report: SendReport,
        owner: str,
        concurrency: int,
        clock: Callable[[], datetime],
        tick: Callable[[int], None],
        gone: Callable[[Sequence[int]], list[Outcome]] | None = None,
    ) -> None:
        self.issue_id = issue_id
        self.provider = provider
        self.ledger = ledger
        self.report = report
        self.owner = owner
        self.clock = clock
        self.tick = tick
        self.gone = gone
        """Who of these left (unsubscribed, removed) since their batch was claimed: asked
        again at each hand-off of transports that send one message at a time (SMTP)."""
        self.concurrency = concurrency
        self.generations: dict[int, int] = {}
        """The lease generation of each row of the chunk being sent (set by the loop)."""
        self.refused = 0
        """Rows refused for now this run (back to ``pending``; the loop retries them)."""
        self.last_refusal = ""
        self.retry_after: float | None = None
        """The longest ``Retry-After`` of this round's refusals (the loop resets it)."""
        self.pool = (
            ThreadPoolExecutor(concurrency, thread_name_prefix="digest-send")
            if concurrency > 1
            else None
        )
        self.inflight: dict[Future[_Attempt], Batch] = {}
        self.worker_ledgers = _WorkerLedgers(ledger.path)

    @property
    def fence(self) -> Fence:
        """Recording results: only rows this sender still holds."""
        return Fence(self.owner)

    def close(self) -> None:
        """Finish what is in flight (recording it), then stop the workers."""
        try:
            self.drain()
        finally:
            if self.pool is not None:
                self.worker_ledgers.close(self.pool, self.concurrency)
                self.pool.shutdown(wait=True)

    # -- one batch

    def dispatch(self, batch: Batch, *, variants: Sequence[str] | None = None) -> None:
        # A free slot first, so a batch is never claimed and then left behind when another
        # batch's error ends the send.
        while self.pool is not None and len(self.inflight) >= self.concurrency:
            self.collect(every=False)
        ids = [r.subscriber_id for r in batch.recipients]
        fence = Fence(self.owner, {sid: self.generations.get(sid, -1) for sid in ids})
        self.ledger.claim(
            self.issue_id,
            ids,
            batch_key=batch.idempotency_key,
            variant=batch.variant,
            message_ids=[r.message_id for r in batch.recipients],
            now=self.clock(),
            variants=variants,
            fence=fence,
        )
        self.report.attempted += len(ids)
        if self.pool is not None:
            future = self.pool.submit(self._run_attempt, batch, fence)
            self.inflight[future] = batch
            return
        attempt = _Attempt()
        events = self.provider.send(batch)
        try:
            for event in events:
                if isinstance(event, Handoff):
                    if self.left(event, attempt):
                        break  # closed below: that message is never completed
                    self.ledger.hand_off(
                        self.issue_id, event.subscriber_ids, fence=fence, now=lease_now()
                    )
                self.record_event(event, attempt)
        except Exception as exc:  # recorded by release(), then raised again
            attempt.error = exc
        except BaseException:
            # killed mid-batch (Ctrl-C twice): what came back is committed; the rest
            # stays `sending`, which the next run settles exactly like a crash
            self.flush(attempt)
            raise
        finally:
            _close(events)
        self.flush(attempt)
        self.release(batch, attempt)

    def left(self, handoff: Handoff, attempt: _Attempt) -> bool:
        """Whether someone this hand-off is for left since the batch was claimed: then they
        are skipped, and the batch ends here (its other rows go back to pending)."""
        if self.gone is None or not self.provider.commit_each:
            return False
        gone = self.gone(handoff.subscriber_ids)
        if not gone:
            return False
        self.ledger.transition(self.issue_id, gone, now=self.clock(), fence=self.fence)
        self.report.skipped += len(gone)
        self.tick(len(gone))
        attempt.seen.update(o.subscriber_id for o in gone)
        attempt.cut = True
        return True

    def _run_attempt(self, batch: Batch, fence: Fence) -> _Attempt:
        """On a worker thread: every event the provider yields, each hand-off fenced on
        this thread's own ledger connection before the provider goes on, and how it ended."""
        attempt = _Attempt()
        events = self.provider.send(batch)
        try:
            for event in events:
                if isinstance(event, Handoff):
                    self.worker_ledgers.get().hand_off(
                        self.issue_id, event.subscriber_ids, fence=fence, now=lease_now()
                    )
                attempt.events.append(event)
        except Exception as exc:  # handed to the sending thread, which records and re-raises
            attempt.error = exc
        finally:
            _close(events)
        return attempt

    def record_event(self, event: Event, attempt: _Attempt) -> None:
        """Commit one event as it comes (transports that commit each) or keep it for
        :meth:`flush`; always on the loop's thread."""
        if isinstance(event, Handoff):
            attempt.handed_off.update(event.subscriber_ids)
            return
        attempt.seen.add(event.subscriber_id)
        self.count(event)
        if self.provider.commit_each:
            outcome = self.outcome(event)
            self.ledger.transition(self.issue_id, [outcome], now=self.clock(), fence=self.fence)
            self.tick(1 if event.state in FINAL else 0)
        else:
            attempt.results.append(event)

    def outcome(self, result: Result) -> Outcome:
        """A result as the ledger records it: a transient refusal is ``pending`` again."""
        if result.state == FAILED_RETRYABLE:
            self.refused += 1
            self.last_refusal = result.reason or "refused for now"
            self.asked_to_wait(result.retry_after)
            return Outcome(result.subscriber_id, PENDING, error=f"refused for now: {result.reason}")
        return outcome_of(result)

    def asked_to_wait(self, seconds: float | None) -> None:
        """The provider's ``Retry-After`` for a refusal: the loop waits at least the
        longest one of the round before trying those rows again."""
        if seconds is not None:
            self.retry_after = max(self.retry_after or 0.0, seconds)

    def flush(self, attempt: _Attempt) -> None:
        if attempt.results:
            results, attempt.results = attempt.results, []
            outcomes = [self.outcome(r) for r in results]
            self.ledger.transition(self.issue_id, outcomes, now=self.clock(), fence=self.fence)
            self.tick(sum(1 for r in results if r.state in FINAL))

    def release(self, batch: Batch, attempt: _Attempt) -> None:
        """Rows of ``batch`` the provider gave no result for, then the batch's error.

        No result and no error, or an answer with a 2xx that could not be read: the
        provider may hold them, so they are ``uncertain``. With an error: rows never handed
        off (the request or the end of DATA never left) and rows of a request refused as a
        whole (an HTTP status) go back to ``pending``; rows handed off without a readable
        answer are ``uncertain``. A lost lease touches nothing: the rows are another
        sender's now.
        """
        error = attempt.error
        if isinstance(error, LeaseLost):
            raise error
        missing = [r.subscriber_id for r in batch.recipients if r.subscriber_id not in attempt.seen]
        if missing:
            status = error.status if isinstance(error, ProviderError) else None
            answered_2xx = status is not None and 200 <= status < 300
            refused = status is not None and not answered_2xx
            why = str(error) if error is not None else "the provider gave no result"
            if attempt.cut and error is None:
                why = "the batch ended early (a subscriber in it left)"
            outcomes = []
            for sid in missing:
                handed = sid in attempt.handed_off
                maybe = (
                    (error is None and not attempt.cut) or answered_2xx or (handed and not refused)
                )
                if maybe:
                    outcomes.append(Outcome(sid, UNCERTAIN, error=why))
                else:
                    outcomes.append(Outcome(sid, PENDING, error=f"not sent: {why}"))
            uncertain = sum(1 for o in outcomes if o.state == UNCERTAIN)
            self.report.uncertain += uncertain
            self.ledger.transition(self.issue_id, outcomes, now=self.clock(), fence=self.fence)
            self.tick(uncertain)
        if error is not None:
            raise error

    # -- batches on worker threads

    def collect(self, *, every: bool) -> None:
        """Wait for one batch in flight (or ``every`` one) to finish, and record what has.

        When a batch failed, every other batch in flight is still recorded before the error
        goes on: a provider's accepted messages are never left unrecorded.
        """
        if not self.inflight:
            return
        done, _ = wait(list(self.inflight), return_when=ALL_COMPLETED if every else FIRST_COMPLETED)
        error: BaseException | None = None
        for future in done:
            batch = self.inflight.pop(future)
            attempt = future.result()
            for event in attempt.events:
                self.record_event(event, attempt)
            self.flush(attempt)
            try:
                self.release(batch, attempt)
            except BaseException as exc:  # re-raised below, after the rest are recorded
                error = error or exc
        if error is not None:
            self.drain()
            raise error

    def drain(self) -> None:
        """Wait for every batch in flight and record it."""
        while self.inflight:
            self.collect(every=True)

    def abandon(self) -> int:
        """A hard stop (a second Ctrl-C): batches that already finished are recorded; rows
        of batches still in flight stay ``sending``, which the next run settles like a
        crash's (never handed off: ``pending``). Returns how many were left so."""
        for future in [f for f in self.inflight if f.done()]:
            batch = self.inflight.pop(future)
            attempt = future.result()
            for event in attempt.events:
                self.record_event(event, attempt)
            self.flush(attempt)
            with contextlib.suppress(Exception):
                self.release(batch, attempt)
        count = sum(len(b.recipients) for b in self.inflight.values())
        for future in self.inflight:
            future.cancel()
        self.inflight.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        return count

    def count(self, result: Result) -> None:
        if result.state == SENT:
            self.report.sent += 1
        elif result.state == FAILED_PERMANENT:
            self.report.failed_permanent += 1
        elif result.state == UNCERTAIN:
            self.report.uncertain += 1
        else:
            self.report.failed_retryable += 1
