"""``--map``: naming the columns of a file no platform's header row matches."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from typing import Any

from digest.audience.imports import generic
from digest.audience.imports.incoming import Converter
from digest.audience.imports.table import fold
from digest.errors import StoreError

FIELDS = (
    "email",
    "name",
    "first_name",
    "last_name",
    "status",
    "subscribed_at",
    "confirmed_at",
    "status_at",
    "categories",
    "id",
    "reason",
    "source",
    "frequency",
    "timezone",
)
"""What ``--map`` may name."""


def parse_mapping(text: str | Sequence[str] | None) -> dict[str, str]:
    """``email="Email Address",name="First Name"`` → {field: folded header}."""
    if not text:
        return {}
    parts: list[str] = []
    for item in [text] if isinstance(text, str) else list(text):
        parts.extend(next(csv.reader([item], skipinitialspace=True), []))
    mapping: dict[str, str] = {}
    for part in parts:
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = fold(key).replace(" ", "_")
        value = value.strip().strip('"').strip("'")
        if not sep or not value:
            raise StoreError(f'--map: {part!r} should be FIELD="Column name"')
        if key not in FIELDS:
            raise StoreError(f"--map: {key!r} is not one of {', '.join(FIELDS)}")
        mapping[key] = fold(value)
    return mapping


def mapped(mapping: Mapping[str, str]) -> Converter:
    def convert(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
        renamed = dict(record)
        for key, column in mapping.items():
            renamed[key.replace("_", " ")] = record.get(column)
        if ("first_name" in mapping or "last_name" in mapping) and "name" not in mapping:
            renamed["name"] = ""
        return generic.convert(renamed, kind)

    return convert
