"""`digest send` and `digest status`."""

from __future__ import annotations

import time
from datetime import date
from typing import TYPE_CHECKING, Any, cast

import click

from digest.cli._app import (
    State,
    emit_json,
    isatty,
    json_option,
    main,
    now,
    pass_state,
    window_options,
)
from digest.content.select import resolve_window
from digest.delivery.ledger import Ledger

if TYPE_CHECKING:  # imported by `digest send` only: `digest status` needs no email stack
    from digest.delivery.send import SendReport


class _Bar:
    """A progress bar with rate and ETA on a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.started = time.perf_counter()
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(
                length=total,
                label="sending",
                show_eta=True,
                show_percent=True,
                item_show_func=lambda _: self.rate_text(),
                file=cast(Any, click.get_text_stream("stderr")),  # type: ignore[operator]
            )
            self.bar.__enter__()
        self.bar.update(done - self.done, current_item=done)
        self.done = done

    def rate_text(self) -> str:
        elapsed = time.perf_counter() - self.started
        return f"{self.done / elapsed:,.0f} msg/s" if elapsed > 0 else ""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


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
        f"{report.failed_permanent} failed, {report.skipped} skipped this run "
        f"({report.rate:,.0f} msg/s)",
        bold=True,
    )
    click.echo("  ledger: " + ", ".join(f"{k} {v}" for k, v in ledger.items() if v))
    if report.settled_after_crash:
        click.echo(
            "  settled from an interrupted run: "
            + ", ".join(f"{k} {v}" for k, v in report.settled_after_crash.items())
        )
    if report.unconfirmed:
        click.secho(
            f"  {report.unconfirmed} counted as sent without the provider's reply "
            "(see docs/sending.md)",
            fg="yellow",
        )
    for failure in report.failures[:10]:
        click.secho(f"  {failure['state']}: {failure['email']}: {failure['error']}", fg="red")
    if report.limited:
        click.echo("  stopped at --limit; run the same command again to go on")
    elif not report.complete:
        click.echo("  not finished; run the same command again to resume")
    click.echo(f"  report: {report.report_path}")


@main.command("send")
@window_options
@click.option("--dry-run", is_flag=True, help="Count and show a sample; send nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N messages this run.")
@click.option("--force", is_flag=True, help="Send again an issue that was already sent in full.")
@click.option("--test", "test_to", metavar="EMAIL", help="Send one [TEST] message; no ledger.")
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
    test_to: str | None,
    as_json: bool,
) -> None:
    """Send the issue to every active subscriber, exactly once.

    Re-running the same command after a crash or Ctrl-C resumes where it stopped;
    it never sends twice to someone whose message was accepted.

    \b
    Examples:
      digest send --week 2026-W47 --dry-run
      digest send --week 2026-W47 --test me@example.com
      digest send --week 2026-W47 --limit 100
      digest send --week 2026-W47 --json
    """
    config = state.config
    if test_to:
        from digest.delivery.send import send_test

        result = send_test(config, test_to, now=now(), week=week)
        if as_json:
            emit_json(result.__dict__)
        else:
            click.echo(f"test message to {test_to}: {result.state} {result.reason or ''}".rstrip())
        if result.state != "sent":
            raise click.exceptions.Exit(1)
        return
    from digest.delivery.send import send_issue

    bar = _Bar(enabled=isatty() and not as_json)
    try:
        report = send_issue(
            config,
            now=now(),
            week=week,
            since=since,
            until=until,
            dry_run=dry_run,
            limit=limit,
            force=force,
            progress=bar,
        )
    finally:
        bar.close()
    if as_json:
        emit_json(report.as_dict())
    else:
        _summary(report)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


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
    issue_id = resolve_window(config, now(), week=week, since=since, until=until).issue_id
    with Ledger(config.path(config.ledger.database)) as ledger:
        counts = ledger.counts(issue_id)
        info = ledger.issue(issue_id)
        unconfirmed = ledger.unconfirmed(issue_id)
        failures = ledger.failures(issue_id, limit=20)
    data = {
        "issue_id": issue_id,
        "counts": counts,
        "unconfirmed": unconfirmed,
        "started_at": info["started_at"] if info else None,
        "completed_at": info["completed_at"] if info else None,
        "runs": info["runs"] if info else 0,
        "failures": [{"email": f.email, "state": f.state, "error": f.last_error} for f in failures],
    }
    if as_json:
        emit_json(data)
        return
    if info is None:
        click.echo(f"{issue_id}: not sent yet")
        return
    done = "complete" if info["completed_at"] else "not complete"
    click.secho(f"{issue_id}: {done} ({info['runs']} runs)", bold=True)
    for name, count in counts.items():
        click.echo(f"  {name:<17}{count:>8}")
    if unconfirmed:
        click.echo(f"  {unconfirmed} of the sent were counted without the provider's reply")
    for failure in failures:
        click.secho(f"  {failure.state}: {failure.email}: {failure.last_error}", fg="red")
