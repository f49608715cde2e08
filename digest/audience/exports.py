"""``digest subscribers export``: everyone, in every status, with everything but secrets.

JSON is a list of records (see :meth:`digest.audience.records.Record.as_dict`); CSV has
one column per field, categories joined by ``;`` and the consent record as a JSON object
in its own column. Both read back with ``digest subscribers import`` into the same store.
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
        writer.writerow(
            ["" if row[c] is None else row[c] for c in CSV_COLUMNS[:7]]
            + [
                ";".join(categories),
                row["source"] or "",
                row["id"] or "",
                json.dumps(consent, ensure_ascii=False, sort_keys=True) if consent else "",
            ]
        )
        count += 1
    return count
