"""Buttondown's subscriber export.

**Buttondown** (subscriber export): ``email`` (``email_address`` in newer files),
``subscriber_type`` (``type``), ``creation_date``, ``notes``, ``tags``, ``metadata``,
``referrer_url``, ``ip_address``, ``unsubscription_date``, ``undeliverability_date``.
Types: regular, premium, trialed, unpaid, gifted, churning, paused, past_due (all
receive email: active); unactivated (pending); unsubscribed; removed and spammy (kept as
unsubscribed, never mailed); undeliverable (bounced).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from digest.audience.imports.incoming import Platform
from digest.audience.imports.table import fold
from digest.audience.imports.values import cell_text, parse_time

_BUTTONDOWN = {
    "regular": "active",
    "premium": "active",
    "trialed": "active",
    "unpaid": "active",
    "gifted": "active",
    "churning": "active",
    "paused": "active",
    "past due": "active",
    "unactivated": "pending",
    "unsubscribed": "unsubscribed",
    "removed": "unsubscribed",
    "spammy": "unsubscribed",
    "undeliverable": "bounced",
}


def _buttondown(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    raw = cell_text(record, "subscriber type", "type", "status")
    status = _BUTTONDOWN.get(fold(raw)) if raw else "active"
    if status is None:
        raise ValueError(
            f"subscriber_type {raw!r} is not a Buttondown type ({', '.join(_BUTTONDOWN)})"
        )
    status_at = None
    reason = None
    if status == "unsubscribed":
        status_at = parse_time(record.get("unsubscription date"), "unsubscription_date")
        if fold(raw) != "unsubscribed":
            reason = f"{fold(raw)} in Buttondown"
    elif status == "bounced":
        status_at = parse_time(record.get("undeliverability date"), "undeliverability_date")
        reason = cell_text(record, "undeliverability reason") or "undeliverable in Buttondown"
    created = parse_time(
        record.get("creation date") or record.get("subscription date") or record.get("date"),
        "creation_date",
    )
    return {
        "email": record.get("email") or record.get("email address"),
        "name": cell_text(record, "name"),
        "status": status,
        "subscribed_at": created,
        "status_at": status_at,
        "source_id": cell_text(record, "id") or None,
        "reason": reason,
        "consent": {
            "at": created,
            "ip": cell_text(record, "ip address") or None,
            "origin": cell_text(record, "referrer url") or None,
        },
    }


PLATFORM = Platform(
    "buttondown",
    "Buttondown",
    lambda h: (
        bool(h & {"email", "email address"})
        and ("subscriber type" in h or ("type" in h and bool(h & {"creation date", "notes"})))
    ),
    _buttondown,
)
