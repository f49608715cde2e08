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

Imports from files live in :mod:`digest.audience.imports`; consent, source, history and
erased-address hashes, kept in the same database, in :mod:`digest.audience.records`.

Category preferences name configured sections (any spelling or alias). An unknown category
is dropped with a warning and the row is kept with the categories that are known; a
subscriber left with none gets every section, like one who chose none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

from digest.audience.engagement import SCHEMA as SUNSET
from digest.audience.engagement import SCHEMA_POSTGRESQL as SUNSET_PG
from digest.audience.mailbox import mail_key
from digest.audience.names import NAME_LIMIT, clean_name
from digest.audience.records import RECORDS_POSTGRESQL, extend_schema
from digest.audience.status import (
    INACTIVE,
    STATUSES,
    Cause,
    StatusModelError,
    StatusRefused,
    Transition,
    transition,
)
from digest.audience.tokens import Subject, handle_of, signing_key, verify_token
from digest.errors import StoreError
from digest.safelog import log_change
from digest.store.clock import utc_text
from digest.store.database import Connection, Cursor, StoreSpec, Target, as_target, open_store
from digest.store.migrations import Migration

__all__ = [
    "INACTIVE",
    "NAME_LIMIT",
    "STATUSES",
    "Categories",
    "Cause",
    "InvalidEmail",
    "StatusRefused",
    "Subscriber",
    "SubscriberStore",
    "Transition",
    "clean_name",
    "mail_key",
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

_SERVE_MEMORY = """
-- Webhook deliveries already applied (see SubscriberStore.claim_delivery): shared by every
-- `digest serve` process on this store, kept for serve.webhooks.max_age and more.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    provider    TEXT NOT NULL,
    delivery    TEXT NOT NULL,  -- sha256 of the provider's id, signature or token
    received_at REAL NOT NULL,  -- Unix time
    PRIMARY KEY (provider, delivery)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_deliveries_age ON webhook_deliveries (received_at);
-- Mail the service sent to an address (confirmations, notices), for the per-address limit.
CREATE TABLE IF NOT EXISTS service_mail (
    recipient TEXT NOT NULL,  -- mail_key() of the address (before schema 5: the address)
    sent_at   REAL NOT NULL   -- Unix time
);
CREATE INDEX IF NOT EXISTS service_mail_recipient ON service_mail (recipient, sent_at);
CREATE INDEX IF NOT EXISTS service_mail_age ON service_mail (sent_at);
"""

# The schema's history, oldest first (digest.store.migrations); add new steps at the end.
# Which newsletters each subscriber receives (digest.audience.newsletters): a choice goes
# with its subscriber's row.
_CHOICES = """
CREATE TABLE IF NOT EXISTS newsletter_choices (
    subscriber_id INTEGER NOT NULL,
    email         TEXT NOT NULL,
    newsletter    TEXT NOT NULL,
    PRIMARY KEY (subscriber_id, newsletter)
);
CREATE TRIGGER IF NOT EXISTS newsletter_choices_go_with_the_subscriber
AFTER DELETE ON subscribers
BEGIN
    DELETE FROM newsletter_choices WHERE subscriber_id = OLD.id;
END;
"""
_CHOICES_POSTGRESQL = """
CREATE TABLE IF NOT EXISTS newsletter_choices (
    subscriber_id BIGINT NOT NULL,
    email         TEXT NOT NULL,
    newsletter    TEXT NOT NULL,
    PRIMARY KEY (subscriber_id, newsletter)
);
CREATE OR REPLACE FUNCTION digest_newsletter_choices_go() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM newsletter_choices WHERE subscriber_id = OLD.id;
    RETURN OLD;
END;
$$;
DROP TRIGGER IF EXISTS newsletter_choices_go_with_the_subscriber ON subscribers;
CREATE TRIGGER newsletter_choices_go_with_the_subscriber
AFTER DELETE ON subscribers
FOR EACH ROW EXECUTE FUNCTION digest_newsletter_choices_go();
"""

MIGRATIONS = (
    Migration(1, "subscribers table, as before schema versions", _SCHEMA),
    # On SQLite records.extend_schema adds these in place (it predates versions and checks
    # what a file has); on PostgreSQL this migration does, with the triggers in PL/pgSQL.
    Migration(2, "consent, source and history (audience/records.py)", "", RECORDS_POSTGRESQL),
    Migration(3, "webhook deliveries applied and service mail sent", _SERVE_MEMORY),
    Migration(4, "newsletter choices (audience/newsletters.py)", _CHOICES, _CHOICES_POSTGRESQL),
    # service mail counted by a hash of the canonical mailbox: rows that hold an address go
    # (they only counted toward a limit of one window)
    Migration(
        5, "service mail keeps no address", "DELETE FROM service_mail WHERE recipient LIKE '%@%';"
    ),
    # links name subscribers by an opaque handle (tokens.handle_of), and suppressions
    # compare canonical mailboxes (mail_key); rows from before get both when the store is
    # opened (SubscriberStore._fill_derived)
    Migration(
        6,
        "subscriber handles for links without addresses; canonical mailboxes",
        "ALTER TABLE subscribers ADD COLUMN handle TEXT;\n"
        "ALTER TABLE subscribers ADD COLUMN mailbox TEXT;\n"
        "CREATE INDEX IF NOT EXISTS subscribers_handle ON subscribers (handle);\n"
        "CREATE INDEX IF NOT EXISTS subscribers_mailbox ON subscribers (mailbox, status);",
    ),
    # each reader's language (digest.i18n): '' is the site's
    Migration(
        7,
        "each subscriber's language",
        "ALTER TABLE subscribers ADD COLUMN language TEXT NOT NULL DEFAULT '';",
    ),
    # each reader's cadence (from a week start on) and timezone (digest.audience.rhythm)
    Migration(
        8,
        "each reader's cadence and timezone",
        "ALTER TABLE subscribers ADD COLUMN frequency TEXT NOT NULL DEFAULT 'weekly';\n"
        "ALTER TABLE subscribers ADD COLUMN frequency_since TEXT;\n"
        "ALTER TABLE subscribers ADD COLUMN timezone TEXT;",
    ),
    Migration(9, "sunset rounds (audience/engagement.py)", SUNSET, SUNSET_PG),
)
SPEC = StoreSpec(
    "subscribers",
    "the subscriber store",
    MIGRATIONS,
    (
        "subscribers",
        "subscriber_events",
        "forgotten",
        "webhook_deliveries",
        "service_mail",
        "newsletter_choices",
        "sunset_rounds",
    ),
)


class InvalidEmail(StoreError):
    """An address is not a valid email address."""


def normalise_email(value: str) -> str:
    """The stored form of an address: validated (no DNS lookup) and lowercased in full."""
    if len(value or "") > 1024:  # an address is at most 254 characters, even decomposed
        raise InvalidEmail(f"not an email address: {len(value)} characters long")
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
    language: str = ""  # a tag as digest.i18n.normalise spells it; '' is the site's

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def handle(self) -> str:
        """How this subscriber's links name them (no address in any link)."""
        return handle_of(self.secret)

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


def _iso(value: datetime) -> str:
    return utc_text(value, "seconds")


@dataclass(frozen=True)
class ImportedRow:
    """A new subscriber from an import (``email`` already normalised), with its own dates."""

    email: str
    name: str
    status: str
    subscribed_at: str
    categories: Sequence[str]
    source_id: str | None
    status_at: str | None
    source: str
    confirmed_at: str | None = None
    reason: str | None = None
    consent: str | None = None  # the consent record as the store keeps it (JSON)


class SubscriberStore:
    """The subscribers table. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: Target | str) -> None:
        self.path = as_target(path)
        self._db = open_store(
            self.path, MIGRATIONS, store="subscribers", what="the subscriber store"
        )
        if isinstance(self._db, sqlite3.Connection):
            # On SQLite the records' columns, tables and triggers are added in place by
            # records.extend_schema (idempotent); on PostgreSQL by migration 2.
            try:
                extend_schema(self._db)
            except StoreError as exc:
                self._db.close()
                raise StoreError(f"{self.path}: {exc}") from None
        self._records: list[tuple[str, dict[str, Any]]] = []  # logged once committed
        self._fill_derived()

    def _fill_derived(self, chunk: int = 20_000) -> None:
        """Give rows made before schema 6 their handle and mailbox (once; idempotent: both
        are derived from the row's own secret and address). One commit per chunk."""
        while True:
            rows = self._db.execute(
                # both are always written together, so one indexed test finds them
                "SELECT id, secret, email FROM subscribers WHERE handle IS NULL LIMIT ?",
                (chunk,),
            ).fetchall()
            if not rows:
                return
            with self.atomic():
                self._db.executemany(
                    "UPDATE subscribers SET handle = ?, mailbox = ? WHERE id = ?",
                    [(handle_of(bytes(secret)), mail_key(email), i) for i, secret, email in rows],
                )

    def _note(self, event: str, **fields: Any) -> None:
        """Log a change as a record (:func:`digest.safelog.log_change`) once it is committed."""
        if self._db.in_transaction:
            self._records.append((event, fields))
        else:
            log_change(event, **fields)

    def _committed(self, committed: bool = True) -> None:
        records, self._records = self._records, []
        for event, fields in records if committed else ():
            log_change(event, **fields)

    @property
    def connection(self) -> Connection:
        """The open database, for the modules that keep more in it (records, imports)."""
        return self._db

    def __enter__(self) -> SubscriberStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # -- reading

    _COLUMNS = "id, email, name, status, subscribed_at, categories, secret, source_id, language"

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
            language=row[8] or "",
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

    def get_by_handle(self, handle: str) -> Subscriber | None:
        """The one subscriber with this handle. Handles come from random secrets, so two
        rows share one only when a secret was copied (a hand-made store): then neither
        is named by it (the index is not unique, so such a store still opens)."""
        rows = self._db.execute(
            f"SELECT {self._COLUMNS} FROM subscribers WHERE handle = ? LIMIT 2", (handle,)
        ).fetchall()
        return self._row(rows[0]) if len(rows) == 1 else None

    def named_by(self, subject: Subject) -> Subscriber | None:
        """The subscriber a link names (by handle, or by address in the older links)."""
        if subject.handle is not None:
            return self.get_by_handle(subject.handle)
        return self.get(subject.email or "")

    def mailbox_status(self, email: str, status: str) -> Subscriber | None:
        """A subscriber with ``status`` whose address reaches the same mailbox as ``email``
        (:func:`~digest.audience.mailbox.mailbox_key`: Gmail dots, +tags, case, IDN)."""
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM subscribers WHERE mailbox = ? AND status = ? "
            "ORDER BY id LIMIT 1",
            (mail_key(email), status),
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

    def _write(self, sql: str, params: Sequence[Any]) -> Cursor:
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
        name = clean_name(name)
        stamp = _iso(now)
        existing = self.get(key)
        decided = self._decide(None if existing is None else existing.status, status, cause)
        if decided.outcome == "refused":
            raise StatusRefused(f"{key}: {decided.reason}")
        if existing is None:
            if decided.after is None:  # this cause adds no one (e.g. an unsubscribe)
                raise StoreError(f"no subscriber {key} in {self.path}")
            secret = secrets.token_bytes(32)
            inserted = self._write(
                "INSERT INTO subscribers (email, name, status, subscribed_at, categories, "
                "secret, source_id, updated_at, status_cause, handle, mailbox) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING",
                (
                    key,
                    name,
                    decided.after,
                    subscribed_at or stamp,
                    json.dumps(list(categories)),
                    secret,
                    source_id,
                    stamp,
                    decided.cause.value,
                    handle_of(secret),
                    mail_key(key),
                ),
            )
            if inserted.rowcount == 0:  # another process (or host) added it just now
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
            created = self.get(key)
            assert created is not None
            self._note(
                "status", email=key, before=None, after=decided.after, cause=decided.cause.value
            )
            return created, True
        cursor = self._write(
            "UPDATE subscribers SET name = ?, status = ?, categories = ?, updated_at = ?, "
            "status_cause = CASE WHEN status = ? THEN status_cause ELSE ? END "
            "WHERE id = ? AND status = ?",
            (
                name or existing.name,
                decided.after,
                json.dumps(list(categories)),
                stamp,
                decided.after,
                decided.cause.value,
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
        if decided.changed:
            self._note(
                "status",
                email=key,
                before=existing.status,
                after=decided.after,
                cause=decided.cause.value,
            )
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
                "UPDATE subscribers SET status = ?, status_cause = ?, updated_at = ? "
                "WHERE id = ? AND status = ?",
                (decided.after, decided.cause.value, _iso(now), found.id, found.status),
            )
            if cursor.rowcount:  # else another process changed it in between: decide again
                self._note(
                    "status",
                    email=found.email,
                    before=found.status,
                    after=decided.after,
                    cause=decided.cause.value,
                )
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
        self._note("categories", email=found.email, categories=list(categories))
        return self._require(email)

    def set_language(self, email: str, language: str, *, now: datetime) -> Subscriber:
        """Store a language tag (checked by :mod:`digest.audience.settings`); '' is the site's."""
        found = self._require(email)
        self._write(
            "UPDATE subscribers SET language = ?, updated_at = ? WHERE id = ?",
            (language, _iso(now), found.id),
        )
        self._note("language", email=found.email, language=language)
        return self._require(email)

    def remove(self, email: str) -> bool:
        """Delete a subscriber and their secret (their old links stop working)."""
        found = self.get(email)
        if found is None:
            return False
        self._write("DELETE FROM subscribers WHERE id = ?", (found.id,))
        self._note("removed", email=found.email, before=found.status)
        return True

    @contextlib.contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[None]:
        """Writes inside are one commit (one fsync): all of them, or none on an exception.

        ``commit=False`` rolls everything back at the end (a dry run)."""
        self._write("BEGIN IMMEDIATE", ())
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._committed(False)
            raise
        self._write("COMMIT" if commit else "ROLLBACK", ())
        self._committed(commit)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Writes inside happen together or not at all, inside or outside a transaction
        (a SAVEPOINT: it nests in :meth:`transaction` and in the service's batches)."""
        outer = not self._db.in_transaction
        self._write("SAVEPOINT digest_atomic", ())
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK TO digest_atomic")
            self._db.execute("RELEASE digest_atomic")
            if outer:
                self._committed(False)
            raise
        self._write("RELEASE digest_atomic", ())
        if outer:
            self._committed()

    def insert_imported(self, rows: Sequence[ImportedRow], *, now: datetime) -> None:
        """New rows from an import, written with one statement; each status goes through
        the status model (cause ``import``) before anything is written."""
        stamp = _iso(now)
        params: list[tuple[Any, ...]] = []
        for row in rows:
            decided = self._decide(None, row.status, Cause.IMPORT)
            if decided.after is None:
                raise StoreError(f"{row.email}: {decided.reason}")
            secret = secrets.token_bytes(32)
            params.append(
                (
                    row.email,
                    clean_name(row.name),
                    decided.after,
                    row.subscribed_at,
                    json.dumps(list(row.categories)),
                    secret,
                    row.source_id,
                    stamp,
                    row.status_at,
                    row.source,
                    handle_of(secret),
                    mail_key(row.email),
                    row.confirmed_at,
                    row.reason,
                    row.consent,
                )
            )
        try:
            self._db.executemany(
                "INSERT INTO subscribers (email, name, status, subscribed_at, categories, "
                "secret, source_id, updated_at, status_at, status_cause, source, handle, "
                "mailbox, confirmed_at, reason, consent) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'import', ?, ?, ?, ?, ?, ?)",
                params,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        for one in params:
            self._note("status", email=one[0], before=None, after=one[2], cause="import")

    def update_imported(
        self,
        email: str,
        *,
        name: str,
        categories: Sequence[str],
        source_id: str | None,
        now: datetime,
    ) -> None:
        found = self._require(email)
        self._write(
            "UPDATE subscribers SET name = ?, categories = ?, source_id = ?, updated_at = ? "
            "WHERE id = ?",
            (clean_name(name), json.dumps(list(categories)), source_id, _iso(now), found.id),
        )

    # -- what the web service remembers

    def claim_delivery(self, provider: str, delivery: str, *, now: datetime, keep: float) -> bool:
        """Record a webhook delivery; True the first time, False when it was seen before.

        One INSERT, so it is atomic across threads and processes: of two requests carrying
        the same id, exactly one gets True. Records older than ``keep`` seconds go (a
        delivery that old is refused by its timestamp before it gets here).
        """
        digest = hashlib.sha256(delivery.encode("utf-8", "surrogatepass")).hexdigest()
        stamp = now.timestamp()
        self._write("DELETE FROM webhook_deliveries WHERE received_at < ?", (stamp - keep,))
        cursor = self._write(
            "INSERT OR IGNORE INTO webhook_deliveries (provider, delivery, received_at) "
            "VALUES (?, ?, ?)",
            (provider, digest, stamp),
        )
        return cursor.rowcount == 1

    def delivery_seen(self, provider: str, delivery: str) -> bool:
        """Whether :meth:`claim_delivery` recorded this delivery (a read; claims decide)."""
        digest = hashlib.sha256(delivery.encode("utf-8", "surrogatepass")).hexdigest()
        row = self._db.execute(
            "SELECT 1 FROM webhook_deliveries WHERE provider = ? AND delivery = ?",
            (provider, digest),
        ).fetchone()
        return row is not None

    def reserve_mail(self, email: str, *, now: datetime, window: float, limit: int) -> bool:
        """Count one service mail to ``email``'s mailbox (:func:`mail_key`); False (and
        nothing counted) when ``limit`` were already sent within the last ``window`` seconds.

        One INSERT … SELECT, so the check and the count cannot be split by another request
        or another process.
        """
        key = mail_key(email)
        stamp = now.timestamp()
        self._write("DELETE FROM service_mail WHERE sent_at < ?", (stamp - window,))
        cursor = self._write(
            "INSERT INTO service_mail (recipient, sent_at) SELECT ?, ? WHERE "
            "(SELECT COUNT(*) FROM service_mail WHERE recipient = ? AND sent_at >= ?) < ?",
            (key, stamp, key, stamp - window, limit),
        )
        return cursor.rowcount == 1

    def forget_mail(self, email: str) -> int:
        """Drop the service-mail counts of ``email``'s mailbox (an erasure); how many."""
        return self._write(
            "DELETE FROM service_mail WHERE recipient = ?", (mail_key(email),)
        ).rowcount


def unsubscribe(
    store: SubscriberStore,
    token_or_email: str,
    *,
    server: bytes | Sequence[bytes] | None,
    now: datetime,
) -> tuple[Subscriber, Transition]:
    """The operator's unsubscribe (cause ``cli_unsubscribe``), by address or by the token
    from someone's unsubscribe link. A stronger status (bounced, complained) is kept.

    Raises TokenError for a bad token, StoreError for an address that is not a subscriber.
    """
    if "@" in token_or_email:  # tokens are base64url, so never hold an @
        email = token_or_email
    else:
        servers = [server] if server is None or isinstance(server, bytes) else list(server)

        def key_for(subject: Subject) -> list[bytes] | None:
            # every link key still verifying (a rotation's grace period)
            found = store.named_by(subject)
            return [signing_key(found.secret, key) for key in servers] if found else None

        subject = verify_token(token_or_email, "unsubscribe", key_for, now=now)
        named = store.named_by(subject)
        if named is None:
            raise StoreError("the subscriber this link names was removed just now")
        email = named.email
    return store.change_status(email, "unsubscribed", cause=Cause.CLI_UNSUBSCRIBE, now=now)
