"""``digest subscribers export``: everyone, in every status, with everything but secrets.

JSON is a list of records (see :meth:`digest.audience.records.Record.as_dict`); CSV has
one column per field, categories joined by ``;`` and the consent record as a JSON object
in its own column. Both read back with ``digest subscribers import`` into the same store.

CSV is safe to open in a spreadsheet: a cell that starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return (which a spreadsheet would run as a formula) is written with a
``'`` in front, and an import of digest's own CSV takes that ``'`` off again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO

from digest.audience import records
from digest.audience.subscribers import SubscriberStore

CSV_COLUMNS = (
    "email",
    "name",
    "status",
    "subscribed_at",
    "confirmed_at",
    "status_at",
    "reason",
    "categories",
    "source",
    "id",
    "consent",
)
FORMATS = ("json", "csv")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may run as a formula at the start of a cell."""


def spreadsheet_cell(value: str) -> str:
    """``value`` as a CSV cell a spreadsheet shows as text, never runs."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def unspreadsheet_cell(value: str) -> str:
    """The value :func:`spreadsheet_cell` was given (for reading digest's own CSV back)."""
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def export_records(
    store: SubscriberStore, status: str | None = None
) -> Iterator[dict[str, object]]:
    for record in records.iter_records(store.connection):
        if status is None or record.status == status:
            yield record.as_dict()


def write_export(
    store: SubscriberStore, out: IO[str], *, fmt: str = "json", status: str | None = None
) -> int:
    """Write the export to ``out``; returns how many subscribers it holds. Streams: the
    store is read a chunk at a time."""
    count = 0
    if fmt == "json":
        out.write("[")
        for row in export_records(store, status):
            out.write(",\n  " if count else "\n  ")
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=False))
            count += 1
        out.write("\n]\n" if count else "]\n")
        return count
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in export_records(store, status):
        consent = row["consent"]
        categories = row["categories"]
        assert isinstance(categories, list)
        cells = ["" if row[c] is None else str(row[c]) for c in CSV_COLUMNS[:7]] + [
            ";".join(categories),
            str(row["source"] or ""),
            str(row["id"] or ""),
            json.dumps(consent, ensure_ascii=False, sort_keys=True) if consent else "",
        ]
        writer.writerow([spreadsheet_cell(cell) for cell in cells])
        count += 1
    return count
