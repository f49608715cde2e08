"""How every store writes a moment: RFC 3339 in UTC, ending in ``Z``.

Milliseconds (``2026-11-23T08:00:00.000Z``) where the order of events within one second
matters: the send ledger (leases are compared as text) and the runs table. Whole seconds
(``2026-11-23T08:00:00Z``) in subscriber records, which people read in exports. The text
is fixed-width, so comparing two of one precision as text compares the moments.

:func:`parse_utc` reads both, and the ``+00:00`` form older files hold (each store's
migration rewrites those in place), on every Python digest supports (3.10's
``fromisoformat`` does not read ``Z``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

Precision = Literal["seconds", "milliseconds"]

# The same text from SQL, for a migration that rewrites older rows in place.
SQLITE_MILLISECONDS = "strftime('%Y-%m-%dT%H:%M:%fZ', {column})"
POSTGRES_MILLISECONDS = (
    "to_char(({column})::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
)


def utc_text(moment: datetime, precision: Precision = "milliseconds") -> str:
    """``moment`` (timezone-aware) as stored text."""
    if moment.tzinfo is None:
        raise ValueError("a stored moment must be timezone-aware")
    text = moment.astimezone(timezone.utc).isoformat(timespec=precision)
    return text.removesuffix("+00:00") + "Z"


def parse_utc(text: str) -> datetime:
    """Stored text back as an aware UTC datetime (``Z`` or an offset)."""
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r}: a stored moment without a time zone")
    return moment.astimezone(timezone.utc)


def rewrite_sql(table: str, columns: tuple[str, ...], dialect: str) -> str:
    """SQL that rewrites ``columns`` of ``table`` from any offset form to milliseconds-Z;
    a value that is not a moment is kept as it is."""
    if dialect == "postgresql":
        template = (
            "CASE WHEN {c} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}([T ][0-9:.]+)?"
            "(Z|[+-][0-9]{{2}}:?[0-9]{{2}})?$' THEN " + POSTGRES_MILLISECONDS + " ELSE {c} END"
        )
    else:
        template = "COALESCE(" + SQLITE_MILLISECONDS + ", {c})"
    sets = ", ".join(f"{c} = " + template.format(c=c, column=c) for c in columns)
    return f"UPDATE {table} SET {sets};\n"
