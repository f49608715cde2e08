"""`digest send` and `digest status`."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

from digest.cli._app import (
    State,
    emit_json,
    isatty,
    json_option,
    main,
    now,
    pass_state,
    say,
    window_options,
)
from digest.cli.deliverability import dry_run_checks, echo_deliverability
from digest.content.select import resolve_window

if TYPE_CHECKING:  # imported by the commands that use it: `digest status` composes nothing
    from digest.config import Config
    from digest.delivery.deliverability import DeliverabilityReport
    from digest.delivery.send_report import SendReport


class _Progress:
    """Progress on stderr: a bar with rate and ETA on a terminal, else a line every
    ``every`` seconds and one when it closes (so a log shows the run is alive and how fast
    it goes, without a line per message). ``done`` never shows above ``total``."""

    def __init__(
        self,
        tty: bool,
        every: float,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tty = tty
        self.every = every
        self.enabled = enabled
        self.clock = clock
        self.bar: Any = None
        self.started = clock()
        self.last_line = self.started
        self.done = 0
        self.total = 0
        self.shown = 0  # ``done`` as the last line showed it

    def __call__(self, done: int, total: int) -> None:
        self.total = max(total, 0)
        done = min(done, self.total)
        if not self.enabled:
            return
        if self.tty:
            if self.bar is None:
                self.bar = click.progressbar(
                    length=total,
                    label="sending",
                    show_eta=True,
                    show_percent=True,
                    item_show_func=lambda _: self.rate_text(),
                    file=sys.stderr,
                )
                self.bar.__enter__()
            self.bar.length = max(self.bar.length or 0, total)
            self.bar.update(done - self.done, current_item=done)
            self.done = done
            return
        self.done = done
        moment = self.clock()
        if moment - self.last_line >= self.every:
            self.last_line = moment
            self.line()

    def line(self) -> None:
        self.shown = self.done
        eta = self.eta(self.total)
        click.echo(f"sending: {self.done:,} of {self.total:,} ({self.rate_text()}{eta})", err=True)

    def rate_text(self) -> str:
        elapsed = self.clock() - self.started
        return f"{self.done / elapsed:,.0f} msg/s" if elapsed > 0 else ""

    def eta(self, total: int) -> str:
        elapsed = self.clock() - self.started
        if not self.done or elapsed <= 0 or self.done >= total:
            return ""
        left = (total - self.done) / (self.done / elapsed)
        return f", about {left:,.0f}s left"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        elif self.enabled and not self.tty and self.done != self.shown:
            self.line()  # where it ended, once


class _Stopper:
    """SIGINT/SIGTERM: the first asks the send to stop at its next safe point; the second
    stops at once (the ledger is consistent either way: see digest.delivery.send)."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        name = signal.Signals(signum).name
        click.echo(
            f"\n{name}: stopping after the messages in flight (press Ctrl-C again to stop at once)",
            err=True,
        )

    def __enter__(self) -> _Stopper:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        for signum, handler in self.previous.items():
            if self.requested and kind is not None:
                # stopping (exit 6): a further signal must not kill the process on its
                # way out with a traceback or exit -2
                signal.signal(signum, signal.SIG_IGN)
            else:
                signal.signal(signum, handler)


def _summary(report: SendReport) -> None:
    if report.dry_run:
        click.secho(f"{report.issue_id}: dry run, nothing sent", bold=True)
        click.echo(f"  would send {report.attempted} messages via {report.provider}")
        for variant, count in sorted(report.variants.items()):
            click.echo(f"    {count:>7}  {variant}")
        if report.skipped:
            click.echo(f"  {report.skipped} subscribers have no posts in their sections")
        for item in report.sample:
            if "subject" in item:
                click.echo(f"  subject: {item['subject']}")
            else:
                sections = ", ".join(item["categories"]) or "every section"
                click.echo(f"  e.g. {item['email']} ({sections})")
        for name in report.missing_secrets:
            click.secho(f"  not set: {name} (export it before sending)", fg="red")
        if not report.attempted and not report.skipped:
            click.secho(
                "  no active subscriber is waiting for this issue "
                "(add some with: digest subscribers import FILE)",
                fg="yellow",
            )
        return
    ledger = report.ledger
    click.secho(
        f"{report.issue_id} via {report.provider}: {report.sent} sent, "
        f"{report.failed_permanent} failed, {report.uncertain} uncertain, "
        f"{report.skipped} skipped this run ({report.rate:,.0f} msg/s)",
        bold=True,
    )
    click.echo("  ledger: " + ", ".join(f"{k} {v}" for k, v in ledger.items() if v))
    if report.settled_after_crash:
        click.echo(
            "  settled from an interrupted run: "
            + ", ".join(f"{k} {v}" for k, v in report.settled_after_crash.items())
        )
    if report.reconciled:
        click.echo(
            "  uncertain messages settled: "
            + ", ".join(f"{k} {v}" for k, v in report.reconciled.items())
        )
    held = ledger.get("uncertain", 0)
    if held:
        click.secho(
            f"  {held} uncertain: they may or may not have reached {report.provider} "
            "(no answer came) and are not counted as sent; "
            "`digest send --resend-uncertain` sends them again (see docs/sending.md)",
            fg="yellow",
        )
        for item in report.uncertain_held[:5]:
            click.secho(f"    {item['email']}: {item['error']}", fg="yellow")
    if report.unconfirmed:
        click.secho(
            f"  {report.unconfirmed} counted as sent without the provider's reply "
            "(by an older version; see docs/sending.md)",
            fg="yellow",
        )
    for failure in report.failures[:10]:
        click.secho(f"  {failure['state']}: {failure['email']}: {failure['error']}", fg="red")
    if report.stopped:
        click.secho(f"  {report.stopped}", fg="red")
    elif report.limited:
        click.echo("  stopped at --limit; run the same command again to go on")
    elif not report.complete:
        click.echo("  not finished; run the same command again to resume")
    click.echo(f"  report: {report.report_path}")


@main.command("send")
@window_options
@click.option("--dry-run", is_flag=True, help="Count and show a sample; send nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N messages this run.")
@click.option(
    "--force",
    is_flag=True,
    help="Send an issue under limits.min_posts, or again one already sent in full.",
)
@click.option(
    "--new-subscribers",
    is_flag=True,
    help="Send an issue that went out already to those who joined since (only them).",
)
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Send again messages left uncertain (no answer came; some may arrive twice).",
)
@click.option("--test", "test_to", metavar="EMAIL", help="Send one [TEST] message; no ledger.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Sender processes sharing the issue (rows are leased; more hosts may join).",
)
@click.option(
    "--skip-checks",
    is_flag=True,
    help="Send even when a pre-send check fails (Gmail clipping, no List-Unsubscribe, an "
    "email check that fails the build).",
)
@click.option(
    "--offline",
    is_flag=True,
    help="With --dry-run: do not ask the DNS, the provider or the unsubscribe page.",
)
@json_option
@pass_state
def send_command(
    state: State,
    week: str | None,
    since: date | None,
    until: date | None,
    dry_run: bool,
    limit: int | None,
    force: bool,
    new_subscribers: bool,
    resend_uncertain: bool,
    test_to: str | None,
    workers: int,
    skip_checks: bool,
    offline: bool,
    as_json: bool,
) -> None:
    """Send the issue to every active subscriber, exactly once.

    Re-running the same command after a crash, Ctrl-C or a provider error resumes where
    it stopped; it never sends twice to someone whose message was accepted. Ctrl-C (or
    SIGTERM) stops after the messages in flight (exit 6); a second Ctrl-C stops at once.

    Before anything is recorded, the pre-send checks run on the issue (its size against
    Gmail's clipping, List-Unsubscribe, the email checks that fail a build); a failed one
    refuses the send (exit 1) unless --skip-checks. --dry-run also checks the From
    domain's DNS, asks the provider about the domain and DKIM, and fetches the
    List-Unsubscribe page; it exits 1 when a finding blocks (--offline: no network).

    \b
    Examples:
      digest send --week 2026-W47 --dry-run
      digest send --week 2026-W47 --test me@example.com
      digest send --week 2026-W47 --limit 100
      digest send --week 2026-W47 --workers 4
      digest send --week 2026-W47 --new-subscribers
      digest send --week 2026-W47 --json
    """
    config = state.config
    if test_to:
        _send_test(config, test_to, week, as_json)
        return
    from digest.delivery.deliverability import CheckedComposer, gate_issue
    from digest.delivery.send import send_issue
    from digest.delivery.workers import send_in_processes

    if workers > 1 and (dry_run or limit is not None or new_subscribers):
        raise click.UsageError(
            "--workers cannot be combined with --dry-run, --limit or --new-subscribers"
        )
    progress = _Progress(
        tty=isatty() and not as_json, every=config.send.progress_every, enabled=not dry_run
    )
    composer = CheckedComposer(gated=not (dry_run or skip_checks))
    try:
        with _Stopper() as stopper:
            if workers > 1:
                if not skip_checks:
                    gate_issue(config, now=now(), week=week, since=since, until=until)
                report = send_in_processes(
                    config, workers=workers, now=now(), week=week, since=since, until=until,
                    force=force, resend_uncertain=resend_uncertain, progress=progress,
                )  # fmt: skip
            else:
                report = send_issue(
                    config, now=now(), week=week, since=since, until=until, dry_run=dry_run,
                    limit=limit, force=force, new_subscribers=new_subscribers,
                    resend_uncertain=resend_uncertain, progress=progress, stop=stopper,
                    composer=composer,
                )  # fmt: skip
    except KeyboardInterrupt:
        _stopped_at_once(progress, as_json)
    finally:
        progress.close()
    checked = None
    if dry_run and composer.built is not None:
        checked = dry_run_checks(config, composer.built, offline=offline)
    _report(report, checked, as_json)


def _send_test(config: Config, test_to: str, week: str | None, as_json: bool) -> None:
    """``--test ADDRESS``: one message, recorded nowhere; exit 1 unless it was sent."""
    from digest.delivery.send import send_test

    result = send_test(config, test_to, now=now(), week=week)
    if as_json:
        emit_json(result.__dict__)
    else:
        click.echo(f"test message to {test_to}: {result.state} {result.reason or ''}".rstrip())
    if result.state != "sent":
        raise click.exceptions.Exit(1)


def _stopped_at_once(progress: _Progress, as_json: bool) -> NoReturn:
    """The second Ctrl-C: what was recorded is committed; batches that were in flight stay
    `sending`, which the next run settles as it settles a crash (exit 6)."""
    progress.close()
    message = (
        f"stopped at once after {progress.done} of {max(progress.total, progress.done)}; "
        "run the same command to resume"
    )
    click.secho(f"error: {message}", fg="red", err=True)
    if as_json:
        emit_json({"error": message, "exit": 6})
    raise click.exceptions.Exit(6) from None


def _report(report: SendReport, checked: DeliverabilityReport | None, as_json: bool) -> None:
    """Print the run's report (and a dry run's deliverability findings); exit as they say."""
    if as_json:
        data = report.as_dict()
        if checked is not None:
            data["deliverability"] = checked.as_dict()
        emit_json(data)
    else:
        _summary(report)
        if checked is not None:
            echo_deliverability(checked)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)
    if checked is not None and not checked.ok:
        raise click.exceptions.Exit(1)


@main.command("status")
@window_options
@json_option
@pass_state
def status_command(
    state: State, week: str | None, since: date | None, until: date | None, as_json: bool
) -> None:
    """Show the send ledger's counts for an issue.

    \b
    Examples:
      digest status --week 2026-W47
      digest status --json
    """
    config = state.config
    window = resolve_window(config, now(), week=week, since=since, until=until)
    issue_id = window.issue_id
    from digest.delivery.send_report import issue_status
    from digest.delivery.wave_status import wave_status

    data = issue_status(config, issue_id)
    waves = wave_status(config, window, now())
    if waves:
        data["waves"] = waves
    if data["info"] is None:
        from digest.schedule.skips import skipped_run

        if (skipped := skipped_run(config, issue_id)) is not None:
            data["skipped"] = skipped
    counts, info = data["counts"], data["info"]
    unconfirmed, joined = data["unconfirmed"], data["new_subscribers"]
    uncertain, failures = data["uncertain"], data["failures"]
    del data["info"]
    if as_json:
        emit_json(data)
        return
    if info is None and "skipped" in data:
        _echo_skipped(issue_id, data["skipped"])
    elif info is None:
        click.echo(f"{issue_id}: not sent yet")
    if info is None:
        _echo_waves(waves)
        return
    done = "complete" if data["complete"] else "not complete"
    runs = info["runs"]
    click.secho(f"{issue_id}: {done} ({runs} run{'s' if runs != 1 else ''})", bold=True)
    for name, count in counts.items():
        click.echo(f"  {name:<17}{count:>8}")
    if unconfirmed:
        click.echo(f"  {unconfirmed} of the sent were counted without the provider's reply")
    if counts.get("uncertain"):
        click.secho(
            f"  {counts['uncertain']} uncertain (no answer came; not counted as sent): "
            "`digest send --resend-uncertain` sends them again",
            fg="yellow",
        )
        click.secho(f"  what settles them: {data['uncertain_settled_by']}", fg="yellow")
        for item in uncertain[:10]:
            click.secho(f"    {item['email']}: {item['error']}", fg="yellow")
        if len(uncertain) > 10:
            click.secho(f"    and {len(uncertain) - 10} more (--json names every one)", fg="yellow")
    if joined and not waves:  # with waves, readers not yet due have no row either
        click.echo(
            f"  {joined} subscriber{'s' if joined != 1 else ''} joined since it was sent: "
            "`digest send --new-subscribers` sends them this issue"
        )
    for failure in failures:
        click.secho(f"  {failure['state']}: {failure['email']}: {failure['error']}", fg="red")
    from digest.delivery.click_report import complaint_warning

    warning = complaint_warning(config, issue_id, now=now())
    if warning:
        click.secho(f"  {warning}", fg="yellow")
    _echo_waves(waves)


def _echo_skipped(issue_id: str, skipped: dict[str, str]) -> None:
    """A period the schedule did not send, its reason, and where its posts go."""
    say(f"{issue_id}: not sent; the schedule skipped it ({skipped['finished_at']}): "
        f"{skipped['detail']}")  # fmt: skip
    if skipped["carried"] == "yes":
        click.echo("  limits.carry_over: its posts go out with the next issue")
    else:
        click.echo("  limits.carry_over is off: its posts are not sent later")


def _echo_waves(waves: list[dict[str, Any]]) -> None:
    """The issue's local-time waves: sent, due, and to come."""
    if waves:
        click.echo("  waves (schedule.local_time):")
    for wave in waves:
        when = datetime.fromisoformat(wave["due"]).strftime("%Y-%m-%d %H:%M UTC")
        click.echo(
            f"    {when}  {wave['sent']} of {wave['readers']} sent  {wave['state']:<8}"
            f"{', '.join(wave['zones'])}"
        )
