"""Per-reader engagement, used for one thing: who stopped reading.

* :func:`choose` records a reader's yes or no to per-reader engagement in their consent
  record; a no also deletes every per-reader click row of theirs (the aggregate counts name
  no reader and stay) and ends a sunset round in progress.
* :func:`inactive_readers` is ``digest report --inactive N``: the consenting active readers
  with no kept click in their last N delivered issues (``sent`` in the ledger). Readers who
  did not agree are not looked at, only counted, and so are readers with fewer than N
  delivered issues.

Clicks are kept per reader by their opaque handle (:mod:`digest.audience.tokens`), which
follows the reader's link secret: a reader whose secret is replaced starts again with no
clicks under the new handle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.audience.engagement import Reader, reader, readers, set_engagement
from digest.audience.subscribers import SubscriberStore
from digest.config import Config
from digest.delivery.clicks import ClickStore
from digest.delivery.ledger import MIGRATIONS as LEDGER_MIGRATIONS
from digest.safelog import log_change
from digest.store.database import Target, is_postgres, locate, open_store


def _exists(target: Target) -> bool:
    return is_postgres(target) or (isinstance(target, Path) and target.exists())


def choose(
    config: Config, store: SubscriberStore, email: str, *, agree: bool, now: datetime, origin: str
) -> tuple[Reader | None, int]:
    """Record ``agree`` for ``email``; returns the reader afterwards and how many per-reader
    click rows a withdrawal deleted."""
    before = reader(store.connection, email)
    after = set_engagement(store.connection, email, agree=agree, now=now, origin=origin)
    removed = 0
    if before is not None and before.consenting != agree:
        log_change("engagement", email=before.email, agree=agree, origin=origin)
    if not agree and before is not None and before.handle:
        target = locate(config, config.analytics.database)
        if config.analytics.clicks != "off" or _exists(target):
            with ClickStore(target) as clicks:
                removed = clicks.forget([before.handle])
    return after, removed


@dataclass(frozen=True)
class Delivered:
    """One issue a reader was sent (the ledger said ``sent``), with when it started."""

    issue_id: str
    started_at: str


def delivered_issues(ledger: Target, ids: set[int], most: int) -> dict[int, list[Delivered]]:
    """subscriber id -> the last ``most`` issues sent to them, newest first."""
    if not ids or not _exists(ledger):
        return {}
    db = open_store(ledger, LEDGER_MIGRATIONS, store="ledger", what="the send ledger")
    try:
        # the newest ``most`` per reader, numbered by the database (a window function)
        rows = db.execute(
            "SELECT subscriber_id, issue_id, started_at FROM ("
            " SELECT d.subscriber_id, d.issue_id, i.started_at, ROW_NUMBER() OVER ("
            "  PARTITION BY d.subscriber_id ORDER BY i.started_at DESC, d.issue_id DESC) AS n"
            " FROM deliveries d JOIN issues i ON i.issue_id = d.issue_id"
            " WHERE d.state = 'sent') AS recent WHERE n <= ? ORDER BY subscriber_id, n",
            (most,),
        ).fetchall()
    finally:
        db.close()
    found: dict[int, list[Delivered]] = {}
    for sid, issue_id, started in rows:
        if int(sid) in ids:
            found.setdefault(int(sid), []).append(Delivered(str(issue_id), str(started)))
    return found


@dataclass(frozen=True)
class Inactive:
    """A consenting reader with no click in their last ``issues`` delivered issues."""

    id: int
    email: str
    language: str
    issues: tuple[Delivered, ...]  # newest first

    @property
    def round(self) -> str:
        """The sunset round this inactivity starts: the newest of the issues."""
        return self.issues[0].issue_id

    def as_dict(self) -> dict[str, Any]:
        return {"email": self.email, "issues": [i.issue_id for i in self.issues]}


@dataclass
class InactiveReport:
    issues: int  # N
    considered: int = 0  # consenting active readers with N delivered issues
    not_consenting: int = 0  # active readers who did not agree: not looked at
    too_few_issues: int = 0  # consenting readers sent fewer than N issues
    readers: list[Inactive] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "issues": self.issues,
            "considered": self.considered,
            "not_consenting": self.not_consenting,
            "too_few_issues": self.too_few_issues,
            "inactive": [r.as_dict() for r in self.readers],
        }


def inactive_readers(config: Config, *, issues: int) -> InactiveReport:
    """The consenting active readers who clicked in none of their last ``issues``
    delivered issues, in subscriber order. Reading creates no store."""
    if issues < 1:
        raise ValueError("the number of issues must be 1 or more")
    report = InactiveReport(issues)
    people = locate(config, config.subscribers.database)
    if not _exists(people):
        return report
    with SubscriberStore(people) as store:
        consenting: dict[int, Reader] = {}
        for found in readers(store.connection):
            if found.consenting:
                consenting[found.id] = found
            else:
                report.not_consenting += 1
    sent = delivered_issues(locate(config, config.ledger.database), set(consenting), issues)
    recent = {sid: tuple(got) for sid, got in sent.items() if len(got) >= issues}
    report.too_few_issues = len(consenting) - len(recent)
    report.considered = len(recent)
    clicks = locate(config, config.analytics.database)
    wanted = {d.issue_id for got in recent.values() for d in got}
    clicked: dict[str, set[str]] = {}
    if wanted and _exists(clicks):
        with ClickStore(clicks) as store:
            clicked = store.readers(sorted(wanted))
    for sid, got in sorted(recent.items()):
        someone = consenting[sid]
        if not clicked.get(someone.handle, set()) & {d.issue_id for d in got}:
            report.readers.append(Inactive(sid, someone.email, someone.language, got))
    return report
