"""`digest subscribers import|list|add|set|remove|unsubscribe|export|show|forget|stats|sunset` (and
`digest unsubscribe`)."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from digest.audience.exports import FORMATS, write_export
from digest.audience.imports.importer import import_file
from digest.audience.imports.mapping import parse_mapping
from digest.audience.imports.platforms import PLATFORM_NAMES
from digest.audience.lifecycle import (
    add_subscriber,
    address_form,
    erasure_key,
    show,
)
from digest.audience.newsletters import (
    NewsletterChoices,
    assign_imported,
    check_names,
    export_emails,
)
from digest.audience.records import describe
from digest.audience.rhythm import FREQUENCIES, Rhythms
from digest.audience.status import Cause
from digest.audience.subscribers import STATUSES, Categories, SubscriberStore, unsubscribe
from digest.audience.tokens import TokenError
from digest.cli._app import State, emit_json, json_option, main, now, pass_state, say
from digest.store.database import locate
from digest.store.private import open_private, private_folder


def _store(state: State) -> SubscriberStore:
    config = state.config
    return SubscriberStore(locate(config, config.subscribers.database))


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
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar='FIELD="Column",…',
    help="Name the columns of a file no platform wrote: email, name, first_name, last_name, "
    "status, subscribed_at, confirmed_at, categories, id, reason.",
)
@click.option(
    "--platform",
    type=click.Choice(PLATFORM_NAMES),
    help="Read the file as this platform's export (normally recognised by its header).",
)
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option(
    "--assign",
    "assign",
    multiple=True,
    metavar="NEWSLETTER",
    help="Everyone in the file receives this newsletter (repeat for several); new "
    "subscribers receive only those named.",
)
@json_option
@pass_state
def import_command(
    state: State,
    file: Path,
    mapping: tuple[str, ...],
    platform: str | None,
    dry_run: bool,
    assign: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add or update subscribers from another platform's export (safe to run again).

    The platform is recognised by the file's header row: Mailchimp (subscribed,
    unsubscribed and cleaned files), Substack, Buttondown, listmonk, Ghost, digest's own
    export, the blog's JSON, or any CSV with an email column. Statuses and dates come
    along: unsubscribed stays unsubscribed, cleaned or bounced stays bounced. Someone who
    unsubscribed, or whose address was erased on request, is never brought back.

    \b
    Examples:
      digest subscribers import content/subscribers.json
      digest subscribers import subscribed_members_export.csv --dry-run
      digest subscribers import list.csv --map email="E-mail",name="Vorname"
      digest subscribers import links-readers.csv --assign links
    """
    config = state.config
    lists = check_names(state.whole_config, assign) if assign else ()  # before any change
    with _store(state) as store:
        emails: list[str] = []
        if lists:
            emails = export_emails(
                file, Categories.from_config(config), mapping=parse_mapping(mapping),
                platform=platform,
            )  # fmt: skip
        existed = {email for email in emails if store.get(email) is not None}
        report = import_file(
            store,
            file,
            Categories.from_config(config),
            now=now(),
            erasure_key=erasure_key(config),
            mapping=parse_mapping(mapping),
            platform=platform,
            dry_run=dry_run,
            address=address_form(config),
        )
        if lists and not dry_run:
            assign_imported(store, emails, existed, state.whole_config, lists)
    if as_json:
        emit_json(report.as_dict())
    else:
        would = "would be " if dry_run else ""
        click.echo(
            f"{file} ({report.platform}): {report.rows} rows: {report.added} {would}added, "
            f"{report.updated} {would}updated, {report.unchanged} unchanged, "
            f"{len(report.rejected)} rejected"
        )
        if report.encoding == "cp1252":
            click.echo("  read as Windows-1252 text (the file is not UTF-8)")
        if report.by_status:
            click.echo(
                "  new: " + ", ".join(f"{n} {s}" for s, n in sorted(report.by_status.items()))
            )
        if report.kept_inactive:
            click.echo(f"  {report.kept_inactive} who had left were kept as they are")
        if dry_run:
            for change in report.changes:
                say(f"  row {change.row}: {change.action} {change.email}: {change.detail}")
            if len(report.changes) < report.added + report.updated:
                click.echo("  … (use --json for the first rows' details)")
        for warning in report.warnings:
            say(f"  row {warning.row}: {warning.reason}", fg="yellow")
        for rejected in report.rejected:
            click.secho(f"  row {rejected.row} rejected: {rejected.reason}", fg="red", err=True)
        if dry_run:
            click.echo("dry run: nothing was changed")
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
            say(f"{s.email:<40} {s.status:<13} {s.name or '-':<24} {cats}")
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
        subscriber, created = add_subscriber(
            store,
            email,
            name=name,
            categories=known,
            status=status,
            now=now(),
            erasure_key=erasure_key(state.config),
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
      digest subscribers unsubscribe 2.Q8fz0aX1k2Lm9pQr..Xk3…
    """
    from digest.audience.tokens import verifying_secrets

    try:
        with _store(state) as store:
            subscriber, change = unsubscribe(
                store, token_or_email, server=verifying_secrets(state.config), now=now()
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
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True)
@click.option("--status", type=click.Choice(STATUSES), help="Only subscribers with this status.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (created 0600: it holds addresses) instead of stdout.",
)
@pass_state
def export_command(state: State, fmt: str, status: str | None, output: Path | None) -> None:
    """Write every subscriber to stdout, in every status, with their dates, preferences,
    source, consent record and reason (secrets are never exported). The file imports
    back into an empty store as the same store. In CSV, a cell that starts with = + - @,
    a tab or a carriage return gets a ' in front, so that a spreadsheet shows it as text
    instead of running it as a formula.

    \b
    Examples:
      digest subscribers export -o subscribers.json
      digest subscribers export --format csv --status active
    """
    with _store(state) as store:
        if output is None:
            write_export(store, sys.stdout, fmt=fmt, status=status)
            return
        private_folder(output.parent)
        with os.fdopen(open_private(output), "w", encoding="utf-8", newline="") as out:
            count = write_export(store, out, fmt=fmt, status=status)
    click.echo(f"{count} subscriber(s) written to {output}", err=True)


@subscribers_group.command("show")
@click.argument("email")
@json_option
@pass_state
def show_command(state: State, email: str, as_json: bool) -> None:
    """Print one person's whole record: status, dates, preferences, consent, history.

    \b
    Examples:
      digest subscribers show ada@example.com
      digest subscribers show ada@example.com --json
    """
    with _store(state) as store:
        record = show(store, email)
    if as_json:
        emit_json(record.as_dict(with_history=True))
        return
    for line in describe(record):
        say(line)


@subscribers_group.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_state
def forget_command(state: State, email: str, yes: bool, as_json: bool) -> None:
    """Erase one person's data on their request, keep them suppressed, and list what
    was changed.

    Their row (address, name, preferences, consent, link secret) is deleted, the
    service-mail counts of their mailbox go, their address is blanked in the send ledger
    (with the provider ids and Message-IDs that hold it), and their outbox message files
    are deleted (`digest outbox find EMAIL` lists them). A keyed hash of the address is
    kept so that no import, `add` or form brings it back unless its owner confirms a new
    subscription. The hash is keyed by the privacy key (privacy.key beside the link key
    file, which never rotates; keep it with your backups). Backups and the provider's
    own lists are not reached.

    \b
    Examples:
      digest subscribers forget ada@example.com --yes
    """
    from digest.delivery.erasure import erase

    if not yes:
        click.confirm(f"Erase {email} for good?", abort=True)
    report = erase(state.config, email, now=now())
    if as_json:
        emit_json(report.as_dict())
        return
    for line in report.lines():
        click.echo(line)


@subscribers_group.command("sunset")
@click.option(
    "--dry-run", is_flag=True, help="List who would be mailed or unsubscribed; change nothing."
)
@click.option(
    "--now",
    "at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    default=None,
    help="Run as if it were this moment (UTC unless a zone is given), to rehearse the flow.",
)
@json_option
@pass_state
def sunset_command(state: State, dry_run: bool, at: datetime | None, as_json: bool) -> None:
    """Ask readers who stopped clicking whether they want to stay; unsubscribe the ones
    who did not answer in time.

    Only readers who agreed to per-reader engagement (analytics.clicks: per_subscriber)
    are looked at. Needs analytics.sunset: {after_issues: N, grace_days: D}. A reader
    with no click in their last N delivered issues gets one re-permission mail per round
    (a rerun never mails them twice); one who does not follow its "keep me subscribed"
    link within D days is unsubscribed (reason sunset). Run it after each send, or daily.

    \b
    Examples:
      digest subscribers sunset --dry-run
      digest subscribers sunset --json
    """
    from digest.serve.sunset import run_sunset

    when = now() if at is None else at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    report = run_sunset(state.config, now=when, dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
        return
    would = "would be " if dry_run else ""
    for email in report.ended:
        click.echo(f"{would}unsubscribed (sunset): {email}")
    for email in report.mailed:
        click.echo(f"{would}mailed (keep me subscribed?): {email}")
    for failed in report.failed:
        click.echo(f"not mailed, tried again next run: {failed['email']}: {failed['reason']}")
    for email in report.uncertain:
        click.echo(f"uncertain (the mail may have gone; not sent again): {email}")
    click.echo(
        f"{len(report.mailed)} {would}mailed, {len(report.ended)} {would}unsubscribed, "
        f"{report.waiting} waiting for an answer; {report.considered} readers considered, "
        f"{report.not_consenting} not (no consent), {report.too_few_issues} with fewer "
        f"than {report.after_issues} issues"
    )


@subscribers_group.command("stats")
@json_option
@pass_state
def stats_command(state: State, as_json: bool) -> None:
    """The audience in numbers: by status and source, chosen sections, and per issue the
    delivery outcomes and the unsubscribes, bounces and complaints that followed it.
    `digest preview` draws the same as charts (its /dashboard page).

    \b
    Examples:
      digest subscribers stats
      digest subscribers stats --json
    """
    # imported here for start-up time: the ledger and reports are for stats alone
    from digest.delivery.reports import audience_report

    config = state.config
    report = audience_report(
        locate(config, config.subscribers.database),
        locate(config, config.ledger.database),
        now=now(),
    )
    if as_json:
        emit_json(report.as_dict())
        return
    click.echo(
        f"{report.total} subscribers: "
        + ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
    )
    for source, counts in report.sources.items():
        click.echo(f"  {source:<22} " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if report.preferences:
        click.echo("sections chosen by active subscribers:")
        for name, number in report.preferences.items():
            click.echo(f"  {name or 'every section':<22} {number}")
    if report.timeline:
        click.echo(f"over time (per {report.step}, last {min(len(report.timeline), 8)}):")
        for point in report.timeline[-8:]:
            click.echo(
                f"  {point['at'][:10]}  "
                + ", ".join(f"{point[s]} {s}" for s in STATUSES if point[s])
            )
    for issue in report.issues:
        states = ", ".join(f"{n} {s}" for s, n in issue.states.items() if n) or "nothing"
        followed = ", ".join(f"{n} {s}" for s, n in issue.followed.items() if n) or "none"
        click.echo(f"{issue.issue_id}: {states}; after it: {followed}")


@subscribers_group.command("newsletters")
@click.argument("email")
@click.argument("names", nargs=-1, metavar="[NEWSLETTER]...")
@json_option
@pass_state
def newsletters_command(state: State, email: str, names: tuple[str, ...], as_json: bool) -> None:
    """Show which newsletters a subscriber receives, or set them.

    Someone who never chose receives the config's first newsletter.

    \b
    Examples:
      digest subscribers newsletters ada@example.com
      digest subscribers newsletters ada@example.com weekly links
    """
    config = state.whole_config
    with _store(state) as store, NewsletterChoices(store) as choices:
        subscriber = store.get(email)
        if subscriber is None:
            raise click.ClickException(f"{email} is not a subscriber")
        if names:
            choices.choose(subscriber, check_names(config, names))
        receives = choices.receives(subscriber, config)
    if as_json:
        emit_json({"email": subscriber.email, "newsletters": list(receives)})
    else:
        click.echo(f"{subscriber.email}: {', '.join(receives)}")


@subscribers_group.command("set")
@click.argument("email")
@click.option(
    "--frequency",
    type=click.Choice(FREQUENCIES),
    help="weekly (the week's issue) or daily (each day's issue); a change lands on the "
    "next week start.",
)
@click.option("--timezone", "zone", metavar="ZONE", help="An IANA name, such as Europe/Berlin.")
@click.option(
    "--language",
    metavar="TAG",
    help="The language of their email and pages (de, en, pt-BR; 'default': the site's).",
)
@json_option
@pass_state
def set_command(
    state: State,
    email: str,
    frequency: str | None,
    zone: str | None,
    language: str | None,
    as_json: bool,
) -> None:
    """Change a subscriber's own settings (each option given; the rest stay), and say which
    issue a cadence switch lands on.

    \b
    Examples:
      digest subscribers set ada@example.com --frequency daily
      digest subscribers set ada@example.com --timezone America/New_York
      digest subscribers set ada@example.com --language de
      digest subscribers set ada@example.com --language default
    """
    from digest import i18n
    from digest.audience.settings import apply

    if frequency is None and zone is None and language is None:
        raise click.UsageError("name --frequency, --timezone, --language or several")
    report: dict[str, object] = {}
    lines: list[tuple[bool, str]] = []  # (on stdout, line)
    with _store(state) as store:
        if language is not None:
            subscriber = apply(store, email, now=now(), language=language)
            spoken = i18n.language_of(subscriber.language, state.config.site.language)
            report.update(
                {"email": subscriber.email, "language": subscriber.language, "written_in": spoken}
            )
            lines.append(
                (
                    True,
                    f"{subscriber.email}: language {subscriber.language or 'default'} "
                    f"(written in {spoken})",
                )
            )
            if subscriber.language and i18n.spoken(subscriber.language) is None:
                lines.append(
                    (
                        False,
                        f"note: no catalogue for {subscriber.language} yet; "
                        f"they get {spoken} until one is added",
                    )
                )
        if frequency is not None or zone is not None:
            switch = Rhythms(store).set(
                email, frequency=frequency, timezone=zone, now=now(), config=state.config
            )
            rhythm = switch.rhythm
            report.update(
                {
                    "email": switch.email,
                    "frequency": rhythm.frequency,
                    "timezone": rhythm.timezone,
                    "since": rhythm.since.isoformat() if rhythm.since else None,
                    "last_issue_before": switch.last_old,
                    "first_issue": switch.first_new,
                    "changed": switch.changed,
                }
            )
            lines.append((False, switch.describe() + ("" if switch.changed else " (unchanged)")))
    if as_json:
        emit_json(report)
        return
    for on_stdout, line in lines:
        if on_stdout:
            click.echo(line)
        else:
            say(line)
