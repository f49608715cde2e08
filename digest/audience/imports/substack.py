"""Substack's subscriber list export.

**Substack** (subscriber list export): ``email``, ``active_subscription``, ``expiry``,
``email_disabled``, ``created_at`` (ISO); ``email_disabled`` true means no email is sent
to them (unsubscribed). Addresses ``…@deletion-request.substack.com`` are people who
asked to be deleted and are not imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from digest.audience.imports.incoming import Platform
from digest.audience.imports.values import cell_flag, cell_text, parse_time


def _substack(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    email = cell_text(record, "email")
    if email.lower().endswith("@deletion-request.substack.com"):
        raise ValueError("a Substack deletion request (the person asked to be deleted)")
    disabled = cell_flag(record.get("email disabled"), "email_disabled")
    return {
        "email": email,
        "name": cell_text(record, "name"),
        "status": "unsubscribed" if disabled else "active",
        "subscribed_at": parse_time(record.get("created at"), "created_at"),
        "reason": "email disabled in Substack" if disabled else None,
    }


PLATFORM = Platform(
    "substack",
    "Substack",
    lambda h: "email" in h and bool(h & {"email disabled", "active subscription"}),
    _substack,
)
