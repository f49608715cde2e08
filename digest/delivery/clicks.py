"""The click store: how often each post link of each issue was followed.

Counts, not events: one row per (issue, post, variant) with the clicks kept and the
clicks filtered out as scanners' (HEAD requests, known scanner agents, bursts of every
link of one message; see :mod:`digest.serve.clickfilter`), one row per (issue, UTC day)
for the issues' clicks over time, and, only for readers who consented to per-subscriber
engagement (``analytics.clicks: per_subscriber``), one row per (issue, reader handle) with
their kept clicks; and with ``analytics.opens``, one row per (issue, variant) with the open
pixel's fetches, kept and machine. No row holds an address or a client's network address.

Each ``digest serve`` process buffers its counts in memory and adds them here in one
transaction (``kept = kept + ?``), so several processes on one database (PostgreSQL, or
one SQLite file) each add exactly their own clicks, and a click never waits on the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from digest.errors import StoreError
from digest.store.database import StoreSpec, Target, as_target, open_store
from digest.store.migrations import Migration
from digest.store.sqlite import retry_when_busy

_SCHEMA = """
CREATE TABLE IF NOT EXISTS click_counts (
    issue_id TEXT NOT NULL,
    post     INTEGER NOT NULL,   -- the post's place in the issue's manifest, from 0
    variant  TEXT NOT NULL,      -- the preference variant (all, Work+Tools, ...)
    kept     INTEGER NOT NULL DEFAULT 0,
    filtered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (issue_id, post, variant)
);
CREATE TABLE IF NOT EXISTS click_days (
    issue_id TEXT NOT NULL,
    day      TEXT NOT NULL,      -- YYYY-MM-DD in UTC
    kept     INTEGER NOT NULL DEFAULT 0,
    filtered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (issue_id, day)
);
CREATE TABLE IF NOT EXISTS click_readers (
    issue_id TEXT NOT NULL,
    handle   TEXT NOT NULL,      -- the reader's opaque handle (digest.audience.tokens)
    kept     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (issue_id, handle)
);
CREATE INDEX IF NOT EXISTS click_readers_handle ON click_readers (handle);
"""

_OPENS = """
CREATE TABLE IF NOT EXISTS open_counts (
    issue_id TEXT NOT NULL,
    variant  TEXT NOT NULL,
    kept     INTEGER NOT NULL DEFAULT 0,   -- pixel fetches that may be a reader's
    machine  INTEGER NOT NULL DEFAULT 0,   -- image proxies, scanners, prefetches at delivery
    PRIMARY KEY (issue_id, variant)
);
"""

MIGRATIONS = (
    Migration(1, "click counts per post, day and consenting reader", _SCHEMA),
    Migration(2, "open counts per issue and variant (analytics.opens)", _OPENS),
)
SPEC = StoreSpec(
    "clicks",
    "the click store",
    MIGRATIONS,
    ("click_counts", "click_days", "click_readers", "open_counts"),
)

_ADD_COUNT = """
INSERT INTO click_counts (issue_id, post, variant, kept, filtered) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (issue_id, post, variant) DO UPDATE SET
    kept = click_counts.kept + excluded.kept, filtered = click_counts.filtered + excluded.filtered
"""
_ADD_DAY = """
INSERT INTO click_days (issue_id, day, kept, filtered) VALUES (?, ?, ?, ?)
ON CONFLICT (issue_id, day) DO UPDATE SET
    kept = click_days.kept + excluded.kept, filtered = click_days.filtered + excluded.filtered
"""
_ADD_OPEN = """
INSERT INTO open_counts (issue_id, variant, kept, machine) VALUES (?, ?, ?, ?)
ON CONFLICT (issue_id, variant) DO UPDATE SET
    kept = open_counts.kept + excluded.kept, machine = open_counts.machine + excluded.machine
"""
_ADD_READER = """
INSERT INTO click_readers (issue_id, handle, kept) VALUES (?, ?, ?)
ON CONFLICT (issue_id, handle) DO UPDATE SET kept = click_readers.kept + excluded.kept
"""


@dataclass
class Tally:
    """Counts gathered in memory before they are added to the store."""

    # (issue, post, variant) -> [kept, filtered]
    links: dict[tuple[str, int, str], list[int]]
    # (issue, day) -> [kept, filtered]
    days: dict[tuple[str, str], list[int]]
    # (issue, handle) -> kept
    readers: dict[tuple[str, str], int]
    # (issue, variant) -> [kept, machine]: the open pixel's fetches
    opens: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Tally:
        return cls({}, {}, {})

    def add_open(self, issue_id: str, variant: str, *, machine: bool) -> None:
        self.opens.setdefault((issue_id, variant), [0, 0])[1 if machine else 0] += 1

    def add(
        self,
        issue_id: str,
        post: int,
        variant: str,
        day: str,
        *,
        kept: bool,
        handle: str | None = None,
    ) -> None:
        column = 0 if kept else 1
        self.links.setdefault((issue_id, post, variant), [0, 0])[column] += 1
        self.days.setdefault((issue_id, day), [0, 0])[column] += 1
        if kept and handle is not None:
            key = (issue_id, handle)
            self.readers[key] = self.readers.get(key, 0) + 1

    def merge(self, other: Tally) -> None:
        for link, (kept, filtered) in other.links.items():
            counts = self.links.setdefault(link, [0, 0])
            counts[0] += kept
            counts[1] += filtered
        for day, (kept, filtered) in other.days.items():
            counts = self.days.setdefault(day, [0, 0])
            counts[0] += kept
            counts[1] += filtered
        for reader, kept in other.readers.items():
            self.readers[reader] = self.readers.get(reader, 0) + kept
        for opened, (kept, machine) in other.opens.items():
            counts = self.opens.setdefault(opened, [0, 0])
            counts[0] += kept
            counts[1] += machine

    def __bool__(self) -> bool:
        return bool(self.links or self.readers or self.opens)


@dataclass(frozen=True)
class LinkCount:
    issue_id: str
    post: int
    variant: str
    kept: int
    filtered: int


class ClickStore:
    """The click counts on either backend (see :mod:`digest.store.database`)."""

    def __init__(self, target: Target | str) -> None:
        self.target = as_target(target)
        self._db = open_store(self.target, MIGRATIONS, store="clicks", what=SPEC.what)

    def __enter__(self) -> ClickStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def add(self, tally: Tally) -> None:
        """Add ``tally`` to the counts, all of it or none (one transaction)."""
        if not tally:
            return
        links = [(*key, kept, filtered) for key, (kept, filtered) in sorted(tally.links.items())]
        days = [(*key, kept, filtered) for key, (kept, filtered) in sorted(tally.days.items())]
        readers = [(*key, kept) for key, kept in sorted(tally.readers.items())]
        opens = [(*key, kept, machine) for key, (kept, machine) in sorted(tally.opens.items())]

        def write() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_ADD_COUNT, links)
                self._db.executemany(_ADD_DAY, days)
                if readers:
                    self._db.executemany(_ADD_READER, readers)
                if opens:
                    self._db.executemany(_ADD_OPEN, opens)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

        try:
            retry_when_busy(write)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.target}: cannot add click counts: {exc}") from None

    def links(self, issue_id: str | None = None) -> list[LinkCount]:
        """Every (issue, post, variant) count, or one issue's, in order."""
        where, params = ("WHERE issue_id = ?", (issue_id,)) if issue_id else ("", ())
        rows = self._db.execute(
            "SELECT issue_id, post, variant, kept, filtered FROM click_counts "
            f"{where} ORDER BY issue_id, post, variant",
            params,
        ).fetchall()
        return [LinkCount(str(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4])) for r in rows]

    def days(self, issue_id: str | None = None) -> list[tuple[str, str, int, int]]:
        """(issue, day, kept, filtered) in order."""
        where, params = ("WHERE issue_id = ?", (issue_id,)) if issue_id else ("", ())
        rows = self._db.execute(
            f"SELECT issue_id, day, kept, filtered FROM click_days {where} ORDER BY issue_id, day",
            params,
        ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]

    def opens(self, issue_id: str | None = None) -> list[tuple[str, str, int, int]]:
        """(issue, variant, kept, machine) open counts in order."""
        where, params = ("WHERE issue_id = ?", (issue_id,)) if issue_id else ("", ())
        rows = self._db.execute(
            f"SELECT issue_id, variant, kept, machine FROM open_counts {where} "
            "ORDER BY issue_id, variant",
            params,
        ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]

    def readers(self, issue_ids: Iterable[str]) -> dict[str, set[str]]:
        """handle -> the issues among ``issue_ids`` the reader clicked in."""
        wanted = list(issue_ids)
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT handle, issue_id FROM click_readers WHERE issue_id IN ({marks}) AND kept > 0",
            wanted,
        ).fetchall()
        found: dict[str, set[str]] = {}
        for handle, issue_id in rows:
            found.setdefault(str(handle), set()).add(str(issue_id))
        return found

    def forget(self, handles: Mapping[str, object] | Iterable[str]) -> int:
        """Remove every per-reader row of these handles; how many went."""
        gone = 0
        for handle in handles:
            cursor = self._db.execute("DELETE FROM click_readers WHERE handle = ?", (handle,))
            gone += max(cursor.rowcount, 0)
        return gone
