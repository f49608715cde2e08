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

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from digest.config import Config, DatabaseURL

if TYPE_CHECKING:
    from digest.store.migrations import Migration

Target = Path | DatabaseURL
"""Where a store lives: its SQLite file, or the PostgreSQL database every store shares."""

Dialect = Literal["sqlite", "postgresql"]


class DatabaseError(sqlite3.DatabaseError):
    """A statement failed on PostgreSQL (the driver's message is kept).

    A subclass of :class:`sqlite3.Error` on purpose: every store's ``except sqlite3.Error``
    catches the same failures whichever backend runs underneath.
    """


class IntegrityError(DatabaseError, sqlite3.IntegrityError):
    """A constraint (unique, not null, foreign key) refused a row on PostgreSQL."""


class Cursor(Protocol):
    """What stores read from a statement: the subset of :class:`sqlite3.Cursor` they use."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The subset of :class:`sqlite3.Connection` the stores use; both backends provide it."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...

    def executescript(self, sql_script: str, /) -> Cursor: ...

    @property
    def total_changes(self) -> int: ...

    @property
    def in_transaction(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class DatabaseLocks(Protocol):
    """Named locks held in the database (PostgreSQL's advisory locks), seen by every host
    and released by the server when the holder's connection ends."""

    def try_lock(self, name: str, *, shared: bool = False) -> bool: ...

    def unlock(self, name: str, *, shared: bool = False) -> None: ...

    def holder(self, name: str) -> str: ...


@dataclass(frozen=True)
class StoreSpec:
    """What the tools that handle every store (``digest db``) need to know about one."""

    name: str  # its row in schema_versions
    what: str  # how errors name it
    migrations: tuple[Migration, ...]
    tables: tuple[str, ...]  # in the order rows are copied (parents first)


def locate(config: Config, path: Path) -> Target:
    """Where the store configured at ``path`` lives: ``database:`` when set, else the file."""
    return config.database if config.database is not None else config.path(path)


def is_postgres(target: Target) -> bool:
    return isinstance(target, DatabaseURL)


def as_target(value: Target | str) -> Target:
    """Accept what callers used to pass (a path as text) as well as a target."""
    if isinstance(value, (Path, DatabaseURL)):
        return value
    return Path(value)


def dialect_of(db: Connection) -> Dialect:
    return "sqlite" if isinstance(db, sqlite3.Connection) else "postgresql"


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
    from digest.store.migrations import upgrade

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
