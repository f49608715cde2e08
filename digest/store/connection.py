"""The interface every store is written against, whichever backend runs underneath.

See :mod:`digest.store.database` for how a store opens its connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from digest.config import Config, DatabaseURL

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
