"""listmonk's subscribers export.

**listmonk** (subscribers export): ``uuid``, ``email``, ``name``, ``attributes`` (JSON),
``status`` (enabled, disabled, blocklisted), ``created_at``, ``updated_at`` in Go's
``2021-06-22 10:21:27.471456 +0000 UTC`` form. disabled and blocklisted are not mailed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from digest.audience.imports.incoming import Platform
from digest.audience.imports.values import cell_text, parse_time

_LISTMONK = {"enabled": "active", "disabled": "unsubscribed", "blocklisted": "unsubscribed"}


def _listmonk(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    raw = cell_text(record, "status")
    status = _LISTMONK.get(raw.lower()) if raw else "active"
    if status is None:
        raise ValueError(
            f"status {raw!r} is not a listmonk status (enabled, disabled, blocklisted)"
        )
    return {
        "email": record.get("email"),
        "name": cell_text(record, "name"),
        "status": status,
        "subscribed_at": parse_time(record.get("created at"), "created_at"),
        "status_at": parse_time(record.get("updated at"), "updated_at")
        if status != "active"
        else None,
        "source_id": cell_text(record, "uuid") or None,
        "reason": f"{raw.lower()} in listmonk" if status != "active" else None,
    }


PLATFORM = Platform(
    "listmonk",
    "listmonk",
    lambda h: {"uuid", "email", "status"} <= h and "attributes" in h,
    _listmonk,
)
