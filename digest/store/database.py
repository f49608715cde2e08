"""One store layer, two backends: the SQLite files (the default) or one PostgreSQL database.

A store (subscribers, ledger, runs, serve's shared state) is given a :data:`Target`: a
:class:`~pathlib.Path` for its SQLite file, or the configured ``database:`` URL. It opens it
with :func:`open_store`, which returns a :class:`Connection` and brings the schema up to date
through the store's ordered migrations (:mod:`digest.store.migrations`).

Stores write their SQL once, in SQLite's dialect, and run it on both backends:

- on SQLite the connection *is* a :class:`sqlite3.Connection` (autocommit, WAL), exactly as
  before this layer existed;
- on PostgreSQL it is a :class:`~digest.store.postgres.PostgresConnection` (psycopg 3) that
  translates the few differences: ``?`` placeholders, ``INSERT OR IGNORE``, ``BEGIN
  IMMEDIATE`` (a transaction holding the store's advisory lock, so writers queue the way they
  do on SQLite), ``PRAGMA`` (ignored), and raises :class:`DatabaseError`, a subclass of
  :class:`sqlite3.Error`, so a store catches one exception type on both backends.

SQL that only one backend can run (``FOR UPDATE SKIP LOCKED``) branches on
:func:`dialect_of`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from digest.config import DatabaseURL
from digest.store.connection import (
    Connection,
    Cursor,
    DatabaseError,
    DatabaseLocks,
    IntegrityError,
    Target,
    as_target,
    dialect_of,
    is_postgres,
    locate,
)
from digest.store.migrations import Migration, upgrade

# The names a store needs, in one place (defined in digest.store.connection).
__all__ = [
    "Connection",
    "Cursor",
    "DatabaseError",
    "DatabaseLocks",
    "IntegrityError",
    "StoreSpec",
    "Target",
    "as_target",
    "dialect_of",
    "is_postgres",
    "locate",
    "open_store",
]


@dataclass(frozen=True)
class StoreSpec:
    """What the tools that handle every store (``digest db``) need to know about one."""

    name: str  # its row in schema_versions
    what: str  # how errors name it
    migrations: tuple[Migration, ...]
    tables: tuple[str, ...]  # in the order rows are copied (parents first)


def open_store(
    target: Target,
    migrations: Iterable[Migration],
    *,
    store: str,
    what: str,
    synchronous: str = "FULL",
) -> Connection:
    """Open ``target`` for ``store`` and apply its pending migrations.

    ``store`` names the store's row in ``schema_versions`` (and its advisory lock on
    PostgreSQL); ``what`` names it in errors.
    """
    db: Connection
    if isinstance(target, DatabaseURL):
        from digest.store.postgres import connect

        db = connect(target, store=store, what=what)
    else:
        from digest.store.sqlite import open_sqlite

        db = open_sqlite(target, what=what, synchronous=synchronous)
    try:
        upgrade(db, store, tuple(migrations), where=str(target), what=what)
    except BaseException:
        db.close()
        raise
    return db
