"""``digest db``: schema versions of every store, upgrades, and the move to PostgreSQL.

:func:`upgrade_all` opens each store where the config puts it, applying pending migrations
(opening a store does that anyway; this does it for all of them at once, before several
hosts start, and says what changed).

:func:`migrate_to_postgres` moves an installation from its SQLite files into a PostgreSQL
database without loss:

1. it takes the send lock on the SQLite ledger (no send may run during the move) and brings
   every file to the current schema;
2. it creates the schema in PostgreSQL through the same migrations, and refuses a database
   whose tables already hold rows (nothing is merged or overwritten);
3. it copies every table with ``COPY`` in one transaction: all rows or, on any error,
   none; identity sequences continue after the highest id copied;
4. it counts the rows on both sides and fails unless every table matches.

The SQLite files are left as they were; pointing ``database:`` at the URL switches over.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digest.config import DatabaseURL
from digest.errors import StoreError
from digest.store.database import StoreSpec, Target, dialect_of, open_store
from digest.store.migrations import current_version

COPY_CHUNK = 10_000


@dataclass(frozen=True)
class StoreVersion:
    store: str
    where: str
    before: int
    after: int


@dataclass(frozen=True)
class TableCopy:
    table: str
    source: str
    rows: int


def _version_of(target: Target, spec: StoreSpec) -> int:
    """The schema version at ``target`` without changing anything (0: absent or older)."""
    if isinstance(target, Path):
        if not target.exists():
            return 0
        db = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        try:
            return current_version(db, spec.name)
        finally:
            db.close()
    from digest.store.postgres import connect

    conn = connect(target, store=spec.name, what=spec.what)
    try:
        return current_version(conn, spec.name)
    finally:
        conn.close()


def versions(stores: Sequence[tuple[StoreSpec, Target]]) -> list[StoreVersion]:
    """Each store's version now, and the one this digest would bring it to."""
    return [
        StoreVersion(spec.name, str(target), _version_of(target, spec), len(spec.migrations))
        for spec, target in stores
    ]


def upgrade_all(stores: Sequence[tuple[StoreSpec, Target]]) -> list[StoreVersion]:
    """Apply every store's pending migrations; what each went from and to."""
    done: list[StoreVersion] = []
    for spec, target in stores:
        before = _version_of(target, spec)
        open_store(target, spec.migrations, store=spec.name, what=spec.what).close()
        done.append(StoreVersion(spec.name, str(target), before, len(spec.migrations)))
    return done


def migrate_to_postgres(
    stores: Sequence[tuple[StoreSpec, Path]],
    url: DatabaseURL,
) -> list[TableCopy]:
    """Copy every store's SQLite file into the PostgreSQL database at ``url`` (see above).

    The caller holds the send lock on the SQLite ledger for the whole move.
    """
    from digest.store.postgres import PostgresConnection

    sources: list[tuple[StoreSpec, Path, Any]] = []
    for spec, path in stores:
        if not path.exists():
            sources.append((spec, path, None))
            continue
        sources.append(
            (spec, path, open_store(path, spec.migrations, store=spec.name, what=spec.what))
        )
    targets = [
        open_store(url, spec.migrations, store=spec.name, what=spec.what) for spec, _ in stores
    ]
    try:
        conn = targets[0]
        assert isinstance(conn, PostgresConnection)
        return _copy(sources, conn, url)
    finally:
        for db in targets:
            db.close()
        for _, _, source in sources:
            if source is not None:
                source.close()


def _copy(
    sources: list[tuple[StoreSpec, Path, Any]], target: Any, url: DatabaseURL
) -> list[TableCopy]:
    raw = target.raw
    copied: list[TableCopy] = []
    seen: set[str] = set()
    for spec, _, _ in sources:
        for table in spec.tables:
            row = raw.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()
            if row and row[0]:
                raise StoreError(
                    f"{url}: table {table} already holds rows; digest db migrate copies into "
                    "an empty database only (nothing is merged or overwritten)"
                )
    import psycopg

    try:
        with raw.transaction():
            for spec, path, source in sources:
                for table in spec.tables:
                    if table in seen:
                        continue  # two stores configured in one file
                    seen.add(table)
                    rows = 0 if source is None else _copy_table(source, raw, table)
                    copied.append(TableCopy(table, str(path), rows))
                    _continue_identity(raw, table)
    except psycopg.Error as exc:
        raise StoreError(f"{url}: the copy failed and nothing was kept: {exc}") from None
    for entry in copied:
        row = raw.execute(f"SELECT COUNT(*) FROM {entry.table}").fetchone()
        if row is None or int(row[0]) != entry.rows:
            raise StoreError(
                f"{url}: {entry.table} holds {row[0] if row else 0} rows after the copy, "
                f"{entry.rows} were read from {entry.source}"
            )
    return copied


def _columns(source: Any, table: str) -> list[str]:
    return [str(r[1]) for r in source.execute(f"PRAGMA table_info({table})").fetchall()]


def _copy_table(source: Any, raw: Any, table: str) -> int:
    """Copy one table's rows as they are; the target's triggers do not fire (the rows they
    would write, such as history, are copied from the source too)."""
    assert dialect_of(source) == "sqlite"
    columns = _columns(source, table)
    if not columns:
        return 0  # a table this file never had (an older digest): nothing to copy
    names = ", ".join(columns)
    count = 0
    cursor = source.execute(f"SELECT {names} FROM {table}")
    raw.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    with raw.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        while True:
            rows = cursor.fetchmany(COPY_CHUNK)
            if not rows:
                break
            for row in rows:
                copy.write_row(row)
            count += len(rows)
    raw.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    return count


def _continue_identity(raw: Any, table: str) -> None:
    """Make an identity column's next value follow the highest id copied."""
    sequence = raw.execute(
        "SELECT a.attname, pg_get_serial_sequence(%s, a.attname) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attidentity <> ''",
        (table, table),
    ).fetchall()
    for column, name in sequence:
        if name:
            raw.execute(
                f"SELECT setval(%s, COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)",
                (name,),
            )
