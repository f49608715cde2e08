"""The schedule: occurrence maths across DST, the idempotent run, the lock and the loop.

Every test here runs on an injected clock; nothing sleeps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner, Result

from digest.audience.imports.importer import import_file
from digest.audience.subscribers import Categories, SubscriberStore
from digest.cli import main
from digest.config import Config, parse_config
from digest.config.cron import check_cron
from digest.errors import ConfigError, LockError, NothingToSend, SendError, UsageError
from digest.schedule.install import crontab, github_actions, on_calendar, systemd
from digest.schedule.runs import RunStore
from digest.schedule.scheduler import (
    Due,
    JobResult,
    Policy,
    ScaledClock,
    Schedule,
    Scheduler,
    Stopped,
    SystemClock,
    clock_at,
    issue_window,
    run_due,
)
from digest.store.lock import FileLock

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC = timezone.utc


def at(text: str, tz: ZoneInfo = BERLIN, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold)


def stamps(moments: list[datetime]) -> list[str]:
    return [m.isoformat() for m in moments]


# ------------------------------------------------------------------------ cron parsing


def test_weekly_occurrences_are_mondays_at_nine_local() -> None:
    schedule = Schedule("0 9 * * MON", BERLIN)
    assert stamps(schedule.upcoming(at("2026-11-18 12:00"), 3)) == [
        "2026-11-23T09:00:00+01:00",
        "2026-11-30T09:00:00+01:00",
        "2026-12-07T09:00:00+01:00",
    ]
    # An occurrence instant itself is "at or before", and "after" it is the next week.
    monday = at("2026-11-23 09:00")
    assert schedule.latest_at_or_before(monday) == monday
    assert schedule.latest_at_or_before(monday - timedelta(seconds=1)) == at("2026-11-16 09:00")
    assert schedule.next_after(monday) == at("2026-11-30 09:00")


def test_a_seconds_field_comes_first() -> None:
    schedule = Schedule("*/20 * * * * *", ZoneInfo("UTC"))
    start = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
    assert stamps(schedule.upcoming(start, 3)) == [
        "2026-01-01T12:00:20+00:00",
        "2026-01-01T12:00:40+00:00",
        "2026-01-01T12:01:00+00:00",
    ]


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 9 * *", "'0 9 * *' has 4 fields; a cron expression has five, such as \"0 9 * * MON\""),
        ("0 25 * * MON", "'0 25 * * MON' is not a cron expression"),
        ("0 9 * * FUNDAY", "'0 9 * * FUNDAY' is not a cron expression"),
        ("0 0 30 2 *", "'0 0 30 2 *' never happens (no date matches it)"),
    ],
)
def test_invalid_cron_is_a_config_error_naming_the_key_with_an_example(
    cron: str, message: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        check_cron(cron)
    data = yaml.safe_load((Path(__file__).parent.parent / "config.yaml").read_text())
    data["schedule"]["cron"] = cron
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.startswith(f"schedule.cron: {message}")
    assert '"0 9 * * MON"' in problem


def test_config_gives_the_schedule_its_own_timezone_or_the_sites(sample_site: Path) -> None:
    data = yaml.safe_load((sample_site / "config.yaml").read_text())
    config = parse_config(data, sample_site / "config.yaml")
    assert Schedule.from_config(config) == Schedule("0 9 * * MON", BERLIN)
    data["schedule"]["timezone"] = "America/New_York"
    assert Schedule.from_config(parse_config(data)).tz == NEW_YORK
    assert config.schedule.database == Path("data/runs.sqlite")
    assert config.schedule.lock == Path("data/schedule.lock")


# ---------------------------------------------------------------------------------- DST


def test_weekly_run_keeps_local_time_across_both_changes_in_berlin() -> None:
    schedule = Schedule("0 9 * * MON", BERLIN)
    spring = schedule.upcoming(at("2026-03-20 12:00"), 2)
    assert stamps(spring) == ["2026-03-23T09:00:00+01:00", "2026-03-30T09:00:00+02:00"]
    assert spring[1].astimezone(UTC) - spring[0].astimezone(UTC) == timedelta(days=7, hours=-1)
    autumn = schedule.upcoming(at("2026-10-20 12:00"), 2)
    assert stamps(autumn) == ["2026-10-26T09:00:00+01:00", "2026-11-02T09:00:00+01:00"]
    assert [m.astimezone(UTC).hour for m in (spring[0], spring[1], autumn[0])] == [8, 7, 8]


def test_weekly_run_keeps_local_time_across_both_changes_in_new_york() -> None:
    schedule = Schedule("0 9 * * MON", NEW_YORK)
    assert stamps(schedule.upcoming(at("2026-03-05 12:00", NEW_YORK), 2)) == [
        "2026-03-09T09:00:00-04:00",  # the first Monday after the change
        "2026-03-16T09:00:00-04:00",
    ]
    assert schedule.latest_at_or_before(at("2026-03-08 12:00", NEW_YORK)) == at(
        "2026-03-02 09:00", NEW_YORK
    )
    assert at("2026-03-02 09:00", NEW_YORK).utcoffset() == timedelta(hours=-5)


@pytest.mark.parametrize(
    ("tz", "cron", "before", "expected"),
    [
        # 02:00-03:00 does not exist on 2026-03-29 in Berlin: 02:30 runs at 03:00.
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2026-03-28 12:00",
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        ),
        # 02:00-03:00 does not exist on 2026-03-08 in New York.
        (
            "America/New_York",
            "30 2 * * *",
            "2026-03-07 12:00",
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
        # Hourly: the missing 02:00 and the real 03:00 collapse into one run.
        (
            "Europe/Berlin",
            "0 * * * *",
            "2026-03-29 00:30",
            ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"],
        ),
    ],
)
def test_spring_forward_runs_a_skipped_time_once_at_the_end_of_the_gap(
    tz: str, cron: str, before: str, expected: list[str]
) -> None:
    zone = ZoneInfo(tz)
    schedule = Schedule(cron, zone)
    found = schedule.upcoming(at(before, zone), len(expected))
    assert stamps(found) == expected
    # Looking back from each occurrence finds the same instant (the maths agrees both ways).
    assert [schedule.latest_at_or_before(m) for m in found] == found


@pytest.mark.parametrize(
    ("tz", "cron", "before", "expected"),
    [
        # 02:00-03:00 happens twice on 2026-10-25 in Berlin: 02:30 runs once, the first time.
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2026-10-24 12:00",
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
        # 01:00-02:00 happens twice on 2026-11-01 in New York.
        (
            "America/New_York",
            "30 1 * * *",
            "2026-10-31 12:00",
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        ),
        # Hourly: the repeated 01:00 hour in New York has one run, not two.
        (
            "America/New_York",
            "0 * * * *",
            "2026-11-01 00:30",
            ["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"],
        ),
    ],
)
def test_fall_back_runs_a_repeated_time_once_in_the_first_pass(
    tz: str, cron: str, before: str, expected: list[str]
) -> None:
    zone = ZoneInfo(tz)
    schedule = Schedule(cron, zone)
    found = schedule.upcoming(at(before, zone), len(expected))
    assert stamps(found) == expected
    assert [schedule.latest_at_or_before(m) for m in found] == found


def test_fall_back_from_inside_the_second_pass_does_not_run_again() -> None:
    schedule = Schedule("30 2 * * *", BERLIN)
    first = at("2026-10-25 02:30", fold=0)
    second_pass = at("2026-10-25 02:45", fold=1)  # 01:45 UTC, after the first 02:30
    assert schedule.latest_at_or_before(second_pass) == first
    assert schedule.next_after(second_pass) == at("2026-10-26 02:30")


# ----------------------------------------------------------------------- which issue


def test_the_occurrence_sends_the_last_complete_week_before_it() -> None:
    assert issue_window(at("2026-11-23 09:00"), BERLIN).issue_id == "2026-W47"
    assert issue_window(at("2026-11-22 23:59"), BERLIN).issue_id == "2026-W46"
    window = issue_window(at("2026-11-23 09:00"), BERLIN, "sunday")
    assert window.start == at("2026-11-15 00:00")
    assert window.issue_id == "2026-W47"


# ------------------------------------------------------------------------- run_due


@dataclass
class FakeJob:
    """A job that records what it was asked to send, and does what it is told."""

    outcome: str = "sent"
    sent: int = 3
    calls: list[Due] = field(default_factory=list)
    raise_once: BaseException | None = None

    def __call__(self, due: Due, stop: threading.Event) -> JobResult:
        self.calls.append(due)
        if self.raise_once is not None:
            error, self.raise_once = self.raise_once, None
            raise error
        return JobResult(self.outcome, sent=self.sent)

    @property
    def issues(self) -> list[str]:
        return [due.issue_id for due in self.calls]


@pytest.fixture
def runs(tmp_path: Path) -> RunStore:
    store = RunStore(tmp_path / "runs.sqlite")
    yield store  # type: ignore[misc]
    store.close()


def weekly(grace: timedelta = timedelta(hours=6), skip_empty: bool = True) -> Policy:
    return Policy(Schedule("0 9 * * MON", BERLIN), grace, skip_empty, "monday", BERLIN)


def test_run_sends_the_due_issue_once_and_then_does_nothing(runs: RunStore) -> None:
    job = FakeJob()
    report = run_due(weekly(), runs, job, at("2026-11-23 09:00:30"))
    assert report.action == "ran"
    assert report.run is not None and report.run.outcome == "sent"
    assert report.run.sent == 3
    assert job.issues == ["2026-W47"]
    for hour in ("10:00", "14:59", "23:00"):
        again = run_due(weekly(), runs, job, at(f"2026-11-23 {hour}"))
        assert again.action == "done"
        assert again.message.startswith("nothing due: the run at 2026-11-23 09:00:00 CET")
    assert job.issues == ["2026-W47"]
    assert [(r.issue_id, r.outcome, r.attempts) for r in runs.all()] == [("2026-W47", "sent", 1)]


def test_hourly_cron_calls_catch_up_within_grace_and_skip_after_it(runs: RunStore) -> None:
    job = FakeJob()
    # The machine came up at 14:30, inside the 6h grace: the 09:00 run still happens.
    assert run_due(weekly(), runs, job, at("2026-11-23 14:30")).action == "ran"
    # A week later it comes up at 15:01, past the grace: skipped, and recorded once.
    late = run_due(weekly(), runs, job, at("2026-11-30 15:01"))
    assert late.action == "missed"
    assert "6h 1m late is past the grace period" in late.message
    assert "digest send --week 2026-W48" in late.message
    assert run_due(weekly(), runs, job, at("2026-11-30 16:00")).action == "done"
    assert job.issues == ["2026-W47"]


def test_nothing_is_due_before_the_first_occurrence(runs: RunStore) -> None:
    policy = Policy(Schedule("0 9 1 1 *", BERLIN), timedelta(hours=6))
    report = run_due(policy, runs, FakeJob(), at("2000-01-01 08:00"))
    assert report.action in {"nothing-due", "missed"}  # croniter may look back decades
    assert report.next_occurrence == at("2000-01-01 09:00")


def test_a_machine_off_for_three_weeks_sends_only_the_latest_issue_within_grace(
    runs: RunStore, caplog: pytest.LogCaptureFixture
) -> None:
    job = FakeJob()
    run_due(weekly(), runs, job, at("2026-11-02 09:00"))
    # Off from 2 Nov to 23 Nov 10:00: the 9, 16 and 23 Nov runs were never attempted.
    with caplog.at_level("WARNING", logger="digest.schedule.scheduler"):
        report = run_due(weekly(), runs, job, at("2026-11-23 10:00"))
    assert report.action == "ran"
    assert report.skipped_earlier == 2
    assert job.issues == ["2026-W44", "2026-W47"]
    assert "skipped 2 occurrences between the last recorded run" in caplog.text
    # With the grace passed as well, nothing goes out at all, and that is recorded.
    other = RunStore(runs.path.with_name("other.sqlite"))
    other_job = FakeJob()
    run_due(weekly(), other, other_job, at("2026-11-02 09:00"))
    report = run_due(weekly(), other, other_job, at("2026-11-25 12:00"))
    assert (report.action, report.skipped_earlier) == ("missed", 2)
    assert other_job.issues == ["2026-W44"]
    assert [r.outcome for r in other.all()] == ["sent", "missed"]
    other.close()


def test_a_crash_during_send_is_resumed_by_the_next_run(runs: RunStore) -> None:
    job = FakeJob(raise_once=KeyboardInterrupt())  # stands in for a killed process
    with pytest.raises(KeyboardInterrupt):
        run_due(weekly(), runs, job, at("2026-11-23 09:00"))
    crashed = runs.get(at("2026-11-23 09:00"))
    assert crashed is not None and crashed.outcome == "running"
    # The next hourly call resumes it, even though the crash left it unfinished.
    report = run_due(weekly(), runs, job, at("2026-11-23 10:00"))
    assert (report.action, report.resumed) == ("ran", True)
    assert report.message.startswith("resumed 2026-11-23 09:00:00 CET (2026-W47): sent")
    assert job.issues == ["2026-W47", "2026-W47"]
    done = runs.get(at("2026-11-23 09:00"))
    assert done is not None and (done.outcome, done.attempts) == ("sent", 2)
    assert run_due(weekly(), runs, job, at("2026-11-23 11:00")).action == "done"


def test_an_interrupted_send_is_resumed_even_after_the_grace_period(runs: RunStore) -> None:
    job = FakeJob(raise_once=Stopped("stopped after 120 of 300 messages"))
    with pytest.raises(Stopped):
        run_due(weekly(), runs, job, at("2026-11-23 09:00"))
    report = run_due(weekly(), runs, job, at("2026-11-24 09:00"))
    assert (report.action, report.resumed) == ("ran", True)
    assert job.issues == ["2026-W47", "2026-W47"]


def test_a_failed_run_is_retried_within_grace_and_then_given_up(runs: RunStore) -> None:
    job = FakeJob(raise_once=SendError("postmark 503: try later"))
    with pytest.raises(SendError):
        run_due(weekly(), runs, job, at("2026-11-23 09:00"))
    failed = runs.get(at("2026-11-23 09:00"))
    assert failed is not None and (failed.outcome, failed.detail) == (
        "failed",
        "postmark 503: try later",
    )
    assert run_due(weekly(), runs, job, at("2026-11-23 10:00")).action == "ran"
    job2 = FakeJob(raise_once=SendError("down"))
    with pytest.raises(SendError):
        run_due(weekly(), runs, job2, at("2026-11-30 09:00"))
    assert run_due(weekly(), runs, job2, at("2026-11-30 16:00")).action == "missed"
    assert job2.issues == ["2026-W48"]


def test_an_empty_week_is_skipped_quietly_when_skip_empty_is_on(runs: RunStore) -> None:
    report = run_due(weekly(), runs, FakeJob(outcome="empty", sent=0), at("2026-11-23 09:00"))
    assert report.run is not None and report.run.outcome == "skipped-empty"


def test_an_empty_week_is_reported_once_when_skip_empty_is_off(runs: RunStore) -> None:
    job = FakeJob(outcome="empty", sent=0)
    with pytest.raises(NothingToSend, match=r"^2026-W47 has no posts \(2026-11-16 to 2026-11-22\)"):
        run_due(weekly(skip_empty=False), runs, job, at("2026-11-23 09:00"))
    assert run_due(weekly(skip_empty=False), runs, job, at("2026-11-23 10:00")).action == "done"
    assert len(job.calls) == 1


# ----------------------------------------------------------------------------- lock


def test_a_second_lock_holder_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / "data" / "schedule.lock"
    with FileLock(path, "digest schedule"):
        with pytest.raises(LockError) as caught:
            FileLock(path, "digest schedule").acquire()
        assert str(caught.value).startswith(f"{path} is held by digest schedule (pid ")
        assert "only one digest schedule may run at a time" in str(caught.value)
    with FileLock(path, "digest schedule") as again:
        assert again.held


@pytest.mark.integration
def test_the_lock_of_a_killed_process_is_free_again(tmp_path: Path) -> None:
    path = tmp_path / "schedule.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from digest.store.lock import FileLock;"
            f"FileLock(Path({str(path)!r}), 'x').acquire(); print('held', flush=True);"
            "time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(LockError):
            FileLock(path, "y").acquire()
    finally:
        holder.kill()
        holder.wait(timeout=60)
    with FileLock(path, "y") as lock:
        assert lock.held


# ------------------------------------------------------------------------ scheduler


class FakeClock:
    """Time that passes only when the scheduler sleeps."""

    def __init__(self, start: datetime) -> None:
        self.moment = start
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.slept.append(seconds)
        self.moment += timedelta(seconds=seconds)


def make_scheduler(
    tmp_path: Path, runs: RunStore, job: FakeJob, clock: FakeClock, **kwargs: object
) -> Scheduler:
    return Scheduler(
        weekly(),
        runs,
        job,
        clock,
        lock=FileLock(tmp_path / "schedule.lock", "digest schedule"),
        run_lock=FileLock(tmp_path / "schedule.lock.run", "digest run"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_scheduler_wakes_for_each_monday_and_sends_each_week(
    tmp_path: Path, runs: RunStore
) -> None:
    job = FakeJob()
    clock = FakeClock(at("2026-11-04 12:00"))
    reports: list[str] = []
    scheduler = make_scheduler(
        tmp_path, runs, job, clock, on_report=lambda r: reports.append(r.action)
    )
    scheduler.run(max_wakeups=3)
    assert job.issues == ["2026-W45", "2026-W46", "2026-W47"]
    assert [c.occurrence for c in job.calls] == [
        at("2026-11-09 09:00"),
        at("2026-11-16 09:00"),
        at("2026-11-23 09:00"),
    ]
    assert clock.now() == at("2026-11-23 09:00")
    assert max(clock.slept) == 60.0  # never sleeps longer than a minute at a time
    # On start (Wed 4 Nov, past the grace) the 2 Nov run was recorded as missed.
    assert reports == ["missed", "ran", "ran", "ran"]


def test_the_scheduler_catches_up_on_start_within_grace(tmp_path: Path, runs: RunStore) -> None:
    job = FakeJob()
    clock = FakeClock(at("2026-11-23 11:00"))
    make_scheduler(tmp_path, runs, job, clock).run(max_wakeups=0)
    assert job.issues == ["2026-W47"]
    assert clock.slept == []


def test_the_scheduler_retries_a_failed_run_before_the_next_occurrence(
    tmp_path: Path, runs: RunStore
) -> None:
    job = FakeJob(raise_once=SendError("smtp: connection refused"))
    clock = FakeClock(at("2026-11-23 08:59"))
    make_scheduler(tmp_path, runs, job, clock).run(max_wakeups=2)
    assert [c.occurrence for c in job.calls] == [at("2026-11-23 09:00")] * 2
    assert clock.now() == at("2026-11-23 09:05")
    run = runs.get(at("2026-11-23 09:00"))
    assert run is not None and (run.outcome, run.attempts) == ("sent", 2)


def test_two_schedulers_started_at_once_one_is_refused(tmp_path: Path, runs: RunStore) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow_job(due: Due, stop: threading.Event) -> JobResult:
        started.set()
        release.wait(60)
        return JobResult("sent", 1)

    def first() -> None:
        with RunStore(runs.path) as own_store:  # each scheduler opens its own connection
            Scheduler(
                weekly(),
                own_store,
                slow_job,
                FakeClock(at("2026-11-23 09:00")),
                lock=FileLock(tmp_path / "schedule.lock", "digest schedule"),
            ).run(max_wakeups=0)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(60)
        second = make_scheduler(tmp_path, runs, FakeJob(), FakeClock(at("2026-11-23 09:00")))
        with pytest.raises(LockError, match="only one digest schedule may run at a time"):
            second.run(max_wakeups=0)
    finally:
        release.set()
        thread.join(60)
    assert [r.outcome for r in runs.all()] == ["sent"]


def test_a_stop_during_the_job_ends_the_loop_after_it(tmp_path: Path, runs: RunStore) -> None:
    def stopping_job(due: Due, stop: threading.Event) -> JobResult:
        stop.set()  # as the SIGTERM handler would, mid-send
        raise Stopped("stopped after 10 of 40 messages")

    stop = threading.Event()
    clock = FakeClock(at("2026-11-23 09:00"))
    scheduler = Scheduler(
        weekly(),
        runs,
        stopping_job,
        clock,
        lock=FileLock(tmp_path / "schedule.lock", "digest schedule"),
        stop=stop,
    )
    scheduler.run()  # returns instead of sleeping until next week
    run = runs.get(at("2026-11-23 09:00"))
    assert run is not None and run.outcome == "stopped"
    assert clock.slept == []
    with FileLock(tmp_path / "schedule.lock", "x") as lock:  # released on the way out
        assert lock.held


def test_the_rehearsal_clock_is_shared_across_processes() -> None:
    clock = clock_at("2026-11-23T08:59:00+01:00@1000x60")
    assert isinstance(clock, ScaledClock)
    assert (clock.start, clock.anchor, clock.speed) == (at("2026-11-23 08:59"), 1000.0, 60.0)
    alone = clock_at("2026-11-23T08:59:00+01:00")  # that moment now, at the real pace
    assert isinstance(alone, ScaledClock) and alone.speed == 1.0
    assert abs(alone.now() - at("2026-11-23 08:59")) < timedelta(minutes=1)
    assert isinstance(clock_at(None), SystemClock)
    for bad in ("soon", "2026-11-23T08:59:00", "2026-11-23T08:59:00+01:00@1x0"):
        with pytest.raises(UsageError) as caught:
            clock_at(bad)
        assert str(caught.value) == (
            f"--now {bad!r}: expected a moment with its offset, such as "
            "2026-11-23T09:30:00+01:00, or START@UNIX_TIME[xSPEED] to rehearse faster"
        )


def test_no_environment_variable_moves_the_clock(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_CLOCK", "2026-03-20T12:00:00+01:00@0x1")
    result = CliRunner().invoke(
        main, ["--config", str(sample_site / "config.yaml"), "schedule", "next", "--json"]
    )
    assert result.exit_code == 0, result.output
    first = datetime.fromisoformat(json.loads(result.stdout)["next"][0]["utc"])
    assert first > datetime.now(UTC)  # the real clock: the variable is not read


def test_a_bad_now_is_a_usage_error(sample_site: Path) -> None:
    result = digest(sample_site, "run", clock="monday")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --now 'monday': expected a moment with its offset")


# ------------------------------------------------------------------ install and CLI


def site_config(sample_site: Path, **schedule: object) -> Config:
    data = yaml.safe_load((sample_site / "config.yaml").read_text())
    data["schedule"] = {**data["schedule"], **schedule}
    return parse_config(data, sample_site / "config.yaml")


@pytest.mark.parametrize(
    ("cron", "calendar"),
    [
        ("0 9 * * MON", "Mon *-*-* 09:00:00 Europe/Berlin"),
        ("30 7 * * 1-5", "Mon..Fri *-*-* 07:30:00 Europe/Berlin"),
        ("*/15 6 1 * *", "*-*-01 06:00/15:00 Europe/Berlin"),
        ("0 9 * * SAT,SUN", "Sat,Sun *-*-* 09:00:00 Europe/Berlin"),
        ("@weekly", "Sun *-*-* 00:00:00 Europe/Berlin"),
        ("0 9 1 * MON", None),  # cron ORs the day fields; systemd cannot
        ("0 */10 * * * *", None),  # seconds
        ("0 9 * * 7", "Sun *-*-* 09:00:00 Europe/Berlin"),  # 7 is Sunday too
        ("0 9 * * 5-7", "Fri..Sun *-*-* 09:00:00 Europe/Berlin"),
        # systemd's week starts on Monday and its ranges cannot wrap
        ("0 9 * * 0-5", "Mon..Fri,Sun *-*-* 09:00:00 Europe/Berlin"),
        ("0 9 * * 0-7", "*-*-* 09:00:00 Europe/Berlin"),  # every day
        ("0 9 * * MON-fri", "Mon..Fri *-*-* 09:00:00 Europe/Berlin"),
        ("0 9 * JAN,jul *", "*-01,07-* 09:00:00 Europe/Berlin"),
        ("0 9 * * FRI-MON", None),  # wraps past Sunday
        ("0 9 * * MON#2", None),  # the second Monday: no systemd form
    ],
)
def test_on_calendar_matches_the_cron_or_says_it_cannot(cron: str, calendar: str | None) -> None:
    assert on_calendar(Schedule(cron, BERLIN)) == calendar


def test_systemd_units_call_digest_run_at_the_schedule_and_hourly(sample_site: Path) -> None:
    service, timer = systemd(site_config(sample_site), digest_bin="/srv/.venv/bin/digest")
    assert service.path == "/etc/systemd/system/digest-run.service"
    assert "Type=oneshot\n" in service.text
    assert (
        f"ExecStart=/srv/.venv/bin/digest --config {sample_site / 'config.yaml'} run\n"
        in service.text
    )
    assert "OnCalendar=Mon *-*-* 09:00:00 Europe/Berlin\nOnCalendar=hourly\n" in timer.text
    assert "Persistent=true\n" in timer.text
    _, polling = systemd(site_config(sample_site, cron="0 */10 * * * *", grace="20m"))
    assert "OnCalendar=*:00/10\nPersistent=true\n" in polling.text


def test_crontab_for_a_seconds_schedule_polls_every_minute(sample_site: Path) -> None:
    text = crontab(site_config(sample_site, cron="30 0 9 * * MON")).text
    assert "has a seconds field, which cron cannot express:\n# poll every minute instead.\n" in text
    assert "\n* * * * * " in text


@pytest.mark.parametrize(
    ("grace", "every", "shown"),
    [("90m", 30, "90m"), ("45s", 1, "45s"), ("3m", 1, "3m"), ("2h", 60, "2h")],
)
def test_the_polling_line_fits_in_the_grace(
    sample_site: Path, grace: str, every: int, shown: str
) -> None:
    text = crontab(site_config(sample_site, grace=grace)).text
    assert f"# it polls every {every} minutes, within schedule.grace ({shown}):" in text


def test_the_digest_command_is_named_by_an_absolute_path(
    sample_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = site_config(sample_site)
    monkeypatch.chdir(tmp_path)
    relative = crontab(config, digest_bin="bin/digest").text
    assert f" {tmp_path / 'bin' / 'digest'} --config " in relative
    on_path = tmp_path / "path"
    on_path.mkdir()
    (on_path / "digest-other").write_text("#!/bin/sh\n")
    (on_path / "digest-other").chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path))
    assert (
        f" {on_path / 'digest-other'} --config " in crontab(config, digest_bin="digest-other").text
    )
    missing = crontab(config, digest_bin="no-such-digest").text  # not installed as a command
    assert f" {Path(sys.executable).absolute()} -m digest --config " in missing


def test_crontab_uses_cron_tz_and_offers_a_polling_line(sample_site: Path) -> None:
    text = crontab(site_config(sample_site)).text
    # an absolute path to this digest: cron searches no virtualenv; the sample site has two
    # newsletters, so each crontab entry names its own
    program = str(Path(sys.executable).parent / "digest")
    command = f"{program} --config {sample_site / 'config.yaml'} --newsletter weekly run"
    assert f"CRON_TZ=Europe/Berlin\n0 9 * * MON {command} >> " in text
    assert f"\n# 7 * * * * {command} >> " in text
    assert "polls every 60 minutes, within schedule.grace (6h)" in text


def test_github_workflow_runs_hourly_and_keeps_the_state_in_the_cache(sample_site: Path) -> None:
    text = github_actions(site_config(sample_site)).text
    workflow = yaml.safe_load(text)
    # PyYAML reads the bare key `on` as YAML 1.1 true; GitHub reads it as "on".
    assert workflow[True]["schedule"] == [{"cron": "7 * * * *"}]
    assert workflow["concurrency"] == {"group": "digest-send", "cancel-in-progress": False}
    steps = workflow["jobs"]["run"]["steps"]
    uses = [s.get("uses") for s in steps]
    assert (
        uses.index("actions/cache/restore@v4")
        < [s.get("run") for s in steps].index("digest run")
        < uses.index("actions/cache/save@v4")
    )
    restore = steps[uses.index("actions/cache/restore@v4")]["with"]
    assert restore["path"].split() == [
        "data/feeds",  # each feed's cache and health
        "data/ledger.sqlite",
        "data/runs-links.sqlite",  # the sample site's second newsletter
        "data/runs.sqlite",
        "data/subscribers.sqlite",
    ]
    assert restore["restore-keys"] == "digest-state-"
    assert steps[uses.index("actions/cache/save@v4")]["if"] == "always()"
    assert workflow["jobs"]["run"]["env"]["DIGEST_SECRET"] == "${{ secrets.DIGEST_SECRET }}"


def test_every_schedule_command_has_help_with_examples() -> None:
    for command in (
        ["run"],
        ["schedule"],
        ["schedule", "next"],
        ["schedule", "install"],
        ["schedule", "status"],
    ):
        result = CliRunner().invoke(main, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "Examples:" in result.output, command


def digest(site: Path, *args: str, clock: str | None = None) -> Result:
    """`digest ...` on the site, in this process; ``clock`` is a local time to rehearse at."""
    now = ["--now", clock] if clock else []
    return CliRunner().invoke(main, ["--config", str(site / "config.yaml"), *args, *now])


def import_sample_subscribers(site: Path) -> None:
    config = site_config(site)
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        import_file(
            store,
            site / "content" / "subscribers.json",
            Categories.from_config(config),
            now=datetime(2026, 11, 1, tzinfo=UTC),
            erasure_key=None,
        )


def test_schedule_next_lists_local_and_utc_times(sample_site: Path) -> None:
    clock = "2026-03-20T12:00:00+01:00"
    result = digest(sample_site, "schedule", "next", "-n", "2", "--json", clock=clock)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["next"] == [
        {
            "local": "2026-03-23T09:00:00+01:00",
            "utc": "2026-03-23T08:00:00+00:00",
            "issue_id": "2026-W12",
        },
        {
            "local": "2026-03-30T09:00:00+02:00",
            "utc": "2026-03-30T07:00:00+00:00",
            "issue_id": "2026-W13",
        },
    ]
    text = digest(sample_site, "schedule", "next", "-n", "1", clock=clock).stdout
    assert text == (
        "'0 9 * * MON' in Europe/Berlin:\n"
        "  Mon 2026-03-23 09:00:00 CET   2026-03-23 08:00:00 UTC   sends 2026-W12\n"
    )
    links = digest(sample_site, "--newsletter", "links", "schedule", "next", "-n", "1", clock=clock)
    assert links.stdout.splitlines()[1].endswith("sends links-2026-W12")


def test_digest_run_sends_once_then_reports_nothing_due(sample_site: Path) -> None:
    import_sample_subscribers(sample_site)
    assert digest(sample_site, "schedule", "status").stdout == (
        f"no scheduled runs recorded yet ({sample_site / 'data' / 'runs.sqlite'})\n"
    )
    clock = "2026-11-23T10:00:00+01:00"
    first = digest(sample_site, "--newsletter", "weekly", "run", clock=clock)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("ran 2026-11-23 09:00:00 CET (2026-W47): sent: ")
    sent = len(list((sample_site / "out" / "2026-W47" / "outbox").glob("*.eml")))
    assert sent > 0
    again = digest(sample_site, "run", "--newsletter", "weekly", "--json", clock=clock)
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert (report["action"], report["run"]["outcome"], report["run"]["sent"]) == (
        "done",
        "sent",
        sent,
    )
    status = digest(sample_site, "schedule", "status")
    assert status.stdout.startswith("2026-11-23 09:00 CET  2026-W47   sent ")
    runs = json.loads(digest(sample_site, "schedule", "status", "-n", "1", "--json").stdout)
    assert [(r["issue_id"], r["outcome"], r["sent"]) for r in runs["runs"]] == [
        ("2026-W47", "sent", sent)
    ]


def test_digest_run_with_no_subscribers_fails_and_sends_once_they_are_added(
    sample_site: Path,
) -> None:
    first = digest(sample_site, "--newsletter", "weekly", "run", clock="2026-11-23T10:00:00+01:00")
    assert first.exit_code == 5
    assert "2026-W47: no active subscribers in " in first.stderr
    config = site_config(sample_site)
    with RunStore(config.path(config.schedule.database)) as store:
        assert [(r.issue_id, r.outcome) for r in store.all()] == [("2026-W47", "failed")]
    import_sample_subscribers(sample_site)  # the import that should have come first
    later = digest(sample_site, "--newsletter", "weekly", "run", clock="2026-11-23T11:00:00+01:00")
    assert later.exit_code == 0, later.output
    assert later.stdout.startswith("ran 2026-11-23 09:00:00 CET (2026-W47): sent: ")
    assert list((sample_site / "out" / "2026-W47" / "outbox").glob("*.eml"))


def test_digest_run_refuses_while_another_run_holds_the_lock(sample_site: Path) -> None:
    clock = "2026-11-23T10:30:00+01:00"
    with FileLock(sample_site / "data" / "schedule.lock.run", "digest run"):
        result = digest(sample_site, "run", clock=clock)
        as_json = digest(sample_site, "run", "--json", clock=clock)
    # the sample site's other newsletter runs all the same
    assert result.exit_code == 8
    assert "error: weekly: " in result.stderr
    assert "only one digest run may run at a time" in result.stderr
    assert result.stdout.startswith(
        "links: skipped the run at 2026-11-19 09:00:00 CET (links-2026-W46): 4d 1h late is "
        "past the grace period"
    )
    assert as_json.exit_code == 8
    answer = json.loads(as_json.stdout)["newsletters"]
    assert "only one digest run may run at a time" in answer["weekly"]["error"]
    assert (answer["links"]["action"], answer["links"]["run"]["outcome"]) == ("done", "missed")


def test_digest_schedule_refuses_while_another_scheduler_holds_the_lock(
    sample_site: Path,
) -> None:
    clock = "2026-11-23T10:00:00+01:00"
    with FileLock(sample_site / "data" / "schedule.lock", "digest schedule"):
        alone = digest(sample_site, "--newsletter", "weekly", "schedule", clock=clock)
        both = digest(sample_site, "schedule", clock=clock)
    assert alone.exit_code == 8
    assert "only one digest schedule may run at a time" in alone.stderr
    assert alone.stdout == ""  # refused before it started
    assert both.exit_code == 8  # every newsletter's lock is taken before any starts
    assert "only one digest schedule may run at a time" in both.stderr
    assert both.stdout == ""  # links never started: it was refused with weekly


def test_digest_schedule_runs_the_due_issue_and_stops_on_sigterm(sample_site: Path) -> None:
    import_sample_subscribers(sample_site)
    config = site_config(sample_site)
    landed: list[int] = []
    # a SIGTERM that came after the command put its handler back must not end pytest
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: landed.append(signum))
    finished = threading.Event()

    def stop_after_the_first_run() -> None:
        deadline = time.monotonic() + 120
        while not finished.is_set() and time.monotonic() < deadline:
            if (config.path(config.schedule.database)).exists():
                with RunStore(config.path(config.schedule.database)) as store:
                    if any(r.outcome == "sent" for r in store.all()):
                        os.kill(os.getpid(), signal.SIGTERM)
                        return
            finished.wait(0.05)

    stopper = threading.Thread(target=stop_after_the_first_run)
    stopper.start()
    try:
        result = digest(
            sample_site, "--newsletter", "weekly", "schedule", clock="2026-11-23T09:30:00+01:00"
        )
    finally:
        finished.set()
        stopper.join()
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "digest schedule: '0 9 * * MON' in Europe/Berlin, grace 6h 0m; "
        "next run 2026-11-30 09:00:00 CET"
    )
    assert lines[1].startswith("[2026-11-23 09:")
    assert "ran 2026-11-23 09:00:00 CET (2026-W47): sent: " in lines[1]
    assert lines[-1] == "digest schedule: stopped"
    assert "SIGTERM: stopping at the next safe point" in result.stderr
    assert landed == []  # the command's own handler took it


def test_schedule_install_needs_a_kind_and_prints_each(sample_site: Path) -> None:
    missing = digest(sample_site, "schedule", "install")
    assert missing.exit_code == 2
    assert "choose one of --cron, --systemd or --github-actions" in missing.stderr
    cron = digest(sample_site, "schedule", "install", "--cron", "--digest-bin", "/srv/digest")
    assert cron.stdout.count("/srv/digest --config ") == 4  # each newsletter: line + polling
    one = digest(sample_site, "--newsletter", "links", "schedule", "install", "--cron")
    assert "--newsletter links run" in one.stdout and "--newsletter weekly" not in one.stdout
    units = digest(sample_site, "schedule", "install", "--systemd", "--digest-bin", "/srv/d")
    assert "ExecStart=/srv/d --config " in units.stdout
    assert "OnCalendar=Mon *-*-* 09:00:00 Europe/Berlin\n" in units.stdout
    workflow = yaml.safe_load(digest(sample_site, "schedule", "install", "--github-actions").stdout)
    assert workflow[True]["schedule"] == [{"cron": "7 * * * *"}]


def test_an_invalid_cron_stops_every_command_with_exit_3(sample_site: Path) -> None:
    path = sample_site / "config.yaml"
    path.write_text(path.read_text().replace('cron: "0 9 * * MON"', 'cron: "0 9 * MON"'))
    result = digest(sample_site, "run")
    assert result.exit_code == 3
    assert "schedule.cron: '0 9 * MON' has 4 fields" in result.stderr


def test_a_missed_run_of_another_newsletter_suggests_a_command_that_works(
    sample_site: Path,
) -> None:
    missed = digest(sample_site, "--newsletter", "links", "run", clock="2026-11-23T10:30:00+01:00")
    assert missed.exit_code == 0, missed.output
    hint = "send it by hand with `digest --newsletter links send --week 2026-W46` if it"
    assert hint in missed.stdout
    suggested = ["--newsletter", "links", "send", "--week", "2026-W46", "--dry-run"]
    tried = digest(sample_site, *suggested)  # the right newsletter and week: only empty
    assert tried.exit_code == 5, tried.output
    assert tried.stderr == (
        "error: links-2026-W46 (2026-11-09 to 2026-11-15, Europe/Berlin) has no posts to send; "
        "no email was built\n"
    )


def test_the_suggested_commands_name_the_newsletter_and_its_week() -> None:
    from digest.schedule.runs import issue_command

    assert issue_command("2026-W47", "", "send") == "digest send --week 2026-W47"
    assert issue_command("links-2026-W48", "links-", "status") == (
        "digest --newsletter links status --week 2026-W48"
    )
    assert issue_command("links-2026-W48", "links-", "send", "--resend-uncertain") == (
        "digest --newsletter links send --week 2026-W48 --resend-uncertain"
    )
