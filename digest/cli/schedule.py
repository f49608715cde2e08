"""`digest run` (the idempotent job) and `digest schedule` (the long-running scheduler)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click

from digest.cli._app import State, emit_json, json_option, main, newsletter_option, pass_state
from digest.schedule.install import crontab, github_actions, systemd
from digest.schedule.local import WaveSchedule
from digest.schedule.runs import Run, RunStore
from digest.schedule.scheduler import (
    Policy,
    RunReport,
    Schedule,
    clock_at,
    describe_duration,
    issue_window,
    run_forever_each,
    run_newsletters,
)
from digest.store.database import locate

F = TypeVar("F", bound=Callable[..., Any])


def now_option(func: F) -> F:
    """--now MOMENT: run as if it were then (rehearse a schedule)."""
    return click.option(
        "--now",
        "moment",
        metavar="MOMENT",
        help="Act as if it were MOMENT, e.g. 2026-11-23T09:30:00+01:00 (a rehearsal: "
        "what would be due, what would be sent). START@UNIX_TIME[xSPEED] also runs the "
        "clock SPEED times faster from that Unix time, shared by every process given it.",
    )(func)


def workers_option(func: F) -> F:
    """--workers N: send each due issue (each wave) from N processes, as `send --workers`."""
    return click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Sender processes for each due issue or wave (rows are leased from the ledger, "
        "as with `digest send --workers`).",
    )(func)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM or SIGINT sets the event (the send stops at its next safe point); a second
    one ends the process at once."""
    stop = threading.Event()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        stop.set()
        click.echo(
            f"{signal.Signals(signum).name}: stopping at the next safe point "
            "(send the signal again to stop now)",
            err=True,
        )

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _run_json(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "occurrence": run.occurrence.isoformat(),
        "issue_id": run.issue_id,
        "outcome": run.outcome,
        "attempts": run.attempts,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "sent": run.sent,
        "failed": run.failed,
        "detail": run.detail,
    }


def _report_json(report: RunReport) -> dict[str, Any]:
    return {
        "action": report.action,
        "now": report.now.isoformat(),
        "occurrence": report.occurrence.isoformat() if report.occurrence else None,
        "issue_id": report.issue_id,
        "resumed": report.resumed,
        "skipped_earlier": report.skipped_earlier,
        "next_occurrence": report.next_occurrence.isoformat(),
        "run": _run_json(report.run),
        "message": report.message,
    }


@main.command("run")
@newsletter_option
@now_option
@workers_option
@json_option
@pass_state
def run_command(state: State, moment: str | None, workers: int, as_json: bool) -> None:
    """Send the issue that is due now, if any. Safe to call at any time, as often as you like.

    Works out the latest scheduled time (schedule.cron in schedule.timezone) at or before
    now; if it has not run yet and is no older than schedule.grace, sends the last complete
    week before it through the send ledger, then records the run. It does nothing when
    nothing is due or the issue has gone out, and resumes a send that was interrupted.
    Call it from cron or a systemd timer (see `digest schedule install`).

    \b
    Examples:
      digest run                 # from cron, e.g. hourly
      digest run --json          # what it did, for scripts
      digest run --newsletter links
      digest run --now 2026-11-23T09:30:00+01:00   # rehearse: what would go out then
      digest run --workers 4     # send from four processes

    With several newsletters (newsletters: in config), each is run on its own schedule;
    --newsletter runs one. One newsletter's failure does not stop the others.

    Exit codes: 0 done or nothing due; 5 an empty week with schedule.skip_empty off;
    6 stopped by a signal (the next run resumes); 8 another run holds the lock.
    """
    whole = state.whole_config
    names = [state.config.newsletter_name] if state.newsletter else whole.newsletter_names
    with stop_on_signals() as stop:
        results = run_newsletters(whole, names, clock_at(moment), stop=stop, workers=workers)
    if len(results) == 1 and results[0].report is not None:
        report = results[0].report
        if as_json:
            emit_json(_report_json(report))
        else:
            click.echo(report.message)
        return
    if as_json:
        emit_json(
            {
                "newsletters": {
                    r.newsletter: _report_json(r.report) if r.report else {"error": str(r.error)}
                    for r in results
                }
            }
        )
    else:
        for result in results:
            if result.report is not None:
                click.echo(f"{result.newsletter}: {result.report.message}")
            else:
                click.secho(f"error: {result.newsletter}: {result.error}", fg="red", err=True)
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise click.exceptions.Exit(errors[0].exit_code)


def _scheduler_line(report: RunReport, prefix: str = "") -> None:
    stamp = report.now.astimezone(report.next_occurrence.tzinfo).strftime("%Y-%m-%d %H:%M:%S")
    click.echo(f"[{stamp}] {prefix}{report.message}")


@main.group("schedule", invoke_without_command=True)
@newsletter_option
@now_option
@workers_option
@pass_state
@click.pass_context
def schedule_group(ctx: click.Context, state: State, moment: str | None, workers: int) -> None:
    """Run digest on its schedule: `digest schedule` alone is the long-running scheduler.

    The scheduler takes a lock (schedule.lock, or one in the database with database:
    set, shared by every host) so only one runs at a time, catches up an
    occurrence missed by up to schedule.grace when it starts (older ones are skipped with
    a log line), then sleeps until each next occurrence and does what `digest run` does.
    SIGTERM or Ctrl-C lets a send in progress stop at a safe point, then exits; the next
    start resumes it.

    Prefer cron or a systemd timer calling `digest run`? `digest schedule install`
    prints the lines.

    \b
    Examples:
      digest schedule                    # run in the foreground until stopped
      digest schedule --workers 4        # each send from four processes
      digest schedule next -n 5          # the next five send times
      digest schedule install --systemd  # a service + timer calling `digest run`
      digest schedule status             # what recent runs did
      digest schedule --now 2026-11-16T08:59:00+01:00@$(date +%s)x60480
                                         # rehearse: a week every 10 seconds
    """
    if ctx.invoked_subcommand is not None:
        return

    whole = state.whole_config
    names = [state.config.newsletter_name] if state.newsletter else whole.newsletter_names
    prefixes = {name: f"{name}: " if len(names) > 1 else "" for name in names}

    def started(name: str, policy: Policy, first: datetime) -> None:
        schedule = policy.schedule
        click.echo(
            f"digest schedule: {prefixes[name]}{schedule.cron!r} in {schedule.tz.key}, grace "
            f"{describe_duration(policy.grace)}; next run "
            f"{first.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        )

    def reported(name: str, report: RunReport) -> None:
        _scheduler_line(report, prefixes[name])

    with stop_on_signals() as stop:
        run_forever_each(
            whole,
            names,
            clock_at(moment),
            stop=stop,
            on_start=started,
            on_report=reported,
            workers=workers,
        )
    click.echo("digest schedule: stopped")


@schedule_group.command("next")
@click.option("-n", "count", default=5, show_default=True, help="How many times to list.")
@now_option
@json_option
@pass_state
def next_command(state: State, count: int, moment: str | None, as_json: bool) -> None:
    """The next send times, in the schedule's timezone and in UTC, with the issue each sends.

    With schedule.local_time, each time is a wave: the zones it reaches are listed with
    their local time.

    \b
    Examples:
      digest schedule next
      digest schedule next -n 10 --json
      digest schedule next --now 2026-03-28T12:00:00+01:00   # around a DST change
    """
    config = state.config
    policy = Policy.from_config(config)
    schedule = policy.schedule
    times = schedule.upcoming(clock_at(moment).now(), max(count, 0))
    waves = schedule if isinstance(schedule, WaveSchedule) else None
    rows = [
        {
            "local": t.isoformat(),
            "utc": t.astimezone(timezone.utc).isoformat(),
            "issue_id": _issue(policy, t),
            **({"zones": waves.zones_at(t)} if waves else {}),
        }
        for t in times
    ]
    if as_json:
        emit_json({"cron": schedule.cron, "timezone": schedule.tz.key, "next": rows})
        return
    click.echo(f"{schedule.cron!r} in {schedule.tz.key}:")
    for t, row in zip(times, rows, strict=True):
        utc = t.astimezone(timezone.utc)
        click.echo(
            f"  {t.strftime('%a %Y-%m-%d %H:%M:%S %Z')}   "
            f"{utc.strftime('%Y-%m-%d %H:%M:%S UTC')}   sends {row['issue_id']}"
        )
        for zone in row.get("zones", ()):
            local = t.astimezone(ZoneInfo(zone))
            click.echo(f"      {zone}: {local.strftime('%a %Y-%m-%d %H:%M %Z')}")


def _issue(policy: Policy, moment: datetime) -> str:
    window = issue_window(moment, policy.issue_tz, policy.week_start, policy.period)
    return policy.issue_prefix + window.issue_id


@schedule_group.command("install")
@newsletter_option
@click.option("--cron", "kind", flag_value="cron", help="A crontab entry.")
@click.option("--systemd", "kind", flag_value="systemd", help="A systemd service and timer.")
@click.option(
    "--github-actions", "kind", flag_value="github-actions", help="A GitHub Actions workflow."
)
@click.option(
    "--digest-bin",
    default=None,
    metavar="PATH",
    help="The digest command to call [default: this digest, as an absolute path].",
)
@pass_state
def install_command(state: State, kind: str | None, digest_bin: str | None) -> None:
    """Print what runs `digest run` on the schedule from cron, systemd or GitHub Actions.

    Nothing is installed: the text goes to stdout for you to review and put in place.

    \b
    Examples:
      digest schedule install --cron | crontab -      # replaces your crontab!
      digest schedule install --systemd
      digest schedule install --github-actions > .github/workflows/digest.yml
    """
    if kind is None:
        raise click.UsageError("choose one of --cron, --systemd or --github-actions")
    config = state.config
    if kind == "cron":
        whole = state.whole_config
        names = [config.newsletter_name] if state.newsletter else whole.newsletter_names
        for name in names:  # one entry per newsletter, each on its own schedule
            one = whole.for_newsletter(name)
            click.echo(crontab(one, digest_bin=digest_bin).text, nl=False)
    elif kind == "systemd":
        files = systemd(config, digest_bin=digest_bin)
        click.echo("\n".join(f.text for f in files), nl=False)
    else:
        click.echo(github_actions(config).text, nl=False)


@schedule_group.command("status")
@click.option("-n", "count", default=10, show_default=True, help="How many runs to list.")
@json_option
@pass_state
def status_command(state: State, count: int, as_json: bool) -> None:
    """What the most recent scheduled runs did (from schedule.database).

    \b
    Examples:
      digest schedule status
      digest schedule status -n 50 --json
    """
    config = state.config
    path = locate(config, config.schedule.database)
    runs: list[Run] = []
    if not isinstance(path, Path) or path.exists():
        with RunStore(path, config.issue_prefix) as store:
            runs = store.all()[-count:] if count > 0 else []
    if as_json:
        emit_json({"database": str(path), "runs": [_run_json(r) for r in runs]})
        return
    if not runs:
        click.echo(f"no scheduled runs recorded yet ({path})")
        return
    tz = Schedule.from_config(config).tz
    for run in runs:
        when = run.occurrence.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
        extra = f"  {run.detail}" if run.detail else ""
        click.echo(f"{when}  {run.issue_id:<10} {run.outcome:<13}{extra}")
