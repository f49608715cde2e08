"""The subscriber store: who gets the digest, which sections they want, and their status.

An embedded SQLite database (``subscribers.database`` in config), created on first use.

Addresses are validated with email-validator (syntax only, no DNS) and stored **lowercased
in full**: the blog this replaces compares addresses case-insensitively, and two rows that
differ only in case are one person. The lowercased address is the subscriber's identity;
adding or importing it again updates that row instead of making a second one.

Statuses: ``active`` (gets the digest), ``pending`` (not yet confirmed), ``unsubscribed``,
``bounced`` and ``complained``. Only active subscribers are ever sent to. Every status change
(:meth:`SubscriberStore.add`, :meth:`~SubscriberStore.set_status`, imports) is decided by the
one status model in :mod:`digest.audience.status`, given the change's cause: a status only
gets stronger, and an import never brings back someone who unsubscribed, bounced or
complained.

Category preferences name configured sections (any spelling or alias). An unknown category
is dropped with a warning and the row is kept with the categories that are known; a
subscriber left with none gets every section, like one who chose none.
"""

from __future__ import annotations

import contextlib
import csv
import json
import secrets
import sqlite3
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from digest.audience.status import (
    INACTIVE,
    STATUSES,
    Cause,
    StatusModelError,
    StatusRefused,
    Transition,
    transition,
)
from digest.audience.tokens import signing_key, verify_token
from digest.errors import StoreError
from digest.store.sqlite import open_database

__all__ = [
    "INACTIVE",
    "STATUSES",
    "Categories",
    "Cause",
    "ImportReport",
    "InvalidEmail",
    "StatusRefused",
    "Subscriber",
    "SubscriberStore",
    "Transition",
    "normalise_email",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscribers (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL,
    subscribed_at TEXT NOT NULL,
    categories    TEXT NOT NULL DEFAULT '[]',
    secret        BLOB NOT NULL,
    source_id     TEXT,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscribers_status ON subscribers (status, id);
"""


class InvalidEmail(StoreError):
    """An address is not a valid email address."""


def normalise_email(value: str) -> str:
    """The stored form of an address: validated (no DNS lookup) and lowercased in full."""
    text = unicodedata.normalize("NFC", (value or "").strip())
    if not text:
        raise InvalidEmail("no email address")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"'{text}' is not a valid email address: {exc}") from None
    return result.normalized.lower()


def _fold(value: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", value).split()).casefold()


class Categories:
    """Turns the spellings people use into configured section names.

    ``lookup`` maps a folded spelling (name or alias) to the section's name; an empty lookup
    (no sections configured) accepts every category as written.
    """

    def __init__(self, lookup: Mapping[str, str] | None = None) -> None:
        self.lookup = {_fold(k): v for k, v in (lookup or {}).items()}

    @classmethod
    def from_config(cls, config: Any) -> Categories:
        lookup: dict[str, str] = {}
        for section in config.categories.sections:
            for spelling in (section.name, *section.aliases, section.title):
                lookup[spelling] = section.name
        return cls(lookup)

    def canonical(self, names: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
        """(known section names without repeats, unknown spellings as given)."""
        known: list[str] = []
        unknown: list[str] = []
        for raw in names:
            name = raw.strip()
            if not name:
                continue
            if not self.lookup:
                if _fold(name) not in {_fold(k) for k in known}:
                    known.append(name)
                continue
            section = self.lookup.get(_fold(name))
            if section is None:
                unknown.append(name)
            elif section not in known:
                known.append(section)
        return tuple(known), unknown


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: str
    subscribed_at: str
    categories: tuple[str, ...]
    secret: bytes = field(repr=False)
    source_id: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def public(self) -> dict[str, Any]:
        """Everything but the secret, for listings and exports."""
        return {
            "email": self.email,
            "name": self.name,
            "status": self.status,
            "subscribed_at": self.subscribed_at,
            "categories": list(self.categories),
            "id": self.source_id,
        }


@dataclass(frozen=True)
class Rejected:
    row: int
    reason: str
    email: str | None = None


@dataclass
class ImportReport:
    path: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_inactive: int = 0  # rows that said "active" for someone who had left
    rejected: list[Rejected] = field(default_factory=list)
    warnings: list[Rejected] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rows": self.rows,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "kept_inactive": self.kept_inactive,
            "rejected": [r.__dict__ for r in self.rejected],
            "warnings": [w.__dict__ for w in self.warnings],
        }


@dataclass(frozen=True)
class Row:
    """One subscriber as an import file gives it, already checked."""

    email: str
    name: str
    status: str
    subscribed_at: str | None
    categories: tuple[str, ...]
    source_id: str | None


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"subscribed date {value!r} is not an ISO date such as 2026-08-02"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _iso(moment)


_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}


def parse_record(record: Mapping[str, Any], categories: Categories) -> tuple[Row, list[str]]:
    """Check one import record; raises ValueError with the reason it is rejected.

    Accepts the blog's shape (``email``, ``subscribedAt``, ``isActive``, ``id``,
    ``preferences.categories``, ``preferences.frequency``) and the flat one (``email``,
    ``name``, ``status``, ``categories``, ``subscribed_at``). Returns warnings as well.
    """
    warnings: list[str] = []
    lowered = {str(k).strip().lower(): v for k, v in record.items() if k is not None}
    raw_email = lowered.get("email")
    if not isinstance(raw_email, str) or not raw_email.strip():
        raise ValueError("no email address")
    try:
        email = normalise_email(raw_email)
    except InvalidEmail as exc:
        raise ValueError(exc.message) from None

    status = "active"
    if "status" in lowered and lowered["status"] not in (None, ""):
        status = str(lowered["status"]).strip().lower()
        if status not in STATUSES:
            raise ValueError(f"status {lowered['status']!r} is not one of {', '.join(STATUSES)}")
    if "isactive" in lowered:
        flag = lowered["isactive"]
        if isinstance(flag, str) and flag.strip().lower() in _TRUE | _FALSE:
            flag = flag.strip().lower() in _TRUE
        if not isinstance(flag, bool):
            raise ValueError(f"isActive {flag!r} is not true or false")
        status = "active" if flag else "unsubscribed"

    preferences = lowered.get("preferences")
    if preferences is not None and not isinstance(preferences, dict):
        raise ValueError("preferences is not an object")
    raw_categories: Any = lowered.get("categories")
    if isinstance(preferences, dict):
        frequency = preferences.get("frequency")
        if frequency not in (None, "", "weekly"):
            raise ValueError(f"frequency {frequency!r} is not supported (the digest is weekly)")
        if "categories" in preferences:
            raw_categories = preferences["categories"]
    if raw_categories in (None, ""):
        names: list[str] = []
    elif isinstance(raw_categories, str):
        names = [p for p in raw_categories.replace("|", ";").replace(",", ";").split(";")]
    elif isinstance(raw_categories, list) and all(isinstance(c, str) for c in raw_categories):
        names = list(raw_categories)
    else:
        raise ValueError("categories is not a list of names")
    known, unknown = categories.canonical(names)
    if unknown:
        left = ", ".join(known) if known else "every section"
        warnings.append(
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} "
            f"dropped; {email} gets {left}"
        )

    subscribed = lowered.get("subscribedat", lowered.get("subscribed_at"))
    subscribed_at = _parse_time(subscribed)
    name = lowered.get("name") or ""
    if not isinstance(name, str):
        raise ValueError("name is not text")
    source = lowered.get("id")
    return (
        Row(
            email,
            name.strip(),
            status,
            subscribed_at,
            known,
            None if source is None else str(source),
        ),
        warnings,
    )


def read_records(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | None, str | None]]:
    """(row number, record, problem) for each row of a CSV or JSON file.

    Rows are numbered as a person finds them: CSV by line (the header is line 1), JSON by
    position in the list starting at 1.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read it: {exc}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        if isinstance(data, dict) and isinstance(data.get("subscribers"), list):
            data = data["subscribers"]
        if not isinstance(data, list):
            raise StoreError(f"{path}: expected a JSON list of subscribers")
        for number, item in enumerate(data, start=1):
            if isinstance(item, dict):
                yield number, item, None
            else:
                yield number, None, f"expected an object, got {type(item).__name__}"
        return
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
        raise StoreError(f"{path}: the CSV needs a header row with an 'email' column")
    for record in reader:
        number = reader.line_num
        if None in record:
            yield number, None, "more fields than the header has"
            continue
        yield number, record, None


class SubscriberStore:
    """The subscribers table. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = open_database(self.path, _SCHEMA, what="the subscriber store")

    def __enter__(self) -> SubscriberStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # -- reading

    _COLUMNS = "id, email, name, status, subscribed_at, categories, secret, source_id"

    @staticmethod
    def _row(row: Sequence[Any]) -> Subscriber:
        return Subscriber(
            id=row[0],
            email=row[1],
            name=row[2],
            status=row[3],
            subscribed_at=row[4],
            categories=tuple(json.loads(row[5])),
            secret=bytes(row[6]),
            source_id=row[7],
        )

    def get(self, email: str) -> Subscriber | None:
        try:
            key = normalise_email(email)
        except InvalidEmail:
            return None
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM subscribers WHERE email = ?", (key,)
        ).fetchone()
        return self._row(row) if row else None

    def get_many(self, ids: Sequence[int]) -> dict[int, Subscriber]:
        found: dict[int, Subscriber] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(
                f"SELECT {self._COLUMNS} FROM subscribers WHERE id IN ({marks})", chunk
            ):
                found[row[0]] = self._row(row)
        return found

    def iter_status(self, status: str | None = None, *, chunk: int = 1000) -> Iterator[Subscriber]:
        """Subscribers in id order, read ``chunk`` at a time (never all in memory)."""
        last = 0
        where = "AND status = ?" if status else ""
        while True:
            params: tuple[Any, ...] = (last, status, chunk) if status else (last, chunk)
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM subscribers WHERE id > ? {where} ORDER BY id LIMIT ?",
                params,
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield self._row(row)
            last = rows[-1][0]

    def iter_active(self, *, chunk: int = 1000) -> Iterator[Subscriber]:
        return self.iter_status("active", chunk=chunk)

    def list(self, status: str | None = None) -> Iterator[Subscriber]:
        return self.iter_status(status)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, number in self._db.execute(
            "SELECT status, COUNT(*) FROM subscribers GROUP BY status"
        ):
            counts[status] = number
        return counts

    # -- writing

    def _write(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    @staticmethod
    def _decide(current: str | None, status: str, cause: Cause | str) -> Transition:
        try:
            return transition(current, status, cause)
        except StatusModelError as exc:
            raise StoreError(str(exc)) from None

    def add(
        self,
        email: str,
        *,
        name: str = "",
        categories: Sequence[str] = (),
        status: str = "active",
        now: datetime,
        subscribed_at: str | None = None,
        source_id: str | None = None,
        cause: Cause | str = Cause.OWNER_ADD,
    ) -> tuple[Subscriber, bool]:
        """Add a subscriber, or update the one with this address. Returns (it, created).

        The status goes through the status model for ``cause`` (default: the owner's
        ``add``): for an existing subscriber it may be kept (e.g. a subscribe request for an
        active address), and a change the owner may not make raises :class:`StatusRefused`
        before anything is written.
        """
        key = normalise_email(email)
        stamp = _iso(now)
        existing = self.get(key)
        decided = self._decide(None if existing is None else existing.status, status, cause)
        if decided.outcome == "refused":
            raise StatusRefused(f"{key}: {decided.reason}")
        if existing is None:
            if decided.after is None:  # this cause adds no one (e.g. an unsubscribe)
                raise StoreError(f"no subscriber {key} in {self.path}")
            self._write(
                "INSERT INTO subscribers (email, name, status, subscribed_at, categories, "
                "secret, source_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    name,
                    decided.after,
                    subscribed_at or stamp,
                    json.dumps(list(categories)),
                    secrets.token_bytes(32),
                    source_id,
                    stamp,
                ),
            )
            created = self.get(key)
            assert created is not None
            return created, True
        cursor = self._write(
            "UPDATE subscribers SET name = ?, status = ?, categories = ?, updated_at = ? "
            "WHERE id = ? AND status = ?",
            (
                name or existing.name,
                decided.after,
                json.dumps(list(categories)),
                stamp,
                existing.id,
                existing.status,
            ),
        )
        if cursor.rowcount == 0:  # another process changed the status in between: decide again
            return self.add(
                key,
                name=name,
                categories=categories,
                status=status,
                now=now,
                subscribed_at=subscribed_at,
                source_id=source_id,
                cause=cause,
            )
        updated = self.get(key)
        assert updated is not None
        return updated, False

    def _require(self, email: str) -> Subscriber:
        found = self.get(email)
        if found is None:
            raise StoreError(f"no subscriber {email} in {self.path}")
        return found

    def change_status(
        self, email: str, status: str, *, cause: Cause | str, now: datetime
    ) -> tuple[Subscriber, Transition]:
        """Ask for ``status`` because of ``cause``; the status model decides.

        Returns the subscriber as it is afterwards and the :class:`Transition` (whose
        ``outcome`` says whether it changed, was already so, or was kept). Raises
        :class:`StatusRefused` when the owner's explicit command may not make the change,
        and StoreError for an address that is not a subscriber.
        """
        while True:
            found = self._require(email)
            decided = self._decide(found.status, status, cause)
            if decided.outcome == "refused":
                raise StatusRefused(f"{found.email}: {decided.reason}")
            if not decided.changed:
                return found, decided
            cursor = self._write(
                "UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
                (decided.after, _iso(now), found.id, found.status),
            )
            if cursor.rowcount:  # else another process changed it in between: decide again
                return self._require(email), decided

    def set_status(
        self, email: str, status: str, *, cause: Cause | str, now: datetime
    ) -> Subscriber:
        """:meth:`change_status`, returning only the subscriber as it is afterwards."""
        return self.change_status(email, status, cause=cause, now=now)[0]

    def set_categories(self, email: str, categories: Sequence[str], *, now: datetime) -> Subscriber:
        found = self._require(email)
        self._write(
            "UPDATE subscribers SET categories = ?, updated_at = ? WHERE id = ?",
            (json.dumps(list(categories)), _iso(now), found.id),
        )
        return self._require(email)

    def remove(self, email: str) -> bool:
        """Delete a subscriber and their secret (their old links stop working)."""
        found = self.get(email)
        if found is None:
            return False
        self._write("DELETE FROM subscribers WHERE id = ?", (found.id,))
        return True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside are one commit (one fsync): all of them, or none on an exception."""
        self._write("BEGIN IMMEDIATE", ())
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._write("COMMIT", ())

    def import_file(self, path: Path, categories: Categories, *, now: datetime) -> ImportReport:
        """Add or update every good row of a CSV or JSON file, in one transaction.

        Idempotent: importing the same file again changes nothing. Rejected rows are
        reported with their row number and reason and leave the store untouched.
        """
        report = ImportReport(str(path))
        seen: dict[str, int] = {}
        stamp = _iso(now)
        self._write("BEGIN IMMEDIATE", ())
        try:
            for number, record, problem in read_records(Path(path)):
                report.rows += 1
                if record is None:
                    report.rejected.append(Rejected(number, problem or "unreadable row"))
                    continue
                try:
                    row, warnings = parse_record(record, categories)
                except ValueError as exc:
                    raw = record.get("email")
                    report.rejected.append(
                        Rejected(number, str(exc), raw if isinstance(raw, str) else None)
                    )
                    continue
                if row.email in seen:
                    report.rejected.append(
                        Rejected(number, f"duplicate of row {seen[row.email]}", row.email)
                    )
                    continue
                seen[row.email] = number
                report.warnings.extend(Rejected(number, w, row.email) for w in warnings)
                self._import_row(row, report, stamp)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._write("COMMIT", ())
        return report

    def _import_row(self, row: Row, report: ImportReport, stamp: str) -> None:
        existing = self.get(row.email)
        decided = self._decide(
            None if existing is None else existing.status, row.status, Cause.IMPORT
        )
        if existing is None:
            self._write(
                "INSERT INTO subscribers (email, name, status, subscribed_at, categories, "
                "secret, source_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.email,
                    row.name,
                    decided.after,
                    row.subscribed_at or stamp,
                    json.dumps(list(row.categories)),
                    secrets.token_bytes(32),
                    row.source_id,
                    stamp,
                ),
            )
            report.added += 1
            return
        status = decided.after
        if decided.outcome == "kept":
            # Someone who left is never brought back by an import.
            report.kept_inactive += 1
        name = row.name or existing.name
        source_id = row.source_id or existing.source_id
        if (
            status == existing.status
            and name == existing.name
            and row.categories == existing.categories
            and source_id == existing.source_id
        ):
            report.unchanged += 1
            return
        self._write(
            "UPDATE subscribers SET name = ?, status = ?, categories = ?, source_id = ?, "
            "updated_at = ? WHERE id = ?",
            (name, status, json.dumps(list(row.categories)), source_id, stamp, existing.id),
        )
        report.updated += 1

    def export(self, status: str | None = None) -> Iterator[dict[str, Any]]:
        for subscriber in self.iter_status(status):
            yield subscriber.public()


def unsubscribe(
    store: SubscriberStore, token_or_email: str, *, server: bytes | None, now: datetime
) -> tuple[Subscriber, Transition]:
    """The operator's unsubscribe (cause ``cli_unsubscribe``), by address or by the token
    from someone's unsubscribe link. A stronger status (bounced, complained) is kept.

    Raises TokenError for a bad token, StoreError for an address that is not a subscriber.
    """
    if "@" in token_or_email:  # tokens are base64url, so never hold an @
        email = token_or_email
    else:

        def key_for(address: str) -> bytes | None:
            found = store.get(address)
            return signing_key(found.secret, server) if found else None

        email = verify_token(token_or_email, "unsubscribe", key_for, now=now)
    return store.change_status(email, "unsubscribed", cause=Cause.CLI_UNSUBSCRIBE, now=now)
