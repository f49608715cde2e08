"""Ghost's members export.

**Ghost** (members export): ``id``, ``email``, ``name``, ``note``,
``subscribed_to_emails`` (true/false), ``complimentary_plan``, ``stripe_customer_id``,
``created_at``, ``deleted_at``, ``labels``, ``tiers`` (``products`` in older files).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from digest.audience.imports.incoming import Platform
from digest.audience.imports.values import cell_flag, cell_text, parse_time


def _ghost(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    subscribed = cell_flag(record.get("subscribed to emails", "true"), "subscribed_to_emails")
    deleted = parse_time(record.get("deleted at"), "deleted_at")
    status = "active" if subscribed and not deleted else "unsubscribed"
    reason = None
    if deleted:
        reason = "deleted in Ghost"
    elif not subscribed:
        reason = "not subscribed to emails in Ghost"
    return {
        "email": record.get("email"),
        "name": cell_text(record, "name"),
        "status": status,
        "subscribed_at": parse_time(record.get("created at"), "created_at"),
        "status_at": deleted,
        "source_id": cell_text(record, "id") or None,
        "reason": reason,
    }


PLATFORM = Platform(
    "ghost",
    "Ghost",
    lambda h: "email" in h and bool(h & {"subscribed to emails", "complimentary plan"}),
    _ghost,
)
