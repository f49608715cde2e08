"""What a scheduled run is handed and answers: the cron schedule (:class:`Schedule`, its
occurrences in wall-clock time), the occurrence that came due (:class:`Due`), the job's
result, the policy a run follows and its report. :func:`~digest.schedule.scheduler.run_due`
and the :class:`~digest.schedule.scheduler.Scheduler` act on them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from digest.config.cron import check_cron
from digest.content.select import Window, last_complete_day, last_complete_week
from digest.content.wallclock import resolve_wall
from digest.errors import (
    ConfigError,
    SendError,
)
from digest.schedule.local import WaveSchedule, wave_schedule
from digest.schedule.occurrences import Occurrences
from digest.schedule.runs import Run, issue_command

if TYPE_CHECKING:
    from digest.config import Config


# A wall-clock time is looked up from this far before the instant asked about, so an
# occurrence in a repeated hour is still found; no zone shifts its clock by more.
_DST_SLACK = timedelta(hours=3)


@dataclass(frozen=True)
class Schedule(Occurrences):
    """A cron expression read as wall-clock time in ``tz``."""

    cron: str
    tz: ZoneInfo

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "cron", check_cron(self.cron))
        except ValueError as exc:
            raise ConfigError(f"schedule.cron: {exc}") from None

    @classmethod
    def from_config(cls, config: Config) -> Schedule:
        name = config.schedule.timezone or config.timezone
        return cls(config.schedule.cron, ZoneInfo(name))

    def _resolve(self, wall: datetime) -> datetime:
        """The instant a naive wall-clock time stands for (see the module's DST rules)."""
        return resolve_wall(wall, self.tz)

    def _walls(self, start: datetime) -> croniter:
        return croniter(self.cron, start, second_at_beginning=True)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment`` (aware, in the schedule's zone)."""
        wall = moment.astimezone(self.tz).replace(tzinfo=None) - _DST_SLACK
        walls = self._walls(wall)
        while True:
            candidate = self._resolve(walls.get_next(datetime))
            if candidate > moment:
                return candidate

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last occurrence at or before ``moment``, or None if there is none."""
        wall = moment.astimezone(self.tz).replace(tzinfo=None) + _DST_SLACK
        walls = self._walls(wall + timedelta(seconds=1))
        try:
            while True:
                candidate = self._resolve(walls.get_prev(datetime))
                if candidate <= moment:
                    return candidate
        except CroniterBadDateError:
            return None


@dataclass(frozen=True)
class Due:
    """An occurrence to act on, and the issue it sends."""

    occurrence: datetime
    window: Window

    @property
    def issue_id(self) -> str:
        return self.window.issue_id


@dataclass(frozen=True)
class JobResult:
    """How the job ended: ``sent``, ``already-sent`` or ``empty``, with counts."""

    outcome: str
    sent: int = 0
    failed: int = 0
    detail: str = ""


class Stopped(SendError):
    """A stop was asked for and the job stopped at a safe point; the next run resumes."""


Job = Callable[[Due, threading.Event], JobResult]


def issue_window(
    occurrence: datetime, tz: ZoneInfo, week_start: str = "monday", period: str = "week"
) -> Window:
    """The issue the occurrence sends: the last complete week (or day) before it."""
    if period == "day":
        return last_complete_day(occurrence, tz)
    return last_complete_week(occurrence, tz, week_start)


@dataclass(frozen=True)
class Policy:
    """The parts of ``schedule:`` that decide what a run does."""

    schedule: Schedule | WaveSchedule
    grace: timedelta
    skip_empty: bool = True
    week_start: str = "monday"
    issue_tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    issue_prefix: str = ""  # a newsletter other than the first: its name and a hyphen
    period: str = "week"  # or "day": what an issue covers

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(
            schedule=(
                wave_schedule(config)
                if config.schedule.local_time
                else Schedule.from_config(config)
            ),
            grace=config.schedule.grace,
            skip_empty=config.schedule.skip_empty,
            week_start=config.week_start,
            issue_tz=config.tz,
            issue_prefix=config.issue_prefix,
            period=config.period,
        )


@dataclass(frozen=True)
class RunReport:
    """What one call of :func:`run_due` did.

    ``action``: ``nothing-due`` (no occurrence yet), ``done`` (the latest occurrence has
    already finished), ``missed`` (too late to send it), or ``ran`` (the job was called;
    ``run`` says how it ended).
    """

    action: str
    now: datetime
    occurrence: datetime | None
    issue_id: str | None
    next_occurrence: datetime
    run: Run | None = None
    skipped_earlier: int = 0
    issue_prefix: str = ""  # the newsletter's, so that hints name it
    resumed: bool = False

    @property
    def message(self) -> str:
        when = _local(self.occurrence) if self.occurrence else ""
        nxt = f"; next run {_local(self.next_occurrence)}"
        if self.action == "nothing-due":
            return f"nothing due yet{nxt}"
        if self.action == "done":
            outcome = self.run.outcome if self.run else "done"
            return f"nothing due: the run at {when} ({self.issue_id}) is {outcome}{nxt}"
        if self.action == "missed":
            late = describe_duration(self.now - self.occurrence) if self.occurrence else ""
            return (
                f"skipped the run at {when} ({self.issue_id}): {late} late is past the grace "
                f"period (schedule.grace); send it by hand with "
                f"`{issue_command(self.issue_id or '', self.issue_prefix, 'send')}` if it "
                f"should still go out{nxt}"
            )
        assert self.run is not None
        run = self.run
        verb = "resumed" if self.resumed else "ran"
        detail = f": {run.detail}" if run.detail else ""
        return f"{verb} {when} ({run.issue_id}): {run.outcome}{detail}{nxt}"


def _local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def describe_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"
