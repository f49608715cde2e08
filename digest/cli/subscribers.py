"""`digest subscribers import|list|add|remove|unsubscribe|export` (and `digest unsubscribe`)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from digest.audience.status import Cause
from digest.audience.subscribers import STATUSES, Categories, SubscriberStore, unsubscribe
from digest.audience.tokens import TokenError
from digest.cli._app import State, emit_json, json_option, main, now, pass_state


def _store(state: State) -> SubscriberStore:
    config = state.config
    return SubscriberStore(config.path(config.subscribers.database))


@main.group("subscribers")
def subscribers_group() -> None:
    """Manage the subscriber store (subscribers.database in config).

    \b
    Examples:
      digest subscribers import content/subscribers.json
      digest subscribers list --status active
      digest subscribers add ada@example.com --name Ada --category Work
      digest subscribers export --format csv > subscribers.csv
    """


@subscribers_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@pass_state
def import_command(state: State, file: Path, as_json: bool) -> None:
    """Add or update subscribers from a CSV or JSON file (safe to run again).

    CSV needs an email column; name, categories (separated by ;), status and
    subscribed_at are optional. JSON is a list of objects, in the same flat shape or
    the blog's: {"id", "email", "subscribedAt", "isActive", "preferences":
    {"frequency", "categories"}}. Someone who unsubscribed is never brought back.

    \b
    Examples:
      digest subscribers import content/subscribers.json
      digest subscribers import list.csv --json
    """
    with _store(state) as store:
        report = store.import_file(file, Categories.from_config(state.config), now=now())
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(
            f"{file}: {report.rows} rows: {report.added} added, {report.updated} updated, "
            f"{report.unchanged} unchanged, {len(report.rejected)} rejected"
        )
        if report.kept_inactive:
            click.echo(f"  {report.kept_inactive} who had left were kept as they are")
        for warning in report.warnings:
            click.secho(f"  row {warning.row}: {warning.reason}", fg="yellow")
        for rejected in report.rejected:
            click.secho(f"  row {rejected.row} rejected: {rejected.reason}", fg="red", err=True)
    if report.rejected:
        raise click.exceptions.Exit(1)


@subscribers_group.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only subscribers with this status.")
@json_option
@pass_state
def list_command(state: State, status: str | None, as_json: bool) -> None:
    """List subscribers.

    \b
    Examples:
      digest subscribers list
      digest subscribers list --status unsubscribed --json
    """
    with _store(state) as store:
        if as_json:
            emit_json([s.public() for s in store.list(status)])
            return
        for s in store.list(status):
            cats = ", ".join(s.categories) or "all sections"
            click.echo(f"{s.email:<40} {s.status:<13} {s.name or '-':<24} {cats}")
        counts = store.counts()
    click.echo(", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no subscribers")


@subscribers_group.command("add")
@click.argument("email")
@click.option("--name", default="", help="Their name, for the greeting.")
@click.option("--category", "categories", multiple=True, help="A section they want (repeat).")
@click.option("--status", type=click.Choice(STATUSES), default="active", show_default=True)
@click.option(
    "--force",
    is_flag=True,
    help="Re-activate someone who unsubscribed or bounced (never someone who complained).",
)
@pass_state
def add_command(
    state: State, email: str, name: str, categories: tuple[str, ...], status: str, force: bool
) -> None:
    """Add a subscriber, or update one.

    A status only gets stronger: re-activating someone who unsubscribed or bounced
    needs --force, and someone who complained is never re-activated from here (only
    by confirming again through `digest serve`).

    \b
    Examples:
      digest subscribers add ada@example.com --name Ada --category Work --category Tools
      digest subscribers add bob@example.com --force     # he asked to come back
    """
    known, unknown = Categories.from_config(state.config).canonical(categories)
    if unknown:
        raise click.BadParameter(f"not a section: {', '.join(unknown)}", param_hint="--category")
    with _store(state) as store:
        subscriber, created = store.add(
            email,
            name=name,
            categories=known,
            status=status,
            now=now(),
            cause=Cause.OWNER_FORCE if force else Cause.OWNER_ADD,
        )
    click.echo(f"{'added' if created else 'updated'} {subscriber.email} ({subscriber.status})")


@subscribers_group.command("remove")
@click.argument("email")
@pass_state
def remove_command(state: State, email: str) -> None:
    """Delete a subscriber and their secret (their links stop working).

    \b
    Examples:
      digest subscribers remove ada@example.com
    """
    with _store(state) as store:
        if not store.remove(email):
            raise click.ClickException(f"no subscriber {email}")
    click.echo(f"removed {email}")


@subscribers_group.command("unsubscribe")
@click.argument("token_or_email")
@pass_state
def unsubscribe_command(state: State, token_or_email: str) -> None:
    """Unsubscribe someone, by address or by the token from their unsubscribe link.

    They are kept, marked unsubscribed, so an import cannot bring them back; someone who
    bounced or complained keeps that stronger status.

    \b
    Examples:
      digest subscribers unsubscribe ada@example.com
      digest subscribers unsubscribe YWRhQGV4YW1wbGUuY29t..Xk3…
    """
    from digest.audience.tokens import token_secret

    try:
        with _store(state) as store:
            subscriber, change = unsubscribe(
                store, token_or_email, server=token_secret(state.config), now=now()
            )
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None
    if change.outcome == "kept":
        click.echo(f"{subscriber.email} is {subscriber.status}; kept (a stronger status)")
    else:
        click.echo(f"unsubscribed {subscriber.email}")


@main.command("unsubscribe", hidden=True)
@click.argument("token_or_email")
@click.pass_context
def unsubscribe_alias(ctx: click.Context, token_or_email: str) -> None:
    """Alias of `digest subscribers unsubscribe` (kept for scripts that use it)."""
    ctx.forward(unsubscribe_command)


@subscribers_group.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True
)
@click.option("--status", type=click.Choice(STATUSES), help="Only subscribers with this status.")
@pass_state
def export_command(state: State, fmt: str, status: str | None) -> None:
    """Write subscribers to stdout (secrets are never exported).

    \b
    Examples:
      digest subscribers export > subscribers.json
      digest subscribers export --format csv --status active
    """
    with _store(state) as store:
        if fmt == "json":
            click.echo(json.dumps(list(store.export(status)), indent=2, ensure_ascii=False))
            return
        writer = csv.writer(sys.stdout)
        writer.writerow(["email", "name", "categories", "status", "subscribed_at"])
        for row in store.export(status):
            writer.writerow(
                [
                    row["email"],
                    row["name"],
                    ";".join(row["categories"]),
                    row["status"],
                    row["subscribed_at"],
                ]
            )
