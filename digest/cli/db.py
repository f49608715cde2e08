"""`digest db status|upgrade|migrate`: schema versions and the move to PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import click

from digest.audience import subscribers
from digest.cli._app import State, emit_json, json_option, main, pass_state
from digest.config import Config, DatabaseURL, parse_database_url
from digest.delivery import clicks, ledger
from digest.errors import ConfigError
from digest.schedule import runs
from digest.serve import shared
from digest.store.database import StoreSpec, Target, locate
from digest.store.transfer import migrate_to_postgres, upgrade_all, versions


def _files(config: Config) -> list[tuple[StoreSpec, Path]]:
    """Every store's SQLite file as the config names it (whether or not database: is set)."""
    return [
        (subscribers.SPEC, config.path(config.subscribers.database)),
        (ledger.SPEC, config.path(config.ledger.database)),
        (runs.SPEC, config.path(config.schedule.database)),
    ] + ([(clicks.SPEC, config.path(config.analytics.database))] if _counts(config) else [])


def _stores(config: Config) -> list[tuple[StoreSpec, Target]]:
    """Every store where digest uses it: the files, or the database: URL (which also holds
    the state `digest serve` shares between hosts)."""
    found: list[tuple[StoreSpec, Target]] = [
        (subscribers.SPEC, locate(config, config.subscribers.database)),
        (ledger.SPEC, locate(config, config.ledger.database)),
        (runs.SPEC, locate(config, config.schedule.database)),
    ] + ([(clicks.SPEC, locate(config, config.analytics.database))] if _counts(config) else [])
    if config.database is not None:
        found.append((shared.SPEC, config.database))
    return found


def _counts(config: Config) -> bool:
    """Whether the click store is one of the stores (a site that counts no clicks has none)."""
    return config.analytics.clicks != "off" or config.analytics.opens


@main.group("db")
def db_group() -> None:
    """The stores: schema versions, upgrades, and moving to PostgreSQL.

    \b
    Examples:
      digest db status
      digest db upgrade
      digest db migrate --to 'postgresql://digest:${PGPASSWORD}@db.internal/digest'
    """


@db_group.command("status")
@json_option
@pass_state
def status_command(state: State, as_json: bool) -> None:
    """Each store's schema version and the one this digest brings it to."""
    found = versions(_stores(state.config))
    if as_json:
        emit_json([v.__dict__ for v in found])
        return
    for v in found:
        note = "up to date" if v.before == v.after else f"upgrade pending ({v.after})"
        click.echo(f"{v.store:<12} version {v.before}  {note}  {v.where}")


@db_group.command("upgrade")
@json_option
@pass_state
def upgrade_command(state: State, as_json: bool) -> None:
    """Apply every pending migration, in order (safe to run again; stores also upgrade
    themselves when opened)."""
    done = upgrade_all(_stores(state.config))
    if as_json:
        emit_json([v.__dict__ for v in done])
        return
    for v in done:
        change = "already current" if v.before == v.after else f"{v.before} -> {v.after}"
        click.echo(f"{v.store:<12} {change}  {v.where}")


@db_group.command("migrate")
@click.option(
    "--to",
    "url",
    required=True,
    help="The PostgreSQL URL; the password as ${ENV}, e.g. postgresql://digest:${PGPASSWORD}@host/db.",
)
@json_option
@pass_state
def migrate_command(state: State, url: str, as_json: bool) -> None:
    """Copy every SQLite store (subscribers, ledger, runs) into an empty PostgreSQL database.

    No send may run meanwhile (the ledger's lock is held). The files are left as they were;
    set database: to the same URL in config.yaml to switch over.
    """
    target = _url(url)
    config = state.config
    files = _files(config)
    with ledger.Ledger(config.path(config.ledger.database)) as source_ledger:
        source_ledger.lock()
        # each file brought fully up to date by its own store first (the subscriber
        # store's records are added in place by the store, not by a numbered migration)
        for spec, path in files:
            if path.exists() and spec is subscribers.SPEC:
                subscribers.SubscriberStore(path).close()
        copied = migrate_to_postgres(files, target)
    if as_json:
        emit_json({"to": str(target), "tables": [c.__dict__ for c in copied]})
        return
    for entry in copied:
        click.echo(f"{entry.table:<12} {entry.rows:>10,} rows  from {entry.source}")
    click.echo(f"done; set `database: {target}` in config.yaml to use it")


def _url(value: str) -> DatabaseURL:
    try:
        return parse_database_url(value)
    except ValueError as exc:
        raise ConfigError(f"--to: {exc}") from None
