"""The values in an export's cells: times in the forms platforms write, true/false flags,
status words, names and category lists."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from digest.audience.imports.table import fold
from digest.audience.records import iso
from digest.audience.subscribers import STATUSES

MAX_TIME = 100
"""The longest text read as a time (Go's longest form is about 60 characters)."""
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}
_GO_TIME = re.compile(
    r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?\s*([+-]\d\d:?\d\d|Z)?(\s+[A-Za-z]+)?"
    r"(\s+m=[+-][\d.]+)?$"
)
_DATE_FORMS = (
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    # Month first, as US platforms and spreadsheets write them (never day first: 03/04
    # would be ambiguous, and these platforms do not write it).
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y",
    "%b %d, %Y",
    "%B %d, %Y",
)


def parse_time(value: Any, column: str) -> str | None:
    """An ISO-8601 UTC timestamp from the forms platforms write; naive times are UTC."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    if not text:
        return None
    if len(text) > MAX_TIME:  # before any pattern: a date is short, and patterns backtrack
        raise ValueError(f"{column} is not a date (longer than {MAX_TIME} characters)")
    moment: datetime | None = None
    found = _GO_TIME.match(text)
    if found:
        date, clock, fraction, offset, _, _ = found.groups()
        stamp = f"{date}T{clock}{(fraction or '')[:7]}"
        if offset and offset != "Z":
            offset = offset if ":" in offset else f"{offset[:3]}:{offset[3:]}"
            stamp += offset
        try:
            moment = datetime.fromisoformat(stamp)
        except ValueError:
            moment = None
    if moment is None:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" UTC", ""))
        except ValueError:
            try:
                moment = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                moment = None
    if moment is None:
        for form in _DATE_FORMS:
            try:
                moment = datetime.strptime(text, form)
                break
            except ValueError:
                continue
    if moment is None and re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        try:
            moment = datetime.fromtimestamp(float(text), tz=timezone.utc)
        except (OverflowError, ValueError, OSError):
            raise ValueError(f"{column} {text!r} is out of range") from None
    if moment is None:
        raise ValueError(f"{column} {text!r} is not a date such as 2026-08-02T10:15:00Z")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return iso(moment)
    except (OverflowError, ValueError):  # 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise ValueError(f"{column} {text!r} is out of range") from None


def cell_flag(value: Any, column: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{column} {value!r} is not true or false")


_STATUS_WORDS = {
    "active": "active",
    "subscribed": "active",
    "subscriber": "active",
    "enabled": "active",
    "confirmed": "active",
    "opted in": "active",
    "regular": "active",
    "free": "active",
    "paid": "active",
    "premium": "active",
    "comped": "active",
    "complimentary": "active",
    "gifted": "active",
    "trialed": "active",
    "trialing": "active",
    "churning": "active",
    "paused": "active",
    "past due": "active",
    "unpaid": "active",
    "pending": "pending",
    "unconfirmed": "pending",
    "unactivated": "pending",
    "unsubscribed": "unsubscribed",
    "unsubscribe": "unsubscribed",
    "inactive": "unsubscribed",
    "disabled": "unsubscribed",
    "opted out": "unsubscribed",
    "blocklisted": "unsubscribed",
    "blacklisted": "unsubscribed",
    "removed": "unsubscribed",
    "deleted": "unsubscribed",
    "archived": "unsubscribed",
    "spammy": "unsubscribed",
    "transactional": "unsubscribed",
    "bounced": "bounced",
    "cleaned": "bounced",
    "undeliverable": "bounced",
    "hard bounce": "bounced",
    "complained": "complained",
    "complaint": "complained",
    "spam": "complained",
    "spam complaint": "complained",
}


def status_word(value: Any) -> str:
    text = fold(str(value or ""))
    if not text:
        return "active"
    status = _STATUS_WORDS.get(text)
    if status is None:
        raise ValueError(
            f"status {value!r} is not one of {', '.join(STATUSES)} (or a platform's word "
            "for one, such as subscribed, cleaned or unconfirmed)"
        )
    return status


def cell_text(record: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            if not isinstance(value, (str, int, float)):
                raise ValueError(f"{name} is not text")
            return str(value).strip()
    return ""


def join_name(first: str, last: str) -> str:
    return " ".join(p for p in (first.strip(), last.strip()) if p)


def category_names(raw: Any) -> list[str]:
    if raw in (None, ""):
        return []
    if isinstance(raw, str):
        return raw.replace("|", ";").replace(",", ";").split(";")
    if isinstance(raw, list) and all(isinstance(c, str) for c in raw):
        return list(raw)
    raise ValueError("categories is not a list of names")


def first_of(record: Mapping[str, Any], names: Sequence[str]) -> Any:
    """The first of these columns that has a value."""
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            return value
    return None
