"""The import loop: every good row of a file, added or updated in one transaction (or
rolled back, for a dry run), each status change decided by the status model."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

from digest.audience import erasures, records
from digest.audience.imports.incoming import Incoming, Platform, to_incoming
from digest.audience.imports.mapping import mapped
from digest.audience.imports.platforms import detect, platform_named
from digest.audience.imports.report import Change, ImportReport, Rejected, note
from digest.audience.imports.table import fold, read_table
from digest.audience.records import iso
from digest.audience.rhythm import Rhythms
from digest.audience.status import Cause, transition
from digest.audience.subscribers import Categories, ImportedRow, SubscriberStore
from digest.errors import StoreError
from digest.store.database import Connection


def iter_incoming(
    path: Path,
    categories: Categories,
    *,
    mapping: Mapping[str, str] | None = None,
    platform: str | None = None,
    report: ImportReport,
    address: Callable[[str | None], str | None] = lambda ip: ip,
) -> Iterator[tuple[int, Incoming]]:
    """The good rows of a file; rejected rows and warnings go into ``report``."""
    table = read_table(Path(path))
    report.encoding = table.encoding
    headers = set(fold(h) for h in table.headers)
    if mapping:
        missing = [column for column in mapping.values() if column not in headers]
        if missing and table.kind == "csv":
            raise StoreError(
                f"{path}: --map names column(s) the file does not have: "
                f"{', '.join(missing)} (its columns: {', '.join(table.headers)})"
            )
        chosen = Platform("mapped", "mapped columns", lambda h: True, mapped(mapping))
    elif platform:
        chosen = platform_named(platform)
    else:
        chosen = detect(table.headers, path=Path(path))
    report.platform = chosen.name
    kind = chosen.kind(headers)
    seen: dict[str, int] = {}
    for number, record, problem in table.rows:
        report.rows += 1
        if record is None:
            report.rejected.append(Rejected(number, problem or "unreadable row"))
            continue
        try:
            raw = chosen.convert(record, kind)
            incoming, warnings = to_incoming(raw, chosen.name, categories, address)
        except ValueError as exc:
            value = record.get("email") or record.get("email address")
            report.rejected.append(
                Rejected(number, str(exc), value if isinstance(value, str) else None)
            )
            continue
        if incoming.email in seen:
            report.rejected.append(
                Rejected(number, f"duplicate of row {seen[incoming.email]}", incoming.email)
            )
            continue
        seen[incoming.email] = number
        report.warnings.extend(Rejected(number, w, incoming.email) for w in warnings)
        yield number, incoming


def import_file(
    store: SubscriberStore,
    path: Path,
    categories: Categories,
    *,
    now: datetime,
    erasure_key: bytes | None,
    mapping: Mapping[str, str] | None = None,
    platform: str | None = None,
    dry_run: bool = False,
    address: Callable[[str | None], str | None] | None = None,
) -> ImportReport:
    """Add or update every good row of an export, in one transaction.

    Idempotent: importing the same file again changes nothing. A dry run does all of it
    and rolls back, so its report says exactly what would change. ``address`` turns an
    imported client address into its stored form (by default truncated to its network).
    """
    if address is None:
        address = lambda ip: records.stored_address(ip, "truncate", None)  # noqa: E731
    report = ImportReport(str(path), dry_run=dry_run)
    db = store.connection
    rows = iter_incoming(
        path, categories, mapping=mapping, platform=platform, report=report, address=address
    )
    with store.transaction(commit=not dry_run):
        # Checked once: with nothing erased there is nothing to recognise (and no key needed).
        check_erased = erasures.has_forgotten(db)
        for chunk in _chunks(rows, CHUNK):
            kept = [
                (number, incoming)
                for number, incoming in chunk
                if not (check_erased and _erased(db, number, incoming, erasure_key, report))
            ]
            existing = records.get_records(db, [incoming.email for _, incoming in kept])
            new: list[tuple[int, Incoming]] = []
            changes: list[Change] = []
            for number, incoming in kept:
                found = existing.get(incoming.email)
                if found is None:
                    new.append((number, incoming))
                else:
                    _update(store, number, incoming, found, report, changes, now)
            _add(store, new, report, changes, iso(now), now)
            for change in sorted(changes, key=lambda c: c.row):  # in the file's order
                note(report, change)
    report.rejected.sort(key=lambda r: r.row)  # checked and erased rows, in the file's order
    return report


CHUNK = 500
"""Rows looked up and added together: one SELECT and one INSERT for each chunk."""


def _chunks(
    rows: Iterator[tuple[int, Incoming]], size: int
) -> Iterator[list[tuple[int, Incoming]]]:
    chunk: list[tuple[int, Incoming]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _erased(
    db: Connection, number: int, row: Incoming, key: bytes | None, report: ImportReport
) -> bool:
    """Whether the address was erased on request (then the row is rejected, and counted)."""
    erased = erasures.forgotten_at(db, row.email, key)
    if erased is None:
        return False
    report.suppressed += 1
    report.rejected.append(
        Rejected(
            number,
            f"erased on request on {erased[:10]}; stays suppressed (only a new "
            "confirmed subscription brings it back)",
        )
    )
    return True


def _add(
    store: SubscriberStore,
    rows: list[tuple[int, Incoming]],
    report: ImportReport,
    changes: list[Change],
    stamp: str,
    now: datetime,
) -> None:
    """Insert the rows new to the store, together."""
    store.insert_imported(
        [
            ImportedRow(
                email=row.email,
                name=row.name,
                status=row.status,
                subscribed_at=row.subscribed_at or stamp,
                categories=row.categories or (),
                source_id=row.source_id,
                status_at=_status_at(row, stamp),
                source=row.source or "",
                confirmed_at=row.confirmed_at,
                reason=row.reason,
                consent=records.consent_text(row.consent) if row.consent else None,
            )
            for _, row in rows
        ],
        now=now,
    )
    rhythms = Rhythms(store)
    for number, row in rows:
        # a language, cadence or timezone the file gives: one statement each, only when given
        if row.language:
            store.set_language(row.email, row.language, now=now)
        if row.frequency or row.timezone:
            added = store.get(row.email)
            if added is not None:
                rhythms.imported(added, row.frequency, row.timezone)
        report.added += 1
        report.by_status[row.status] = report.by_status.get(row.status, 0) + 1
        changes.append(Change(number, row.email, "add", row.status))


def _status_at(row: Incoming, stamp: str) -> str:
    """When the row's status began: the file's moment, else what the store's arrival trigger
    would set (``records._TRIGGERS``: the import's moment for someone already gone, else
    the subscription's). Given here, the trigger's UPDATE of each new row finds nothing to
    do: that UPDATE was a fifth of an import's time in the store."""
    if row.status_at:
        return row.status_at
    return stamp if row.status in records.INACTIVE else row.subscribed_at or stamp


def _update(
    store: SubscriberStore,
    number: int,
    row: Incoming,
    existing: records.Record,
    report: ImportReport,
    changes: list[Change],
    now: datetime,
) -> None:
    """Update a subscriber the store holds, as far as the status model allows."""
    db = store.connection
    # The status model decides: an import never makes a status weaker, so someone who
    # left is never brought back by one.
    decided = transition(existing.status, row.status, Cause.IMPORT)
    status = decided.after or existing.status
    kept = decided.outcome == "kept"
    name = row.name or existing.name
    source_id = row.source_id or existing.source_id
    changed: list[str] = []
    if status != existing.status:
        changed.append(f"status {existing.status} → {status}")
    if name != existing.name:
        changed.append("name")
    categories = existing.categories if row.categories is None else row.categories
    if categories != existing.categories:
        changed.append("categories")
    if source_id != existing.source_id:
        changed.append("id")
    # the stored language and rhythm are read only when the row gives one to compare
    gives = row.language is not None or row.frequency is not None or row.timezone is not None
    was = store.get(row.email) if gives else None
    if row.language is not None and was is not None and row.language != was.language:
        changed.append("language")
    new_consent = row.consent if existing.consent is None and row.consent else None
    if new_consent:
        changed.append("consent")
    new_confirmed = row.confirmed_at if not existing.confirmed_at and row.confirmed_at else None
    if new_confirmed:
        changed.append("confirmed_at")
    if was is not None and (row.frequency is not None or row.timezone is not None):
        changed += Rhythms(store).imported(was, row.frequency, row.timezone)
    if kept:
        report.kept_inactive += 1
    if not changed:
        report.unchanged += 1
        if kept:
            changes.append(Change(number, row.email, "keep", f"stays {existing.status}"))
        return
    store.update_imported(row.email, name=name, categories=categories, source_id=source_id, now=now)
    if "language" in changed and row.language is not None:
        store.set_language(row.email, row.language, now=now)
    if status != existing.status:
        store.change_status(row.email, status, cause=Cause.IMPORT, now=now)
    records.set_details(
        db,
        row.email,
        consent=new_consent,
        confirmed_at=new_confirmed,
        reason=row.reason if status != existing.status else None,
    )
    report.updated += 1
    changes.append(Change(number, row.email, "update", ", ".join(changed)))
