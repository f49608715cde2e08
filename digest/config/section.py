"""What every section of the config shares: a frozen model that refuses unknown keys,
durations (``90``, ``"15m"``, ``"6h"``) and IANA timezones, checked the same way everywhere."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
)

from digest.config.database import DatabaseURL as DatabaseURL
from digest.config.database import parse_database_url as parse_database_url
from digest.config.secret import Secret as Secret

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _parse_duration(value: Any) -> timedelta:
    """Accept ``90`` (seconds), ``"90s"``, ``"15m"``, ``"6h"``, ``"2d"`` or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value)
        if match:
            amount = float(match.group(1))
            unit = match.group(2) or "s"
            seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
            return timedelta(seconds=amount * seconds)
    raise ValueError("expected a duration such as 90s, 15m, 6h or 2d")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"'{value}' is not a timezone; use an IANA name such as Europe/Berlin or UTC"
        ) from None
    return value
