"""The PostgreSQL backend: a psycopg 3 connection that runs the stores' SQLite-dialect SQL.

psycopg is imported here only, so a digest on the SQLite files never loads it (the package
is the ``digest[postgresql]`` extra). One connection per store object, in autocommit mode,
the way the SQLite stores hold one ``sqlite3`` connection each: stores open transactions
explicitly. Statements are prepared by the server after a few uses (psycopg's default).

What is translated (see :mod:`digest.store.database`):

``?``                 ``%s`` (and a literal ``%`` doubled)
``INSERT OR IGNORE``  ``INSERT … ON CONFLICT DO NOTHING``
``BEGIN IMMEDIATE``   ``BEGIN`` + ``pg_advisory_xact_lock(<the store's key>)``: writers of
                      one store queue as they do on SQLite, so read-then-write sequences
                      written for SQLite keep their meaning with many processes on many hosts
``PRAGMA …``          nothing (WAL and fsync settings are the server's business)
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from digest.config import DatabaseURL
from digest.errors import StoreError
from digest.store.connection import Cursor, DatabaseError, IntegrityError

_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%")


def lock_key(name: str) -> int:
    """A stable 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """A SQLite-dialect statement as PostgreSQL runs it through psycopg."""
    text = sql.strip()
    head = text[:24].upper()
    if head.startswith("INSERT OR IGNORE"):
        text = "INSERT" + text[len("INSERT OR IGNORE") :].rstrip().rstrip(";")
        text += " ON CONFLICT DO NOTHING"
    elif head.startswith(("INSERT OR REPLACE", "REPLACE INTO")):
        raise ValueError("INSERT OR REPLACE has no PostgreSQL equivalent; use ON CONFLICT")

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        return token.replace("%", "%%")

    return _TOKENS.sub(swap, text)


class _NoRows:
    """The cursor of a statement that did nothing (a PRAGMA)."""

    rowcount = -1

    def fetchone(self) -> Any:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


def _error(exc: psycopg.Error) -> DatabaseError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, pg_errors.IntegrityError):
        return IntegrityError(message)
    return DatabaseError(message)


class PostgresConnection:
    """A psycopg connection with :class:`sqlite3.Connection`'s interface, as stores use it."""

    def __init__(self, conn: psycopg.Connection[Any], *, store: str) -> None:
        self._conn = conn
        self.store = store
        self.key = lock_key(f"digest store {store}")
        self._changes = 0
        self._outer_savepoint: str | None = None

    # -- sqlite3.Connection's interface

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        head = sql.lstrip()[:16].upper()
        if head.startswith("PRAGMA"):
            return _NoRows()
        try:
            if head.startswith("BEGIN IMMEDIATE"):
                self._conn.execute("BEGIN")
                return self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.key,))
            if head.startswith("SAVEPOINT") and not self.in_transaction:
                # SQLite opens a transaction for a SAVEPOINT outside one; PostgreSQL needs
                # it opened (with the store's write lock, as BEGIN IMMEDIATE would take),
                # and its RELEASE then commits.
                self._conn.execute("BEGIN")
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.key,))
                self._outer_savepoint = sql.split()[1]
            cursor = self._conn.execute(translate(sql), tuple(parameters))
            if (
                head.startswith("RELEASE")
                and self._outer_savepoint is not None
                and sql.split()[-1] == self._outer_savepoint
            ):
                self._outer_savepoint = None
                self._conn.execute("COMMIT")
            elif head.startswith(("COMMIT", "END")) or (
                head.startswith("ROLLBACK") and not head.startswith("ROLLBACK TO")
            ):
                self._outer_savepoint = None
        except psycopg.Error as exc:
            raise _error(exc) from None
        if cursor.rowcount > 0 and head.startswith(("INSERT", "UPDATE", "DELETE")):
            self._changes += cursor.rowcount
        return cursor

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        cursor = self._conn.cursor()
        try:
            cursor.executemany(translate(sql), [tuple(p) for p in parameters])
        except psycopg.Error as exc:
            raise _error(exc) from None
        if cursor.rowcount > 0:
            self._changes += cursor.rowcount
        return cursor

    def executescript(self, sql_script: str, /) -> Cursor:
        script = re.sub(r"\bBEGIN\s+IMMEDIATE\b", "BEGIN", sql_script, flags=re.IGNORECASE)
        try:
            return self._conn.execute(script.encode())
        except psycopg.Error as exc:
            raise _error(exc) from None

    @property
    def total_changes(self) -> int:
        return self._changes

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self._conn.close()

    # -- PostgreSQL only

    def try_lock(self, name: str, *, shared: bool = False) -> bool:
        """Take the session advisory lock ``name`` if free (released when this connection
        closes, including when the process dies); ``shared`` holders exclude only an
        exclusive one."""
        function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        try:
            row = self._conn.execute(f"SELECT {function}(%s)", (lock_key(name),)).fetchone()
        except psycopg.Error as exc:
            raise _error(exc) from None
        return bool(row and row[0])

    def holder(self, name: str) -> str:
        """Who holds the advisory lock ``name`` (its application name: pid and host)."""
        key = lock_key(name)
        try:
            row = self._conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                (key,),
            ).fetchone()
        except psycopg.Error:
            return ""
        return str(row[0]) if row and row[0] else ""

    def unlock(self, name: str, *, shared: bool = False) -> None:
        function = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
        try:
            self._conn.execute(f"SELECT {function}(%s)", (lock_key(name),))
        except psycopg.Error as exc:
            raise _error(exc) from None

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The psycopg connection (bulk copies in ``digest db migrate``)."""
        return self._conn


def connect(target: DatabaseURL, *, store: str, what: str) -> PostgresConnection:
    """Connect to the configured database (its ``${ENV}`` references resolved now)."""
    url = target.resolve()
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=15,
            # Seen in pg_stat_activity, and in the error a second lock holder gets.
            application_name=f"digest (pid {os.getpid()} on {socket.gethostname()})"[:63],
        )
    except psycopg.Error as exc:
        # The driver's message never holds the password; the URL printed is the configured
        # one, with its ${ENV} references.
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise StoreError(
            f"{target}: cannot open {what}: {reason} (check database: in config.yaml, "
            "that the server is running and that the user may connect)"
        ) from None
    return PostgresConnection(conn, store=store)
