"""Addresses erased on request: only a keyed hash of each is kept (of the address and of
its canonical mailbox), so an import, ``add`` or a form that brings one back is recognised
without the address being stored."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from digest.audience.mailbox import mailbox_key
from digest.audience.records import iso
from digest.errors import StoreError
from digest.store.database import Connection


def erasure_hash(email: str, key: bytes) -> str:
    """The keyed hash that stands for an erased (already normalised) address."""
    return hmac.new(key, b"digest-erased-v1\x00" + email.encode(), hashlib.sha256).hexdigest()


def erasure_hashes(email: str, key: bytes) -> tuple[str, str]:
    """The hashes an erasure keeps: of the address, and of its canonical mailbox
    (:func:`~digest.audience.mailbox.mailbox_key`), so another spelling of the same inbox
    (Gmail dots, a +tag) is recognised too. Erasures from before kept only the first."""
    return erasure_hash(email, key), erasure_hash("mailbox:" + mailbox_key(email), key)


def forgotten_at(db: Connection, email: str, key: bytes | None) -> str | None:
    """When this address was erased, or None. Without a key nothing can be recognised, so
    a store that holds erased addresses refuses to go on (a silent miss would bring one
    back)."""
    if key is None:
        if db.execute("SELECT 1 FROM forgotten LIMIT 1").fetchone():
            raise StoreError(
                "this store holds addresses erased on request, and recognising them needs "
                "the privacy key they were erased with (privacy.key, or the server secret)"
            )
        return None
    row = db.execute(
        "SELECT MIN(forgotten_at) FROM forgotten WHERE hash IN (?, ?)",
        erasure_hashes(email, key),
    ).fetchone()
    return str(row[0]) if row and row[0] else None


def has_forgotten(db: Connection) -> bool:
    return bool(db.execute("SELECT 1 FROM forgotten LIMIT 1").fetchone())


def remember_forgotten(db: Connection, email: str, key: bytes, now: datetime) -> None:
    for hashed in erasure_hashes(email, key):
        db.execute(
            "INSERT OR IGNORE INTO forgotten (hash, forgotten_at) VALUES (?, ?)",
            (hashed, iso(now)),
        )


def clear_forgotten(db: Connection, email: str, key: bytes) -> bool:
    """Lift the suppression (a new, confirmed subscription); True when there was one."""
    cursor = db.execute("DELETE FROM forgotten WHERE hash IN (?, ?)", erasure_hashes(email, key))
    return cursor.rowcount > 0


@dataclass(frozen=True)
class Erased:
    email: str
    existed: bool
    already: bool  # the address was erased before
    forgotten_at: str


def forget(db: Connection, email: str, key: bytes, now: datetime) -> Erased:
    """Erase one person's data from the subscriber store and keep the keyed hash.

    The row (name, address, preferences, consent, secret) is deleted; the history keeps
    only numbers and statuses (its subscriber id, times, statuses, causes) and records
    the erasure as ``forgotten``.
    """
    stamp = iso(now)
    db.execute("BEGIN IMMEDIATE")
    try:
        already = forgotten_at(db, email, key)
        row = db.execute("SELECT id FROM subscribers WHERE email = ?", (email,)).fetchone()
        if row is not None:
            # The delete trigger reads these to record the erasure with its time.
            db.execute(
                "UPDATE subscribers SET status_cause = 'forget', updated_at = ? WHERE id = ?",
                (stamp, row[0]),
            )
            db.execute("DELETE FROM subscribers WHERE id = ?", (row[0],))
        remember_forgotten(db, email, key, now)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return Erased(email, row is not None, already is not None, already or stamp)
