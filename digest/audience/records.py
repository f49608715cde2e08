"""Everything the subscriber store keeps beyond "who gets the digest": consent, source,
history, and the keyed hashes of addresses erased on request.

Schema added to the subscriber store (each column added with ``ALTER TABLE`` only when it
is missing, so an older file is upgraded in place)::

    subscribers.source        TEXT NOT NULL DEFAULT ''  where the person came from: serve,
                                                         cli, import:<platform>
    subscribers.confirmed_at  TEXT   when they confirmed (double opt-in), if known
    subscribers.status_at     TEXT   when the status last changed
    subscribers.status_cause  TEXT   what changed it last (confirm, import, webhook, forget …)
    subscribers.reason        TEXT   why, in words, when a reason is known (an unsubscribe
                                     reason from an import, a bounce's detail)
    subscribers.consent       TEXT   JSON: {"at", "ip", "origin", "text", "method", …}

    subscriber_events (id, subscriber_id, at, status, previous, cause, source)
        one row per status change, written by triggers on the subscribers table, so every
        path that changes a status (serve, webhooks, the CLI, imports) is recorded the same
        way; the dashboard's "subscribers over time" replays it.

    forgotten (hash PRIMARY KEY, forgotten_at)
        HMAC-SHA256 of an erased address under the erasure key: the address itself is gone,
        yet it is recognised when an import, ``add`` or a form brings it back.

The client address in a consent record is never stored in full: ``truncate`` keeps the
network (IPv4 /24, IPv6 /48), ``hash`` keeps a keyed hash (see :func:`stored_address`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from digest.errors import StoreError
from digest.store.clock import utc_text
from digest.store.database import Connection
from digest.store.sqlite import retry_when_busy

INACTIVE = ("unsubscribed", "bounced", "complained")

_COLUMNS = (
    ("source", "TEXT NOT NULL DEFAULT ''"),
    ("confirmed_at", "TEXT"),
    ("status_at", "TEXT"),
    ("status_cause", "TEXT"),
    ("reason", "TEXT"),
    ("consent", "TEXT"),
)

_TABLES = """
CREATE TABLE IF NOT EXISTS subscriber_events (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL,
    at            TEXT NOT NULL,
    status        TEXT NOT NULL,
    previous      TEXT,
    cause         TEXT,
    source        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS subscriber_events_at ON subscriber_events (at, id);
CREATE INDEX IF NOT EXISTS subscriber_events_subscriber ON subscriber_events (subscriber_id);
CREATE TABLE IF NOT EXISTS forgotten (
    hash          TEXT PRIMARY KEY,
    forgotten_at  TEXT NOT NULL
);
"""

_INACTIVE_SQL = "('unsubscribed', 'bounced', 'complained')"

# An arrival is recorded at subscribed_at; someone who arrives already gone (an import of an
# unsubscribed person) is recorded as active then, and as gone at status_at.
_TRIGGERS = f"""
CREATE TRIGGER IF NOT EXISTS subscriber_arrived AFTER INSERT ON subscribers BEGIN
    INSERT INTO subscriber_events (subscriber_id, at, status, previous, cause, source)
    VALUES (NEW.id, NEW.subscribed_at,
            CASE WHEN NEW.status IN {_INACTIVE_SQL} THEN 'active' ELSE NEW.status END,
            NULL, NEW.status_cause, NEW.source);
    INSERT INTO subscriber_events (subscriber_id, at, status, previous, cause, source)
    SELECT NEW.id, COALESCE(NEW.status_at, NEW.updated_at), NEW.status, 'active',
           NEW.status_cause, NEW.source
    WHERE NEW.status IN {_INACTIVE_SQL};
    UPDATE subscribers
    SET status_at = CASE WHEN NEW.status IN {_INACTIVE_SQL} THEN NEW.updated_at
                         ELSE NEW.subscribed_at END
    WHERE id = NEW.id AND NEW.status_at IS NULL;
END;
CREATE TRIGGER IF NOT EXISTS subscriber_status_changed AFTER UPDATE OF status ON subscribers
WHEN OLD.status IS NOT NEW.status BEGIN
    INSERT INTO subscriber_events (subscriber_id, at, status, previous, cause, source)
    VALUES (NEW.id, NEW.updated_at, NEW.status, OLD.status, NEW.status_cause, NEW.source);
    UPDATE subscribers SET status_at = NEW.updated_at WHERE id = NEW.id;
END;
CREATE TRIGGER IF NOT EXISTS subscriber_source_set AFTER UPDATE OF source ON subscribers
WHEN OLD.source IS NOT NEW.source BEGIN
    UPDATE subscriber_events SET source = NEW.source WHERE subscriber_id = NEW.id;
END;
CREATE TRIGGER IF NOT EXISTS subscriber_deleted AFTER DELETE ON subscribers BEGIN
    INSERT INTO subscriber_events (subscriber_id, at, status, previous, cause, source)
    VALUES (OLD.id,
            CASE WHEN OLD.status_cause = 'forget' THEN OLD.updated_at
                 ELSE strftime('%Y-%m-%dT%H:%M:%SZ', 'now') END,
            CASE WHEN OLD.status_cause = 'forget' THEN 'forgotten' ELSE 'removed' END,
            OLD.status, OLD.status_cause, OLD.source);
END;
"""

_PG_INACTIVE = _INACTIVE_SQL
RECORDS_POSTGRESQL = f"""
ALTER TABLE subscribers ADD COLUMN IF NOT EXISTS source TEXT NOT NULL DEFAULT '';
ALTER TABLE subscribers ADD COLUMN IF NOT EXISTS confirmed_at TEXT;
ALTER TABLE subscribers ADD COLUMN IF NOT EXISTS status_at TEXT;
ALTER TABLE subscribers ADD COLUMN IF NOT EXISTS status_cause TEXT;
ALTER TABLE subscribers ADD COLUMN IF NOT EXISTS reason TEXT;
ALTER TABLE subscribers ADD COLUMN IF NOT EXISTS consent TEXT;
CREATE TABLE IF NOT EXISTS subscriber_events (
    id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    subscriber_id BIGINT NOT NULL,
    at            TEXT NOT NULL,
    status        TEXT NOT NULL,
    previous      TEXT,
    cause         TEXT,
    source        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS subscriber_events_at ON subscriber_events (at, id);
CREATE INDEX IF NOT EXISTS subscriber_events_subscriber ON subscriber_events (subscriber_id);
CREATE TABLE IF NOT EXISTS forgotten (
    hash          TEXT PRIMARY KEY,
    forgotten_at  TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION digest_subscriber_arrived() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO subscriber_events (subscriber_id, at, status, previous, cause, source)
    VALUES (NEW.id, NEW.subscribed_at,
            CASE WHEN NEW.status IN {_PG_INACTIVE} THEN 'active' ELSE NEW.status END,
            NULL, NEW.status_cause, NEW.source);
    IF NEW.status IN {_PG_INACTIVE} THEN
        INSERT INTO subscriber_events (subscriber_id, at, status, previous, cause, source)
        VALUES (NEW.id, COALESCE(NEW.status_at, NEW.updated_at), NEW.status, 'active',
                NEW.status_cause, NEW.source);
    END IF;
    IF NEW.status_at IS NULL THEN
        UPDATE subscribers
        SET status_at = CASE WHEN NEW.status IN {_PG_INACTIVE} THEN NEW.updated_at
                             ELSE NEW.subscribed_at END
        WHERE id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION digest_subscriber_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO subscriber_events (subscriber_id, at, status, previous, cause, source)
    VALUES (NEW.id, NEW.updated_at, NEW.status, OLD.status, NEW.status_cause, NEW.source);
    UPDATE subscribers SET status_at = NEW.updated_at WHERE id = NEW.id;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION digest_subscriber_source_set() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE subscriber_events SET source = NEW.source WHERE subscriber_id = NEW.id;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION digest_subscriber_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO subscriber_events (subscriber_id, at, status, previous, cause, source)
    VALUES (OLD.id,
            CASE WHEN OLD.status_cause = 'forget' THEN OLD.updated_at
                 ELSE to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') END,
            CASE WHEN OLD.status_cause = 'forget' THEN 'forgotten' ELSE 'removed' END,
            OLD.status, OLD.status_cause, OLD.source);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS subscriber_arrived ON subscribers;
CREATE TRIGGER subscriber_arrived AFTER INSERT ON subscribers
    FOR EACH ROW EXECUTE FUNCTION digest_subscriber_arrived();
DROP TRIGGER IF EXISTS subscriber_status_changed ON subscribers;
CREATE TRIGGER subscriber_status_changed AFTER UPDATE OF status ON subscribers
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION digest_subscriber_status_changed();
DROP TRIGGER IF EXISTS subscriber_source_set ON subscribers;
CREATE TRIGGER subscriber_source_set AFTER UPDATE OF source ON subscribers
    FOR EACH ROW WHEN (OLD.source IS DISTINCT FROM NEW.source)
    EXECUTE FUNCTION digest_subscriber_source_set();
DROP TRIGGER IF EXISTS subscriber_deleted ON subscribers;
CREATE TRIGGER subscriber_deleted AFTER DELETE ON subscribers
    FOR EACH ROW EXECUTE FUNCTION digest_subscriber_deleted();
"""
"""The same schema on PostgreSQL (subscriber store migration 2): the triggers in PL/pgSQL."""

# Stores made before the history existed get one: arrival, and the leaving if they left.
_BACKFILL = f"""
INSERT INTO subscriber_events (subscriber_id, at, status, previous, cause, source)
SELECT id, subscribed_at,
       CASE WHEN status IN {_INACTIVE_SQL} THEN 'active' ELSE status END, NULL, 'history', source
FROM subscribers;
INSERT INTO subscriber_events (subscriber_id, at, status, previous, cause, source)
SELECT id, updated_at, status, 'active', 'history', source
FROM subscribers WHERE status IN {_INACTIVE_SQL};
UPDATE subscribers SET status_at = CASE WHEN status IN {_INACTIVE_SQL} THEN updated_at
                                        ELSE subscribed_at END
WHERE status_at IS NULL;
"""


def extend_schema(db: sqlite3.Connection) -> None:
    """Add this module's columns, tables and triggers to a subscriber store (idempotent)."""

    def upgrade() -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            present = {row[1] for row in db.execute("PRAGMA table_info(subscribers)")}
            for name, kind in _COLUMNS:
                if name not in present:
                    db.execute(f"ALTER TABLE subscribers ADD COLUMN {name} {kind}")
            had_history = bool(
                db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                    "name = 'subscriber_events'"
                ).fetchone()
            )
            for statement in _split(_TABLES):
                db.execute(statement)
            if not had_history:
                for statement in _split(_BACKFILL):
                    db.execute(statement)
            for trigger in _TRIGGERS.split("END;"):
                if trigger.strip():
                    db.execute(trigger + "END;")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    try:
        retry_when_busy(upgrade)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot upgrade the subscriber store: {exc}") from None


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


# --------------------------------------------------------------------------- time


def iso(moment: datetime) -> str:
    return utc_text(moment, "seconds")


# --------------------------------------------------------------------------- consent

ADDRESS_POLICIES = ("truncate", "hash")


def stored_address(address: str | None, policy: str, key: bytes | None) -> str | None:
    """A client address as a consent record keeps it: never in full.

    ``truncate``: the network only (IPv4 /24, IPv6 /48), e.g. ``203.0.113.0/24``;
    ``hash``: ``hmac-sha256:<first 32 hex digits>`` under ``key`` (without a key the address
    is truncated instead). Text that is not an IP address is kept as ``unknown``.
    """
    if not address:
        return None
    text = address.strip()
    if "/" in text or text.startswith("hmac-sha256:"):
        return text  # already in a stored form (an export read back)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return "unknown"
    if policy == "hash" and key:
        digest = hmac.new(key, b"digest-client-address\x00" + ip.packed, hashlib.sha256)
        return "hmac-sha256:" + digest.hexdigest()[:32]
    if isinstance(ip, ipaddress.IPv4Address):  # the /24 by arithmetic: an import's hot path
        return f"{ipaddress.IPv4Address(int(ip) & 0xFFFFFF00)}/24"
    return str(ipaddress.ip_network((ip, 48), strict=False))


@dataclass(frozen=True)
class Consent:
    """When, from where and to what text someone agreed (as recorded or imported)."""

    at: str | None = None
    ip: str | None = None  # in its stored form (see stored_address)
    origin: str | None = None  # the form's page or site
    text: str | None = None  # the consent text shown
    method: str | None = None  # form, json, import:<platform>, cli
    confirm_ip: str | None = None
    # per-reader engagement (analytics.clicks: per_subscriber; audience/engagement.py)
    engagement_at: str | None = None
    engagement_origin: str | None = None
    engagement_withdrawn_at: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Consent | None:
        if not data:
            return None
        # an import's "consent engagement_at" column arrives as "engagement at"
        given = {str(k).replace(" ", "_"): v for k, v in data.items()}
        known = {k: str(v) for k, v in given.items() if k in cls.__dataclass_fields__ and v}
        return cls(**known) if known else None


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Record:
    """One person's whole record as the store holds it (never the secret)."""

    email: str
    name: str
    status: str
    subscribed_at: str
    categories: tuple[str, ...]
    source_id: str | None = None
    source: str = ""
    confirmed_at: str | None = None
    status_at: str | None = None
    status_cause: str | None = None
    reason: str | None = None
    consent: Consent | None = None
    updated_at: str | None = None
    history: tuple[dict[str, Any], ...] = field(default=())

    def as_dict(self, *, with_history: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "email": self.email,
            "name": self.name,
            "status": self.status,
            "subscribed_at": self.subscribed_at,
            "confirmed_at": self.confirmed_at,
            "status_at": self.status_at,
            "reason": self.reason,
            "categories": list(self.categories),
            "source": self.source,
            "id": self.source_id,
            "consent": self.consent.as_dict() if self.consent else None,
        }
        if with_history:
            data["status_cause"] = self.status_cause
            data["updated_at"] = self.updated_at
            data["history"] = list(self.history)
        return data


_RECORD_COLUMNS = (
    "id, email, name, status, subscribed_at, categories, source_id, source, confirmed_at, "
    "status_at, status_cause, reason, consent, updated_at"
)


def _record(row: tuple[Any, ...], history: tuple[dict[str, Any], ...] = ()) -> Record:
    consent = None
    if row[12]:
        try:
            consent = Consent.from_dict(json.loads(row[12]))
        except (ValueError, TypeError):
            consent = None
    return Record(
        email=row[1],
        name=row[2],
        status=row[3],
        subscribed_at=row[4],
        categories=tuple(json.loads(row[5])),
        source_id=row[6],
        source=row[7] or "",
        confirmed_at=row[8],
        status_at=row[9],
        status_cause=row[10],
        reason=row[11],
        consent=consent,
        updated_at=row[13],
        history=history,
    )


def get_record(db: Connection, email: str, *, history: bool = True) -> Record | None:
    """One person's record (``email`` normalised), with their status history if asked."""
    row = db.execute(
        f"SELECT {_RECORD_COLUMNS} FROM subscribers WHERE email = ?", (email,)
    ).fetchone()
    if row is None:
        return None
    if not history:
        return _record(row)
    events = tuple(
        {"at": at, "status": status, "previous": previous, "cause": cause}
        for at, status, previous, cause in db.execute(
            "SELECT at, status, previous, cause FROM subscriber_events "
            "WHERE subscriber_id = ? ORDER BY at, id",
            (row[0],),
        )
    )
    return _record(row, events)


def get_records(db: Connection, emails: Sequence[str]) -> dict[str, Record]:
    """The records (without history) of those of ``emails`` (normalised) the store holds,
    by address: one query however many are asked for (at most a few hundred at once)."""
    if not emails:
        return {}
    marks = ", ".join("?" * len(emails))
    rows = db.execute(
        f"SELECT {_RECORD_COLUMNS} FROM subscribers WHERE email IN ({marks})", tuple(emails)
    ).fetchall()
    return {row[1]: _record(row) for row in rows}


def iter_records(db: Connection, *, chunk: int = 1000) -> Iterator[Record]:
    """Every subscriber in every status, in id order, ``chunk`` rows at a time."""
    last = 0
    while True:
        rows = db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM subscribers WHERE id > ? ORDER BY id LIMIT ?",
            (last, chunk),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield _record(row)
        last = rows[-1][0]


def consent_text(consent: Consent) -> str:
    """The consent record as the store keeps it (JSON)."""
    return json.dumps(consent.as_dict(), ensure_ascii=False, sort_keys=True)


def set_details(
    db: Connection,
    email: str,
    *,
    source: str | None = None,
    consent: Consent | None = None,
    confirmed_at: str | None = None,
    reason: str | None = None,
) -> None:
    """Fill in the details of a row the store has written (only the ones given)."""
    sets: list[str] = []
    params: list[Any] = []
    if source is not None:
        sets.append("source = ?")
        params.append(source)
    if consent is not None:
        sets.append("consent = ?")
        params.append(consent_text(consent))
    if confirmed_at is not None:
        sets.append("confirmed_at = ?")
        params.append(confirmed_at)
    if reason is not None:
        sets.append("reason = ?")
        params.append(reason)
    if not sets:
        return
    db.execute(f"UPDATE subscribers SET {', '.join(sets)} WHERE email = ?", (*params, email))


def describe(record: Record) -> list[str]:
    """One person's record as lines for a terminal."""
    lines = [
        f"{record.email}",
        f"  name:          {record.name or '-'}",
        f"  status:        {record.status}"
        + (f" since {record.status_at}" if record.status_at else "")
        + (f" ({record.reason})" if record.reason else ""),
        f"  subscribed:    {record.subscribed_at}",
        f"  confirmed:     {record.confirmed_at or '-'}",
        f"  sections:      {', '.join(record.categories) or 'every section'}",
        f"  source:        {record.source or '-'}"
        + (f" (id {record.source_id})" if record.source_id else ""),
    ]
    consent = record.consent
    if consent is None:
        lines.append("  consent:       none recorded")
    else:
        lines.append(f"  consent:       {consent.method or '-'} at {consent.at or '-'}")
        if consent.origin:
            lines.append(f"    origin:      {consent.origin}")
        if consent.ip:
            lines.append(f"    address:     {consent.ip}")
        if consent.confirm_ip:
            lines.append(f"    confirmed from: {consent.confirm_ip}")
        if consent.text:
            lines.append(f"    text shown:  {consent.text}")
        if consent.engagement_at:
            agreed = f"{consent.engagement_at} ({consent.engagement_origin})"
            lines.append(f"    clicks per reader: agreed {agreed}")
        elif consent.engagement_withdrawn_at:
            lines.append(f"    clicks per reader: withdrawn {consent.engagement_withdrawn_at}")
    if record.history:
        lines.append("  history:")
        for event in record.history:
            cause = f" ({event['cause']})" if event.get("cause") else ""
            lines.append(f"    {event['at']}  {event['status']}{cause}")
    return lines


def iter_events(db: Connection) -> Iterator[tuple[int, str, str, str]]:
    """(subscriber id, at, status, source) of every status change, oldest first."""
    for sid, at, status, source in db.execute(
        "SELECT subscriber_id, at, status, source FROM subscriber_events ORDER BY at, id"
    ):
        yield int(sid), str(at), str(status), str(source or "")


def current_counts(db: Connection) -> dict[tuple[str, str], int]:
    """{(source, status): how many} as the store holds them now."""
    return {
        (str(source or ""), str(status)): int(number)
        for source, status, number in db.execute(
            "SELECT source, status, COUNT(*) FROM subscribers GROUP BY source, status"
        )
    }


def preference_counts(db: Connection) -> dict[str, int]:
    """Among active subscribers: how many chose each section ('' for every section)."""
    counts: dict[str, int] = {}
    for (raw,) in db.execute("SELECT categories FROM subscribers WHERE status = 'active'"):
        chosen = json.loads(raw) or [""]
        for name in chosen:
            counts[name] = counts.get(name, 0) + 1
    return counts
