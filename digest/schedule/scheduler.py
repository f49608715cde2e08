"""When to send, and the one idempotent job that sends whatever is due.

Three layers, each usable on its own:

* :class:`Schedule` is the occurrence maths: a cron expression read as wall-clock time in
  an IANA timezone. It never reads the clock.
* :func:`run_due` is what ``digest run`` does once: find the latest occurrence at or
  before ``now``, decide whether it is due (not yet finished, not older than the grace
  period), work out its issue (the last complete week before the occurrence), call the
  injected job and record the outcome in the :class:`~digest.schedule.runs.RunStore`.
* :class:`Scheduler` is ``digest schedule``: it holds a lock, catches up on start, then
  sleeps until each next occurrence and calls :func:`run_due`. The clock and the sleep are
  injected (:class:`Clock`), so tests run weeks of schedule without sleeping.

Daylight saving time
--------------------
Occurrences are wall-clock times in the schedule's timezone, as a person reads the cron
line ("09:00 on Mondays" stays 09:00 local in summer and winter). Two wall-clock hours are
special, and digest resolves them the same way in every timezone:

* **Skipped hour** (spring forward: 02:00–03:00 does not exist in Europe/Berlin on the
  last Sunday of March): an occurrence that falls in the gap runs at the first instant
  after it (02:30 runs at 03:00). Several occurrences in the gap, and one at the end of
  the gap, collapse into a single run.
* **Repeated hour** (fall back: 02:00–03:00 happens twice in Europe/Berlin on the last
  Sunday of October): an occurrence runs once, in the first pass of that hour (the
  earlier instant, ``fold=0``). It is not repeated in the second pass.

croniter on its own runs a repeated-hour occurrence twice; the wall-clock resolution here
is done explicitly so the rule above holds whatever croniter's version does.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from digest.content.layout import least_posts, too_few_posts
from digest.content.window import is_day
from digest.errors import (
    DigestError,
    LockError,
    NoSubscribers,
    NothingToSend,
    SendError,
)
from digest.schedule.clock import Clock, ScaledClock, SystemClock, clock_at
from digest.schedule.due import (
    Due,
    Job,
    JobResult,
    Policy,
    RunReport,
    Schedule,
    Stopped,
    _local,
    describe_duration,
    issue_window,
)
from digest.schedule.local import has_daily_waves, wave_schedule
from digest.schedule.runs import RESUMABLE_OUTCOMES, RunStore, issue_command
from digest.store.database import locate
from digest.store.lock import ProcessLock, process_lock

if TYPE_CHECKING:
    from digest.config import Config

log = logging.getLogger(__name__)

# the names the rest of digest (and the tests) import from the scheduler
__all__ = [
    "Clock",
    "Due",
    "Job",
    "JobResult",
    "Policy",
    "RunReport",
    "ScaledClock",
    "Schedule",
    "Stopped",
    "SystemClock",
    "clock_at",
    "describe_duration",
    "issue_window",
]


def run_due(
    policy: Policy,
    runs: RunStore,
    job: Job,
    now: datetime,
    *,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] | None = None,
) -> RunReport:
    """Do whatever the schedule says is due at ``now``, once. Safe to call at any time.

    ``clock`` (default: ``now`` throughout) stamps when the job finished.

    The caller holds the run lock. Raises what the job raises (after recording a
    ``failed`` run), :class:`Stopped` after recording a ``stopped`` run, and
    :class:`NothingToSend` for an empty week when ``skip_empty`` is off.
    """
    stop = stop or threading.Event()
    schedule = policy.schedule
    next_occurrence = schedule.next_after(now)
    occurrence = schedule.latest_at_or_before(now)
    if occurrence is None:
        return RunReport("nothing-due", now, None, None, next_occurrence)
    window = issue_window(occurrence, policy.issue_tz, policy.week_start, policy.period)
    if policy.issue_prefix:
        window = replace(window, issue_id=policy.issue_prefix + window.issue_id)
    existing = runs.get(occurrence)
    if existing is not None and existing.final:
        return RunReport("done", now, occurrence, existing.issue_id, next_occurrence, existing)

    skipped = 0
    if existing is None:
        latest = runs.latest()
        if latest is not None and latest.occurrence < occurrence:
            skipped = schedule.count_between(latest.occurrence, occurrence)
            if skipped:
                log.warning(
                    "skipped %d occurrence%s between the last recorded run (%s) and %s: "
                    "only the latest is ever caught up",
                    skipped,
                    "s" if skipped != 1 else "",
                    _local(latest.occurrence.astimezone(schedule.tz)),
                    _local(occurrence),
                )

    resumable = existing is not None and existing.outcome in RESUMABLE_OUTCOMES
    if now - occurrence > policy.grace and not resumable:
        run = runs.finish(
            occurrence,
            window.issue_id,
            "missed",
            now=now,
            detail=f"found {describe_duration(now - occurrence)} late; "
            f"grace is {describe_duration(policy.grace)}",
        )
        return RunReport(
            "missed",
            now,
            occurrence,
            window.issue_id,
            next_occurrence,
            run,
            skipped,
            issue_prefix=policy.issue_prefix,
        )

    if resumable:
        log.info("resuming the interrupted run at %s (%s)", _local(occurrence), window.issue_id)
    runs.start(occurrence, window.issue_id, now=now)
    due = Due(occurrence, window)
    finished = clock or (lambda: now)
    try:
        result = job(due, stop)
    except Stopped as exc:
        runs.finish(occurrence, window.issue_id, "stopped", now=finished(), detail=str(exc))
        raise
    except DigestError as exc:
        runs.finish(occurrence, window.issue_id, "failed", now=finished(), detail=str(exc))
        raise
    outcome = result.outcome
    if outcome == "empty" and policy.skip_empty:
        outcome = "skipped-empty"
    run = runs.finish(
        occurrence,
        window.issue_id,
        outcome,
        now=finished(),
        sent=result.sent,
        failed=result.failed,
        detail=result.detail,
    )
    if outcome == "empty":
        raise NothingToSend(
            f"{window.issue_id} has no posts ({window.describe()}), and schedule.skip_empty "
            "is off; nothing was sent (turn skip_empty on to treat an empty week as normal)"
        )
    return RunReport(
        "ran",
        now,
        occurrence,
        window.issue_id,
        next_occurrence,
        run,
        skipped,
        resumed=resumable,
    )


# ---------------------------------------------------------------------------- scheduler

# The longest single sleep: the clock is read again at least this often, so a suspended
# laptop or a corrected system clock is noticed.
MAX_SLEEP = timedelta(minutes=1)
# When to try again after another process held the run lock, or after a failed run.
LOCK_RETRY = timedelta(seconds=30)
FAILURE_RETRY = timedelta(minutes=5)


class Scheduler:
    """``digest schedule``: hold the lock, catch up, then run each occurrence as it comes."""

    def __init__(
        self,
        policy: Policy,
        runs: RunStore,
        job: Job,
        clock: Clock,
        *,
        lock: ProcessLock,
        run_lock: ProcessLock | None = None,
        stop: threading.Event | None = None,
        on_report: Callable[[RunReport], None] | None = None,
    ) -> None:
        self.policy = policy
        self.runs = runs
        self.job = job
        self.clock = clock
        self.lock = lock
        self.run_lock = run_lock
        self.stop = stop or threading.Event()
        self.on_report = on_report or (lambda report: log.info("%s", report.message))

    def run(self, *, max_wakeups: int | None = None) -> None:
        """Run until :attr:`stop` is set (or after ``max_wakeups`` wake-ups, for tests).

        Raises :class:`~digest.errors.LockError` at once if another scheduler holds the lock.
        """
        with self.lock:
            schedule = self.policy.schedule
            log.info("scheduler started: %r in %s", schedule.cron, schedule.tz)
            retry_at = self._tick()  # catch up whatever is due now
            wakeups = 0
            while not self.stop.is_set():
                if max_wakeups is not None and wakeups >= max_wakeups:
                    return
                target = schedule.next_after(self.clock.now())
                if retry_at is not None:
                    target = min(target, retry_at)
                self._sleep_until(target)
                if self.stop.is_set():
                    break
                wakeups += 1
                retry_at = self._tick()
            log.info("scheduler stopped")

    def _sleep_until(self, target: datetime) -> None:
        while not self.stop.is_set():
            remaining = target - self.clock.now()
            if remaining <= timedelta(0):
                return
            self.clock.sleep(min(remaining, MAX_SLEEP).total_seconds(), self.stop)

    def _tick(self) -> datetime | None:
        """One run_due under the run lock. Errors are logged and the scheduler goes on;
        returns when to try again if the run should be retried before the next occurrence.
        """
        self.lock.verify()  # a lost database lock is taken again, or the scheduler stops
        try:
            if self.run_lock is not None:
                self.run_lock.acquire()
        except LockError as exc:
            log.info("another run is in progress; trying again shortly (%s)", exc)
            return self.clock.now() + LOCK_RETRY
        try:
            report = run_due(
                self.policy,
                self.runs,
                self.job,
                self.clock.now(),
                stop=self.stop,
                clock=self.clock.now,
            )
        except Stopped as exc:
            log.warning("stopped at a safe point: %s", exc)
            return None
        except DigestError as exc:
            log.error("the scheduled run failed: %s (retrying within schedule.grace)", exc)
            return self.clock.now() + FAILURE_RETRY
        finally:
            if self.run_lock is not None:
                self.run_lock.release()
        self.on_report(report)
        return None


# ----------------------------------------------------------------------- the real job


def send_job(config: Config, clock: Clock, *, workers: int = 1) -> Job:
    """The job ``digest run`` and ``digest schedule`` call: send the due issue through the
    ledger (``digest.delivery.send.send_issue`` builds it, resumes a partial send, and refuses one
    that has gone out in full), from ``workers`` processes when more than one
    (:mod:`digest.schedule.sending`).

    A stop request is honoured after the next committed result (with workers, at once:
    see :mod:`digest.schedule.sending`): the ledger is consistent there, and the next run
    resumes from it.
    """

    def job(due: Due, stop: threading.Event) -> JobResult:
        from digest.content import pipeline
        from digest.schedule.sending import send_scheduled

        now = clock.now()
        selection = pipeline.load_and_select(config, now, week=due.issue_id).selection
        if selection.count == 0:
            return JobResult("empty", detail=f"no posts in {due.window.describe()}")
        daily = is_day(due.window)
        if selection.count < least_posts(config, daily)[0]:
            detail = too_few_posts(due.issue_id, selection.count, config, daily)
            return JobResult("empty", detail=detail)

        def progress(done: int, total: int) -> None:
            if stop.is_set():
                raise Stopped(
                    f"stopped {due.issue_id} at a safe point after {done} of {total} "
                    "messages; the next `digest run` resumes it"
                )

        try:
            local = config.schedule.local_time is not None
            report = send_scheduled(
                config,
                workers=workers,
                now=now,
                week=due.issue_id,
                progress=progress,
                clock=clock.now,
                due_by=due.occurrence if local else None,
            )
        except NoSubscribers:
            raise  # not done: the run fails, and the next one within grace tries again
        except NothingToSend as exc:
            return JobResult("already-sent", detail=str(exc))
        failed = report.ledger.get("failed-permanent", 0)
        if not report.complete:
            held = report.ledger.get("uncertain", 0)
            if held and not any(
                report.ledger.get(k, 0) for k in ("pending", "sending", "failed-retryable")
            ):
                prefix = config.issue_prefix
                status = issue_command(due.issue_id, prefix, "status")
                resend = issue_command(due.issue_id, prefix, "send", "--resend-uncertain")
                raise SendError(
                    f"{due.issue_id}: {report.sent} sent; {held} uncertain (no answer came, "
                    f"not counted as sent): see `{status}`, and `{resend}` to send them again"
                )
            raise SendError(
                f"{due.issue_id}: {report.sent} sent but the send did not finish "
                f"({report.ledger}); the next run carries on"
            )
        detail = f"{report.sent} message{'s' if report.sent != 1 else ''}"
        if failed:
            status = issue_command(due.issue_id, config.issue_prefix, "status")
            detail += f", {failed} failed for good (see {status})"
        return JobResult("sent", sent=report.sent, failed=failed, detail=detail)

    return job


# --------------------------------------------------------------------------- the commands


def run_lock_path(config: Config) -> Path:
    """The file `digest run` locks (beside schedule.lock) on the SQLite files."""
    lock = config.path(config.schedule.lock)
    return lock.with_name(lock.name + ".run")


def run_lock(config: Config) -> ProcessLock:
    """The lock `digest run` holds, so two runs never overlap: in the database when
    ``database:`` is set (runs on other hosts see it), else a file beside schedule.lock."""
    return process_lock(config, run_lock_path(config), "digest run")


def schedule_lock(config: Config) -> ProcessLock:
    """The lock `digest schedule` holds for its whole life (see :func:`run_lock`)."""
    return process_lock(config, config.schedule.lock, "digest schedule")


def run_now(
    config: Config, clock: Clock, *, stop: threading.Event, daily: bool = False, workers: int = 1
) -> RunReport:
    """`digest run`: under the run lock, send whatever is due now (see :func:`run_due`).

    ``daily``: the day issues of a weekly newsletter with ``schedule.local_time``, for its
    daily readers (their runs are recorded apart, under the newsletter's key and "daily:").
    """
    policy = Policy.from_config(config)
    key = config.issue_prefix
    if daily:
        policy = replace(policy, schedule=wave_schedule(config, daily=True), period="day")
        key += "daily:"
    with (
        run_lock(config),
        RunStore(locate(config, config.schedule.database), key) as runs,
    ):
        return run_due(
            policy,
            runs,
            send_job(config, clock, workers=workers),
            clock.now(),
            stop=stop,
            clock=clock.now,
        )


def run_forever(
    config: Config,
    clock: Clock,
    *,
    stop: threading.Event,
    on_start: Callable[[Policy, datetime], None] | None = None,
    on_report: Callable[[RunReport], None] | None = None,
    held: ProcessLock | None = None,
    workers: int = 1,
) -> None:
    """`digest schedule`: hold the scheduler lock and run every occurrence until ``stop``.

    The lock comes first, so a second scheduler is refused before it touches any file.
    ``held`` is the lock when the caller has taken it already (several newsletters).
    """
    policy = Policy.from_config(config)
    lock = held if held is not None else schedule_lock(config)
    taken = contextlib.nullcontext() if held is not None else lock
    with taken, RunStore(locate(config, config.schedule.database), config.issue_prefix) as runs:
        scheduler = Scheduler(
            policy,
            runs,
            send_job(config, clock, workers=workers),
            clock,
            lock=lock,
            run_lock=run_lock(config),
            stop=stop,
            on_report=on_report,
        )
        if on_start is not None:
            on_start(policy, policy.schedule.next_after(clock.now()))
        scheduler.run()


# ------------------------------------------------------------------ several newsletters


@dataclass(frozen=True)
class NewsletterRun:
    """What :func:`run_newsletters` did for one newsletter: a report, or the error."""

    newsletter: str
    report: RunReport | None = None
    error: DigestError | None = None


def run_newsletters(
    config: Config,
    names: Sequence[str],
    clock: Clock,
    *,
    stop: threading.Event | None = None,
    workers: int = 1,
) -> list[NewsletterRun]:
    """`digest run` for each named newsletter, each on its own schedule, runs database and
    locks. One newsletter's failure is recorded and the others still run; with a single
    name the error is raised as it is. A stop request ends the loop."""
    results: list[NewsletterRun] = []
    for name in names:
        one = config.for_newsletter(name)
        # a weekly newsletter sent at local time has its daily readers' day issues too
        for daily in (False, True) if has_daily_waves(one) else (False,):
            label = f"{name} daily" if daily else name
            try:
                stopper = stop or threading.Event()
                report = run_now(one, clock, stop=stopper, daily=daily, workers=workers)
            except Stopped:
                raise
            except DigestError as exc:
                if len(names) == 1 and not daily and not has_daily_waves(one):
                    raise
                log.error("newsletter %s: %s", label, exc)
                results.append(NewsletterRun(label, error=exc))
                continue
            results.append(NewsletterRun(label, report))
    return results


def run_forever_each(
    config: Config,
    names: Sequence[str],
    clock: Clock,
    *,
    stop: threading.Event,
    on_start: Callable[[str, Policy, datetime], None] | None = None,
    on_report: Callable[[str, RunReport], None] | None = None,
    workers: int = 1,
) -> None:
    """`digest schedule` for each named newsletter, each with its own scheduler, lock and
    runs, in its own thread. The first error stops them all and is raised.

    Every newsletter's lock is taken first, here, in the config's order: two schedulers
    started at once then meet at the first lock, and one of them gets them all (taken in
    each thread, each could get some, refuse the other, and neither run)."""
    if len(names) == 1:
        name = names[0]
        run_forever(
            config.for_newsletter(name),
            clock,
            stop=stop,
            on_start=None if on_start is None else functools.partial(on_start, name),
            on_report=None if on_report is None else functools.partial(on_report, name),
            workers=workers,
        )
        return
    errors: list[BaseException] = []

    def one(name: str, lock: ProcessLock) -> None:
        try:
            run_forever(
                config.for_newsletter(name),
                clock,
                stop=stop,
                on_start=None if on_start is None else functools.partial(on_start, name),
                on_report=None if on_report is None else functools.partial(on_report, name),
                held=lock,
                workers=workers,
            )
        except BaseException as exc:  # handed to the caller's thread below
            errors.append(exc)
            stop.set()

    with contextlib.ExitStack() as held:
        locks = {name: schedule_lock(config.for_newsletter(name)) for name in names}
        for lock in locks.values():
            held.enter_context(lock)
        threads = [
            threading.Thread(target=one, args=(name, lock), name=f"schedule-{name}")
            for name, lock in locks.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
    if errors:
        raise errors[0]
