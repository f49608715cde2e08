"""What an import did, or with ``--dry-run`` would do: counts, rejected rows with their
reasons, warnings, and the first changes one by one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_LISTED = 200  # changes listed one by one in a report; the counts are always complete


@dataclass(frozen=True)
class Rejected:
    row: int
    reason: str
    email: str | None = None


@dataclass(frozen=True)
class Change:
    row: int
    email: str
    action: str  # add, update, keep
    detail: str


@dataclass
class ImportReport:
    path: str
    platform: str = ""
    encoding: str = "utf-8"
    dry_run: bool = False
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_inactive: int = 0  # rows that said "active" for someone who had left
    suppressed: int = 0  # rows for addresses erased on request
    by_status: dict[str, int] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    warnings: list[Rejected] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "platform": self.platform,
            "encoding": self.encoding,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "kept_inactive": self.kept_inactive,
            "suppressed": self.suppressed,
            "by_status": dict(self.by_status),
            "rejected": [r.__dict__ for r in self.rejected],
            "warnings": [w.__dict__ for w in self.warnings],
            "changes": [c.__dict__ for c in self.changes],
        }


def note(report: ImportReport, change: Change) -> None:
    if len(report.changes) < MAX_LISTED:
        report.changes.append(change)
