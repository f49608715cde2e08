"""``digest send --workers N``: one issue sent from several processes, one report for all.

The issue is queued here; each worker process runs :func:`digest.delivery.send.send_issue`
on the same ledger, leasing the rows it sends (:mod:`digest.delivery.leases`).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from datetime import date, datetime, timedelta, timezone
from typing import Any

from digest.config import Config
from digest.delivery.issue import Composer
from digest.delivery.ledger import FAILED_RETRYABLE, PENDING, SENDING, UNCERTAIN, Ledger
from digest.delivery.send import send_issue
from digest.delivery.send_report import Progress, SendReport, write_report
from digest.errors import NothingToSend, SendError
from digest.store.database import locate


def send_in_processes(
    config: Config,
    *,
    workers: int,
    now: datetime,
    week: str | None = None,
    since: date | None = None,
    until: date | None = None,
    force: bool = False,
    resend_uncertain: bool = False,
    progress: Progress | None = None,
    lease: timedelta | None = None,
    new_subscribers: bool = False,
    due_by: datetime | None = None,
    clock: Callable[[], datetime] | None = None,
    composer: Composer | None = None,
) -> SendReport:
    """``digest send --workers N``: queue the issue here, then send it from ``workers``
    processes that lease rows from the ledger (see :func:`send_issue`); one report for all.
    ``new_subscribers``, ``due_by`` and ``composer`` are the queueing's (a scheduled wave's:
    the readers due by then, gated by the pre-send checks); ``clock`` stamps every sender's
    results (a rehearsal's clock reaches the workers).
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    queued = send_issue(
        config,
        now=now,
        week=week,
        since=since,
        until=until,
        force=force,
        limit=0,
        lease=lease,
        new_subscribers=new_subscribers,
        due_by=due_by,
        clock=clock,
        composer=composer,
    )
    issue_id = queued.issue_id
    context = multiprocessing.get_context("spawn")  # no fork of a process that has threads
    arguments = {
        "now": now,
        "week": week,
        "since": since,
        "until": until,
        "lease": lease,
        "resend_uncertain": resend_uncertain,
        "clock": clock,
    }
    # An executor, not a multiprocessing.Pool: a worker that dies (SIGKILL, the OOM killer)
    # breaks it and every waiting result raises, where a Pool would wait for it forever.
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending = [pool.submit(_worker, config, arguments) for _ in range(workers)]
        _follow(config, issue_id, pending, progress)
        try:
            reports = [p.result() for p in pending]
        except BrokenProcessPool:
            raise SendError(
                f"{issue_id}: a worker process ended without finishing (killed?); what the "
                "workers held is settled by the next run: run the same command to resume"
            ) from None
    report = _combined(SendReport(issue_id, queued.provider, queued=queued.queued), reports)
    with Ledger(locate(config, config.ledger.database)) as ledger:
        report.ledger = ledger.counts(issue_id)
        report.unconfirmed = ledger.unconfirmed(issue_id)
        unfinished = sum(report.ledger[s] for s in (PENDING, SENDING, FAILED_RETRYABLE, UNCERTAIN))
        report.complete = unfinished == 0
        if report.complete:
            ledger.mark_completed(issue_id, (clock or _utc_now)())
        report.failures = [
            {"email": d.email, "state": d.state, "attempts": d.attempts, "error": d.last_error}
            for d in ledger.failures(issue_id)
        ]
    report.seconds = time.perf_counter() - started
    report.cpu_seconds = (
        time.process_time() - cpu_started + sum(r.cpu_seconds for r in reports if r is not None)
    )
    report.report_path = str(write_report(config, report))
    return report


def _combined(report: SendReport, reports: list[SendReport | None]) -> SendReport:
    """``report`` with every worker's counts added (None: a worker that found nothing)."""
    for part in reports:
        if part is None:
            continue
        report.attempted += part.attempted
        report.sent += part.sent
        report.failed_permanent += part.failed_permanent
        report.failed_retryable += part.failed_retryable
        report.skipped += part.skipped
        for key, value in part.settled_after_crash.items():
            report.settled_after_crash[key] = report.settled_after_crash.get(key, 0) + value
        for key, value in part.variants.items():
            report.variants[key] = report.variants.get(key, 0) + value
    return report


def _follow(
    config: Config,
    issue_id: str,
    pending: list[Future[SendReport | None]],
    progress: Progress | None,
) -> None:
    """Wait for the workers, reporting the ledger's progress every half second."""
    with Ledger(locate(config, config.ledger.database)) as ledger:
        while True:
            finished = all(p.done() for p in pending)
            if progress is not None:
                # once more after the workers end, so the last line is where it ended
                counts = ledger.counts(issue_id)
                left = counts[PENDING] + counts[SENDING] + counts[FAILED_RETRYABLE]
                done = sum(counts.values()) - left
                progress(done, sum(counts.values()))
            if finished:
                return
            wait(pending, timeout=0.5)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _worker(config: Config, arguments: dict[str, Any]) -> SendReport | None:
    """One process of :func:`send_in_processes` (None: the others had finished the issue)."""
    try:
        return send_issue(config, enqueue=False, **arguments)
    except NothingToSend:
        return None
