"""What a send did: the run's report (``out/<issue-id>/send-report.json``) and an issue's
state from the ledger (``digest status``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digest.audience.subscribers import SubscriberStore
from digest.config import Config
from digest.delivery.ledger import (
    CHUNK,
    FAILED_PERMANENT,
    FAILED_RETRYABLE,
    PENDING,
    SENDING,
    UNCERTAIN,
    Ledger,
)
from digest.store.database import locate
from digest.store.private import write_private

Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each committed result."""


@dataclass
class SendReport:
    issue_id: str
    provider: str
    dry_run: bool = False
    queued: int = 0  # rows added to the ledger by this run
    attempted: int = 0
    sent: int = 0
    failed_permanent: int = 0
    failed_retryable: int = 0
    uncertain: int = 0  # results this run that may or may not have reached the provider
    skipped: int = 0
    settled_after_crash: dict[str, int] = field(default_factory=dict)
    reconciled: dict[str, int] = field(default_factory=dict)
    variants: dict[str, int] = field(default_factory=dict)
    ledger: dict[str, int] = field(default_factory=dict)
    unconfirmed: int = 0
    uncertain_held: list[dict[str, Any]] = field(default_factory=list)
    new_subscribers: int = 0  # active subscribers not queued for this finished issue
    missing_secrets: list[str] = field(default_factory=list)  # dry run: unset ${VAR}s
    complete: bool = False
    limited: bool = False
    stopped: str | None = None  # why the run stopped early (a signal, the provider)
    total: int = 0  # messages this run set out to settle
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)
    report_path: str | None = None

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return 6
        return 1 if self.ledger.get(FAILED_PERMANENT, 0) or self.failed_permanent else 0

    @property
    def rate(self) -> float:
        return self.attempted / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["messages_per_second"] = round(self.rate, 1)
        data["exit_code"] = self.exit_code
        return data


def write_report(config: Config, report: SendReport) -> Path:
    folder = _out_dir(config, report.issue_id)
    target = folder / "send-report.json"
    # it names the addresses that failed: 0600, like every file holding addresses
    write_private(target, (json.dumps(report.as_dict(), indent=2, default=str) + "\n").encode())
    return target


def _out_dir(config: Config, issue_id: str) -> Path:
    return config.path(config.out_dir) / issue_id


def issue_status(config: Config, issue_id: str) -> dict[str, Any]:
    """What ``digest status`` shows: the ledger's counts, the uncertain and failed rows, and
    how many active subscribers joined after the issue went out."""
    with Ledger(locate(config, config.ledger.database)) as ledger:
        info = ledger.issue(issue_id)
        counts = ledger.counts(issue_id)
        unfinished = sum(counts[s] for s in (PENDING, SENDING, FAILED_RETRYABLE, UNCERTAIN))
        # complete on evidence only: a mark an earlier run (or an older digest) left with
        # rows pending, sending or uncertain does not count
        complete = bool(info is not None and info["completed_at"]) and not unfinished
        joined = 0
        if complete:
            with SubscriberStore(locate(config, config.subscribers.database)) as store:
                joined = count_new_subscribers(store, ledger, issue_id)
        settled_by = None
        if counts["uncertain"]:  # loads the provider's module: only when it has something to say
            from digest.delivery.providers.registry import settles_uncertain

            settled_by = settles_uncertain(config.provider.name)
        return {
            "issue_id": issue_id,
            "counts": counts,
            "complete": complete,
            "unconfirmed": ledger.unconfirmed(issue_id),
            "uncertain": [
                {"subscriber_id": u.subscriber_id, "email": u.email, "error": u.last_error}
                for u in ledger.uncertain(issue_id, limit=None)  # each named, to be settled
            ],
            "uncertain_settled_by": settled_by,
            "new_subscribers": joined,
            "info": info,
            "started_at": info["started_at"] if info else None,
            "completed_at": info["completed_at"] if complete and info else None,
            "runs": info["runs"] if info else 0,
            "failures": [
                {"email": f.email, "state": f.state, "error": f.last_error}
                for f in ledger.failures(issue_id, limit=20)
            ],
        }


def count_new_subscribers(store: SubscriberStore, ledger: Ledger, issue_id: str) -> int:
    """Active subscribers who have no row for the issue (they joined after it went out)."""
    missing = 0
    batch: list[int] = []
    for subscriber in store.iter_active(chunk=CHUNK):
        batch.append(subscriber.id)
        if len(batch) >= 500:
            missing += len(batch) - len(ledger.queued_ids(issue_id, batch))
            batch = []
    if batch:
        missing += len(batch) - len(ledger.queued_ids(issue_id, batch))
    return missing
