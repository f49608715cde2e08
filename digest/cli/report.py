"""`digest report`: what readers clicked, per post, section and issue, beside each issue's
delivered, bounce and complaint rates."""

from __future__ import annotations

import click

from digest.cli._app import State, emit_json, json_option, main, now, pass_state, say


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}%"


@main.command("report")
@click.option("--issue", "issue_id", default=None, help="Only this issue (e.g. 2026-W47).")
@click.option(
    "--inactive",
    type=click.IntRange(1, 520),
    default=None,
    metavar="N",
    help="List the consenting readers with no click in their last N delivered issues.",
)
@json_option
@pass_state
def report_command(state: State, issue_id: str | None, inactive: int | None, as_json: bool) -> None:
    """Show clicks per post, per section and per issue, with delivery outcomes.

    Clicks are counted through `digest serve` when analytics.clicks is on; scanners'
    fetches are counted apart (filtered). Complaint rates are held against Gmail's 0.3%.

    \b
    Examples:
      digest report
      digest report --issue 2026-W47 --json
      digest report --inactive 4
    """
    if inactive is not None:
        _inactive(state, inactive, as_json)
        return
    from digest.delivery.click_report import OPENS_NOTE, click_report

    report = click_report(state.config, now=now(), issue_id=issue_id)
    if as_json:
        emit_json(report.as_dict())
        return
    if report.mode == "off":
        click.echo("analytics.clicks is off: no clicks are counted (see docs/analytics.md)")
    if not report.issues:
        click.echo(
            f"no issue {issue_id} in the ledger or the click store" if issue_id else "no issues yet"
        )
        return
    if report.opens:
        click.echo(OPENS_NOTE)
    for issue in report.issues:
        click.secho(f"{issue.issue_id}", bold=True)
        click.echo(
            f"  delivered {issue.delivered}, clicks {issue.kept} "
            f"({_percent(issue.click_rate)} of delivered), filtered {issue.filtered}"
        )
        if report.opens or issue.opens or issue.machine_opens:
            click.echo(f"  opens (unreliable) {issue.opens}, machine {issue.machine_opens}")
        level = issue.complaint_level
        click.secho(
            f"  bounces {issue.bounced} ({_percent(issue.bounce_rate)}), complaints "
            f"{issue.complained} ({_percent(issue.complaint_rate)}; Gmail's line is 0.30%)",
            fg={"ok": None, "warn": "yellow", "alarm": "red"}[level],
        )
        for post in issue.posts:
            if issue_id is not None or post.kept or post.filtered:
                title = post.title or post.post_id or f"post {post.place}"
                say(f"    {post.kept:>6} kept {post.filtered:>6} filtered  {title[:60]}")
        for section, kept in issue.sections.items():
            if kept:
                say(f"  section {section or '(none)'}: {kept}")


def _inactive(state: State, issues: int, as_json: bool) -> None:
    """Readers who agreed to per-reader engagement and stopped clicking."""
    from digest.delivery.engagement import inactive_readers

    report = inactive_readers(state.config, issues=issues)
    if as_json:
        emit_json(report.as_dict())
        return
    if state.config.analytics.clicks != "per_subscriber":
        click.echo("analytics.clicks is not per_subscriber: no clicks are kept per reader")
    for reader in report.readers:
        say(f"  {reader.email}  (no click in {', '.join(i.issue_id for i in reader.issues)})")
    click.echo(
        f"{len(report.readers)} of {report.considered} consenting readers clicked in none of "
        f"their last {issues} issues; not considered: {report.not_consenting} without "
        f"consent, {report.too_few_issues} sent fewer than {issues} issues"
    )
