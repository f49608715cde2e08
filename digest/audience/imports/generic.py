"""digest's own export, and any list with an email column.

**digest** itself (``digest subscribers export``, JSON or CSV) and the first user's JSON
(``id``, ``email``, ``subscribedAt``, ``isActive``, ``preferences``), and any CSV with an
``email`` column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from digest import i18n
from digest.audience.imports.incoming import Platform
from digest.audience.imports.values import (
    category_names,
    cell_flag,
    cell_text,
    first_of,
    join_name,
    parse_time,
    status_word,
)

EMAIL_COLUMNS = ("email", "email address", "e mail", "e mail address", "mail")
"""Headers (folded) a plain list's address may have."""
SUBSCRIBED_COLUMNS = (
    "subscribedat",
    "subscribed at",
    "created at",
    "created",
    "date added",
    "signup date",
    "sign up date",
    "subscription date",
    "subscribe date",
    "start date",
    "joined",
    "joined at",
)
# a reader's cadence and timezone (digest.audience.rhythm), as lists and platforms name them
FREQUENCY_COLUMNS = ("frequency", "cadence", "digest frequency", "email frequency")
TIMEZONE_COLUMNS = ("timezone", "time zone", "tz", "time_zone")
STATUS_COLUMNS = ("status", "subscription status", "state")
LEFT_COLUMNS = ("unsubscribed at", "unsubscribe date", "unsubscription date")


def convert(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """digest's own export, the flat CSV/JSON shape, the blog's JSON, and any list with an
    email column (common spellings of the other columns are recognised too)."""
    status = status_word(first_of(record, STATUS_COLUMNS))
    left = parse_time(first_of(record, LEFT_COLUMNS), "unsubscribed_at")
    if left and status in ("active", "pending") and not record.get("status"):
        status = "unsubscribed"  # a plain list that only says when someone left
    if "isactive" in record:
        status = "active" if cell_flag(record["isactive"], "isActive") else "unsubscribed"
    preferences = record.get("preferences")
    if preferences is not None and not isinstance(preferences, dict):
        raise ValueError("preferences is not an object")
    raw_categories: Any = record.get("categories")
    frequency: Any = first_of(record, FREQUENCY_COLUMNS)
    if isinstance(preferences, dict):
        frequency = preferences.get("frequency", frequency)
        if "categories" in preferences:
            raw_categories = preferences["categories"]
    consent: Any = record.get("consent")
    if isinstance(consent, str) and consent.strip():
        try:
            consent = json.loads(consent)
        except ValueError:
            raise ValueError("consent is not a JSON object") from None
    if consent in (None, ""):
        consent = {
            k[len("consent ") :]: v
            for k, v in record.items()
            if k.startswith("consent ") and v not in (None, "")
        }
    if not isinstance(consent, dict):
        raise ValueError("consent is not an object")
    language = cell_text(record, "language") or cell_text(record, "locale")
    if language and i18n.normalise(language) is None:
        raise ValueError(f"language {language[:40]!r} is not a language tag (de, en, pt-BR)")
    name = first_of(record, ("name", "full name", "display name"))
    if name is not None and not isinstance(name, str):
        raise ValueError("name is not text")
    return {
        "email": next((record[k] for k in EMAIL_COLUMNS if record.get(k)), None),
        "name": (name or "").strip()
        or join_name(cell_text(record, "first name"), cell_text(record, "last name")),
        "status": status,
        "subscribed_at": parse_time(first_of(record, SUBSCRIBED_COLUMNS), "subscribed_at"),
        "confirmed_at": parse_time(record.get("confirmed at"), "confirmed_at"),
        "status_at": parse_time(record.get("status at"), "status_at") or left,
        "categories": None if raw_categories is None else category_names(raw_categories),
        "source_id": None if record.get("id") in (None, "") else str(record["id"]),
        "reason": cell_text(record, "reason") or None,
        "source": cell_text(record, "source") or None,
        "consent": consent,
        "language": i18n.normalise(language) if language else None,
        "frequency": frequency,
        "timezone": first_of(record, TIMEZONE_COLUMNS),
    }


PLATFORM = Platform(
    "digest",
    "digest or a plain list",
    lambda h: bool(h & set(EMAIL_COLUMNS)),
    convert,
)
