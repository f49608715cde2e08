"""`digest suppressions sync`: the provider's bounces, complaints and unsubscribes → subscribers."""

from __future__ import annotations

import click

from digest.cli._app import State, emit_json, json_option, main, now, pass_state
from digest.delivery import suppressions


@main.group("suppressions")
def suppressions_group() -> None:
    """Addresses the email provider will not send to.

    \b
    Examples:
      digest suppressions sync
      digest suppressions sync --dry-run --json
    """


@suppressions_group.command("sync")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@json_option
@pass_state
def sync(state: State, dry_run: bool, as_json: bool) -> None:
    """Mark subscribers bounced, complained or unsubscribed from the provider's lists.

    Reads the configured provider's suppression lists (Postmark, SendGrid, Mailgun, Brevo)
    and gives each subscriber on them the matching status, so the next send skips them.
    A status only gets stronger (an unsubscribed subscriber on the complaint list becomes
    complained; a complaint is never turned into a bounce).

    \b
    Examples:
      digest suppressions sync
      digest suppressions sync --dry-run
      digest --config site/config.yaml suppressions sync --json
    """
    report = suppressions.sync_suppressions(state.config, now=now(), dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
        return
    verb = "would mark" if dry_run else "marked"
    click.echo(
        f"{report.provider}: {report.fetched} suppressed addresses; {verb} "
        f"{len(report.changed)} subscribers; {report.already} already so; "
        f"{report.unknown} not subscribers"
    )
    for email, status in sorted(report.changed.items()):
        click.echo(f"  {status:<12} {email}")
