"""Per-reader engagement, only with the reader's consent: what the subscriber store keeps.

With ``analytics.clicks: per_subscriber`` a reader may agree that digest counts which
issues they clicked in (the subscribe form, or their preferences page: a box, off by
default). The agreement is part of their consent record (:class:`~digest.audience.records.
Consent`): ``engagement_at`` (when) and ``engagement_origin`` (where: ``serve:subscribe``,
``serve:preferences``, ``import:<platform>``); turning it off removes both and notes
``engagement_withdrawn_at``. Only readers who agreed get click links that name them (by
their opaque handle, :mod:`digest.audience.clicktokens`), and only their clicks are kept per
reader; everyone else's are counted in aggregate only.

The one use of those rows besides the report is the sunset flow
(:mod:`digest.serve.sunset`), whose state lives here too, one row per reader and round::

    sunset_rounds (subscriber_id, round, state, mailed_at, settled_at)
        round: the newest issue of the ones the reader did not click in;
        state: mailing (claimed, the mail on its way), mailed, kept ("keep me subscribed"),
        ended (unsubscribed with reason sunset)

Rows go with their subscriber (a trigger), so erasure removes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from digest.audience.records import Consent, consent_text, iso
from digest.store.database import Connection

ORIGINS = ("serve:subscribe", "serve:preferences", "cli")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sunset_rounds (
    subscriber_id INTEGER NOT NULL,
    round         TEXT NOT NULL,
    state         TEXT NOT NULL,
    mailed_at     TEXT,
    settled_at    TEXT,
    PRIMARY KEY (subscriber_id, round)
);
CREATE INDEX IF NOT EXISTS sunset_rounds_state ON sunset_rounds (state);
CREATE TRIGGER IF NOT EXISTS sunset_rounds_go_with_the_subscriber
AFTER DELETE ON subscribers
BEGIN
    DELETE FROM sunset_rounds WHERE subscriber_id = OLD.id;
END;
"""
SCHEMA_POSTGRESQL = """
CREATE TABLE IF NOT EXISTS sunset_rounds (
    subscriber_id BIGINT NOT NULL,
    round         TEXT NOT NULL,
    state         TEXT NOT NULL,
    mailed_at     TEXT,
    settled_at    TEXT,
    PRIMARY KEY (subscriber_id, round)
);
CREATE INDEX IF NOT EXISTS sunset_rounds_state ON sunset_rounds (state);
CREATE OR REPLACE FUNCTION digest_sunset_rounds_go() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sunset_rounds WHERE subscriber_id = OLD.id;
    RETURN OLD;
END;
$$;
DROP TRIGGER IF EXISTS sunset_rounds_go_with_the_subscriber ON subscribers;
CREATE TRIGGER sunset_rounds_go_with_the_subscriber
AFTER DELETE ON subscribers
FOR EACH ROW EXECUTE FUNCTION digest_sunset_rounds_go();
"""


def consents(consent: Consent | None) -> bool:
    """Whether this consent record holds a standing agreement to per-reader engagement."""
    return consent is not None and bool(consent.engagement_at)


def _consent(raw: Any) -> Consent | None:
    if not raw:
        return None
    try:
        return Consent.from_dict(json.loads(raw))
    except (ValueError, TypeError):
        return None


def with_engagement(consent: Consent, now: datetime, origin: str) -> Consent:
    """``consent`` with the reader's agreement to per-reader engagement added."""
    return replace(
        consent, engagement_at=iso(now), engagement_origin=origin, engagement_withdrawn_at=None
    )


@dataclass(frozen=True)
class Reader:
    """A subscriber as engagement sees them: no name, no secret."""

    id: int
    email: str
    handle: str
    status: str
    language: str
    consent: Consent | None

    @property
    def consenting(self) -> bool:
        return consents(self.consent)


def _reader(row: tuple[Any, ...]) -> Reader:
    sid, email, handle, status, language, raw = row
    return Reader(
        int(sid), str(email), str(handle or ""), str(status), str(language or ""), _consent(raw)
    )


_READER = "SELECT id, email, handle, status, language, consent FROM subscribers"


def reader(db: Connection, email: str) -> Reader | None:
    row = db.execute(f"{_READER} WHERE email = ?", (email,)).fetchone()
    return None if row is None else _reader(row)


def readers(db: Connection, *, status: str = "active", chunk: int = 2000) -> Iterator[Reader]:
    """Every subscriber in ``status``, in id order."""
    last = 0
    while True:
        rows = db.execute(
            f"{_READER} WHERE status = ? AND id > ? ORDER BY id LIMIT ?", (status, last, chunk)
        ).fetchall()
        if not rows:
            return
        yield from (_reader(row) for row in rows)
        last = int(rows[-1][0])


def consenting_ids(db: Connection) -> frozenset[int]:
    """The ids of the active subscribers who agreed to per-reader engagement."""
    return frozenset(r.id for r in readers(db) if r.consenting)


def consenting_handles(db: Connection, handles: Iterable[str]) -> set[str]:
    """Those of ``handles`` whose subscriber agrees to per-reader engagement now."""
    wanted = sorted(set(handles))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        marks = ",".join("?" * len(part))
        for handle, raw in db.execute(
            f"SELECT handle, consent FROM subscribers WHERE handle IN ({marks})", part
        ):
            if consents(_consent(raw)):
                found.add(str(handle))
    return found


def set_engagement(
    db: Connection, email: str, *, agree: bool, now: datetime, origin: str
) -> Reader | None:
    """Record the reader's choice in their consent record; the reader as they are after
    (None: no such subscriber). Withdrawing also ends any sunset round in progress."""
    found = reader(db, email)
    if found is None or found.consenting == agree:
        return found
    base = found.consent or Consent()
    if agree:
        changed = with_engagement(base, now, origin)
    else:
        changed = replace(
            base, engagement_at=None, engagement_origin=None, engagement_withdrawn_at=iso(now)
        )
        db.execute("DELETE FROM sunset_rounds WHERE subscriber_id = ?", (found.id,))
    db.execute(
        "UPDATE subscribers SET consent = ?, updated_at = ? WHERE id = ?",
        (consent_text(changed), iso(now), found.id),
    )
    return replace(found, consent=changed)


# --------------------------------------------------------------------------- sunset rounds

SUNSET_STATES = ("mailing", "mailed", "kept", "ended")
SUNSET_TRANSITIONS: dict[str, frozenset[str]] = {
    "mailed": frozenset({"mailing"}),  # the provider said sent
    "kept": frozenset({"mailing", "mailed"}),  # "keep me subscribed", or they read again
    "ended": frozenset({"mailed"}),  # the grace days passed: unsubscribed
}
"""A round's only moves: target state -> the states it may come from. A round is made
``mailing`` (:func:`claim_round`); a refused mail's claim is released (deleted)."""


@dataclass(frozen=True)
class Round:
    subscriber_id: int
    round: str
    state: str
    mailed_at: str | None
    settled_at: str | None


def rounds(db: Connection, subscriber_id: int | None = None) -> list[Round]:
    """Every sunset round (or one reader's), oldest first."""
    where, params = ("WHERE subscriber_id = ?", (subscriber_id,)) if subscriber_id else ("", ())
    rows = db.execute(
        "SELECT subscriber_id, round, state, mailed_at, settled_at FROM sunset_rounds "
        f"{where} ORDER BY subscriber_id, round",
        params,
    ).fetchall()
    return [Round(int(r[0]), str(r[1]), str(r[2]), r[3], r[4]) for r in rows]


def claim_round(db: Connection, subscriber_id: int, round_id: str) -> bool:
    """Claim the round's mail for this run: False when a run claimed it before."""
    cursor = db.execute(
        "INSERT INTO sunset_rounds (subscriber_id, round, state) VALUES (?, ?, 'mailing') "
        "ON CONFLICT (subscriber_id, round) DO NOTHING",
        (subscriber_id, round_id),
    )
    return cursor.rowcount == 1


def release_round(db: Connection, subscriber_id: int, round_id: str) -> None:
    """The mail was refused: the next run may try again."""
    db.execute(
        "DELETE FROM sunset_rounds WHERE subscriber_id = ? AND round = ? AND state = 'mailing'",
        (subscriber_id, round_id),
    )


def settle_round(
    db: Connection, subscriber_id: int, round_id: str, *, before: str, after: str, now: datetime
) -> bool:
    """Move one round from ``before`` to ``after`` (a move :data:`SUNSET_TRANSITIONS`
    allows); False when the round was not in ``before``."""
    if before not in SUNSET_TRANSITIONS.get(after, frozenset()):
        raise ValueError(f"a sunset round does not move from {before} to {after}")
    column = "mailed_at" if after == "mailed" else "settled_at"
    cursor = db.execute(
        f"UPDATE sunset_rounds SET state = ?, {column} = ? "
        "WHERE subscriber_id = ? AND round = ? AND state = ?",
        (after, iso(now), subscriber_id, round_id, before),
    )
    return cursor.rowcount == 1


def keep(db: Connection, subscriber_id: int, now: datetime) -> int:
    """The reader asked to stay: every round of theirs waiting on them is kept."""
    sources = sorted(SUNSET_TRANSITIONS["kept"])
    cursor = db.execute(
        "UPDATE sunset_rounds SET state = 'kept', settled_at = ? "
        f"WHERE subscriber_id = ? AND state IN ({','.join('?' * len(sources))})",
        (iso(now), subscriber_id, *sources),
    )
    return max(cursor.rowcount, 0)
