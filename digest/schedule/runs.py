"""The record of scheduled runs: which occurrence ran, for which issue, and how it ended.

One row per scheduled occurrence, keyed by its instant in UTC. ``digest run`` reads it to
stay idempotent (an occurrence that has finished is never run again) and to resume one
that was interrupted. What was actually sent to whom lives in the send ledger; this table
only says what the scheduler decided and how each attempt ended.

Outcomes::

    running        started and not finished: the process died or was killed (resumable)
    stopped        a stop signal ended the send at a safe point (resumable)
    failed         the job raised an error (retried by the next run within the grace period)
    sent           the issue went out (or the ledger says it already had)
    already-sent   the ledger had nothing left to send for this issue
    skipped-empty  the week had no posts and ``schedule.skip_empty`` is on
    empty          the week had no posts and ``schedule.skip_empty`` is off (reported)
    missed         the occurrence was found later than the grace period allows
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from digest.errors import StoreError
from digest.states import State
from digest.store.clock import parse_utc, rewrite_sql, utc_text
from digest.store.database import Connection, StoreSpec, Target, as_target, open_store
from digest.store.migrations import Migration


class RunOutcome(State):
    """Where a scheduled run stands; the value is what the runs table keeps."""

    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    SENT = "sent"
    ALREADY_SENT = "already-sent"
    SKIPPED_EMPTY = "skipped-empty"
    EMPTY = "empty"
    MISSED = "missed"


FINAL_OUTCOMES = frozenset(
    {
        RunOutcome.SENT,
        RunOutcome.ALREADY_SENT,
        RunOutcome.SKIPPED_EMPTY,
        RunOutcome.EMPTY,
        RunOutcome.MISSED,
    }
)
RESUMABLE_OUTCOMES = frozenset({RunOutcome.RUNNING, RunOutcome.STOPPED})
OUTCOMES: frozenset[str] = frozenset(RunOutcome)


def issue_command(issue_id: str, issue_prefix: str, command: str, *flags: str) -> str:
    """The command line that acts on ``issue_id``: a newsletter other than the first is
    named with ``--newsletter`` and its week given without the prefix, as ``--week`` takes
    it (``links-2026-W48`` -> ``digest --newsletter links send --week 2026-W48``)."""
    words = ["digest", command, "--week", issue_id, *flags]
    if issue_prefix and issue_id.startswith(issue_prefix):
        name = issue_prefix[:-1]  # the newsletter's name, less its hyphen
        words = ["digest", "--newsletter", name, command, "--week", issue_id[len(issue_prefix) :]]
        words += flags
    return " ".join(words)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    occurrence  TEXT PRIMARY KEY,   -- the scheduled instant (digest.store.clock)
    issue_id    TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    started_at  TEXT,
    finished_at TEXT,
    sent        INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    detail      TEXT NOT NULL DEFAULT ''
);
"""

# The schema's history, oldest first (digest.store.migrations); add new steps at the end.
_STAMPS = ("occurrence", "started_at", "finished_at")
# Newsletters share one runs table on PostgreSQL: a run is keyed by its newsletter's issue
# prefix ("" for the first newsletter, "links-" for "links") and its occurrence. Rows written
# before get the prefix their issue id carries (the id less its week or day).
_PREFIX_OF_ISSUE = (
    "CASE WHEN issue_id LIKE '%-W__' THEN substr(issue_id, 1, length(issue_id) - 8)"
    " ELSE substr(issue_id, 1, length(issue_id) - 10) END"
)
_BY_NEWSLETTER = f"""
CREATE TABLE runs_by_newsletter (
    occurrence   TEXT NOT NULL,
    issue_id     TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    started_at   TEXT,
    finished_at  TEXT,
    sent         INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    detail       TEXT NOT NULL DEFAULT '',
    issue_prefix TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (issue_prefix, occurrence)
);
INSERT INTO runs_by_newsletter SELECT occurrence, issue_id, outcome, attempts, started_at,
    finished_at, sent, failed, detail, {_PREFIX_OF_ISSUE} FROM runs;
DROP TABLE runs;
ALTER TABLE runs_by_newsletter RENAME TO runs;
"""
_BY_NEWSLETTER_POSTGRESQL = f"""
ALTER TABLE runs ADD COLUMN issue_prefix TEXT NOT NULL DEFAULT '';
UPDATE runs SET issue_prefix = {_PREFIX_OF_ISSUE};
ALTER TABLE runs DROP CONSTRAINT runs_pkey;
ALTER TABLE runs ADD PRIMARY KEY (issue_prefix, occurrence);
"""
_COLUMNS = "occurrence, issue_id, outcome, attempts, started_at, finished_at, sent, failed, detail"

MIGRATIONS = (
    Migration(1, "runs table, as before schema versions", _SCHEMA),
    Migration(
        2,
        "one timestamp form (digest.store.clock)",
        rewrite_sql("runs", _STAMPS, "sqlite"),
        rewrite_sql("runs", _STAMPS, "postgresql"),
    ),
    Migration(3, "runs keyed by newsletter", _BY_NEWSLETTER, _BY_NEWSLETTER_POSTGRESQL),
)
SPEC = StoreSpec("runs", "the runs database (schedule.database)", MIGRATIONS, ("runs",))


def _utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("run times must be timezone-aware")
    return utc_text(moment)


@dataclass(frozen=True)
class Run:
    """One row of the runs table."""

    occurrence: datetime
    issue_id: str
    outcome: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    sent: int
    failed: int
    detail: str

    @property
    def final(self) -> bool:
        return self.outcome in FINAL_OUTCOMES


def _parse(value: str | None) -> datetime | None:
    return parse_utc(value) if value else None


class RunStore:
    """The runs of one newsletter (``issue_prefix``: "" for the config's first), in its own
    SQLite file (``schedule.database``) or in the database every newsletter shares."""

    def __init__(self, path: Target | str, issue_prefix: str = "") -> None:
        self.path = as_target(path)
        self.prefix = issue_prefix
        self._db = open_store(
            self.path, MIGRATIONS, store="runs", what="the runs database (schedule.database)"
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: cannot record the run: {exc}") from None

    def get(self, occurrence: datetime) -> Run | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM runs WHERE issue_prefix = ? AND occurrence = ?",
            (self.prefix, _utc(occurrence)),
        ).fetchone()
        return self._run(row) if row else None

    def latest(self) -> Run | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM runs WHERE issue_prefix = ? ORDER BY occurrence DESC LIMIT 1",
            (self.prefix,),
        ).fetchone()
        return self._run(row) if row else None

    def all(self) -> list[Run]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM runs WHERE issue_prefix = ? ORDER BY occurrence",
            (self.prefix,),
        ).fetchall()
        return [self._run(row) for row in rows]

    def start(self, occurrence: datetime, issue_id: str, *, now: datetime) -> Run:
        """Mark ``occurrence`` as running (again), counting the attempt."""
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (issue_prefix, occurrence, issue_id, outcome, attempts,"
                " started_at) VALUES (?, ?, ?, 'running', 1, ?)"
                " ON CONFLICT(issue_prefix, occurrence) DO UPDATE SET outcome = 'running',"
                " attempts = runs.attempts + 1, started_at = excluded.started_at,"
                " finished_at = NULL, issue_id = excluded.issue_id",
                (self.prefix, _utc(occurrence), issue_id, _utc(now)),
            )
        run = self.get(occurrence)
        assert run is not None
        return run

    def finish(
        self,
        occurrence: datetime,
        issue_id: str,
        outcome: str,
        *,
        now: datetime,
        sent: int = 0,
        failed: int = 0,
        detail: str = "",
    ) -> Run:
        """Record how ``occurrence`` ended (inserting the row if it never started)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown run outcome {outcome!r}")
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (issue_prefix, occurrence, issue_id, outcome, finished_at,"
                " sent, failed, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(issue_prefix, occurrence) DO UPDATE SET outcome = excluded.outcome,"
                " finished_at = excluded.finished_at, sent = runs.sent + excluded.sent,"
                " failed = excluded.failed, detail = excluded.detail",
                (self.prefix, _utc(occurrence), issue_id, outcome, _utc(now), sent, failed, detail),
            )
        run = self.get(occurrence)
        assert run is not None
        return run

    @staticmethod
    def _run(row: tuple[object, ...]) -> Run:
        occurrence, issue_id, outcome, attempts, started, finished, sent, failed, detail = row
        parsed = _parse(str(occurrence))
        assert parsed is not None
        return Run(
            occurrence=parsed,
            issue_id=str(issue_id),
            outcome=str(outcome),
            attempts=int(str(attempts)),
            started_at=_parse(started if isinstance(started, str) else None),
            finished_at=_parse(finished if isinstance(finished, str) else None),
            sent=int(str(sent)),
            failed=int(str(failed)),
            detail=str(detail),
        )
