"""One person's way through the store, as the CLI and the service ask for it: added by
hand, shown, erased on request.

The erasure key is the HMAC of a fixed label under the privacy secret
(:func:`digest.audience.keys.privacy_secret`, which never rotates): the same secret always
gives the same key, so an address erased today is still recognised next year, and nothing
else (tokens, client-address hashes) shares the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import datetime

from digest.audience import erasures, records
from digest.audience.keys import privacy_secret
from digest.audience.records import Consent, Record, iso
from digest.audience.status import Cause
from digest.audience.subscribers import InvalidEmail, Subscriber, SubscriberStore, normalise_email
from digest.config import Config
from digest.errors import StoreError


def erasure_key(config: Config) -> bytes:
    """The key of the erased-address hashes."""
    return hmac.new(privacy_secret(config), b"digest-erasure-key-v1", hashlib.sha256).digest()


def address_form(config: Config) -> Callable[[str | None], str | None]:
    """How consent records keep a client address (``subscribers.client_address``)."""
    policy = config.subscribers.client_address
    secret = privacy_secret(config)
    key = hmac.new(secret, b"digest-address-key-v1", hashlib.sha256).digest()

    def stored(ip: str | None) -> str | None:
        return records.stored_address(ip, policy, key)

    return stored


class Forgotten(StoreError):
    """The address was erased on request; only a new confirmed subscription brings it back."""


def add_subscriber(
    store: SubscriberStore,
    email: str,
    *,
    name: str,
    categories: Sequence[str],
    status: str,
    now: datetime,
    erasure_key: bytes | None,
    cause: Cause | str = Cause.OWNER_ADD,
) -> tuple[Subscriber, bool]:
    """``digest subscribers add``: refuses an address erased on request; the status goes
    through the status model for ``cause`` (owner_add, or owner_force)."""
    key = normalise_email(email)
    erased = erasures.forgotten_at(store.connection, key, erasure_key)
    if erased is not None:
        raise Forgotten(
            f"{key} was erased on request on {erased[:10]} and stays suppressed: only a new "
            "subscription through the form, confirmed by its owner, brings it back"
        )
    subscriber, created = store.add(
        key, name=name, categories=categories, status=status, now=now, cause=cause
    )
    if created:
        records.set_details(store.connection, key, source="cli")
    return subscriber, created


def show(store: SubscriberStore, email: str) -> Record:
    try:
        key = normalise_email(email)
    except InvalidEmail as exc:
        raise StoreError(exc.message) from None
    found = records.get_record(store.connection, key)
    if found is None:
        raise StoreError(f"no subscriber {key} in {store.path}")
    return found


def forget(
    store: SubscriberStore, email: str, *, now: datetime, erasure_key: bytes
) -> erasures.Erased:
    """Erase one person from the subscriber store; the keyed hash keeps them suppressed."""
    try:
        key = normalise_email(email)
    except InvalidEmail as exc:
        raise StoreError(exc.message) from None
    return erasures.forget(store.connection, key, erasure_key, now)


def record_consent(store: SubscriberStore, email: str, consent: Consent, *, source: str) -> None:
    """Keep what a subscribe request agreed to (for a new or re-subscribing address)."""
    records.set_details(store.connection, email, consent=consent, source=source)


def record_confirmation(
    store: SubscriberStore,
    email: str,
    *,
    now: datetime,
    erasure_key: bytes | None,
    confirm_ip: str | None = None,
) -> None:
    """The owner confirmed: note when, and lift an erasure suppression (a new consent)."""
    db = store.connection
    found = records.get_record(db, email)
    consent = found.consent if found else None
    if consent is not None and confirm_ip:
        consent = Consent(**{**consent.__dict__, "confirm_ip": confirm_ip})
    records.set_details(db, email, confirmed_at=iso(now), consent=consent)
    if erasure_key is not None:
        erasures.clear_forgotten(db, email, erasure_key)
