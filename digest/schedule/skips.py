"""What the schedule decided about an issue it did not send: the run record of a skipped
period (too few posts, no posts) and its reason, for `digest status`."""

from __future__ import annotations

from pathlib import Path

from digest.config import Config
from digest.schedule.runs import RunOutcome, RunStore
from digest.store.database import locate

SKIPS = frozenset({RunOutcome.SKIPPED_EMPTY, RunOutcome.EMPTY, RunOutcome.MISSED})


def skipped_run(config: Config, issue_id: str) -> dict[str, str] | None:
    """The latest scheduled run of ``issue_id`` that ended without sending (skipped for
    too few posts or none, or missed), as {outcome, finished_at, detail, carried}; None
    when the schedule never skipped it. A weekly newsletter's day issues are looked up
    among its daily runs as well."""
    path = locate(config, config.schedule.database)
    if isinstance(path, Path) and not path.exists():
        return None  # no schedule has run here: nothing to read (and nothing to create)
    found = None
    for key in (config.issue_prefix, config.issue_prefix + "daily:"):
        with RunStore(path, key) as runs:
            for run in runs.all():
                if run.issue_id == issue_id and run.outcome in SKIPS:
                    found = run
    if found is None:
        return None
    when = found.finished_at or found.occurrence
    return {
        "outcome": found.outcome,
        "finished_at": when.strftime("%Y-%m-%d %H:%M UTC"),
        "detail": found.detail,
        "carried": "yes" if config.limits.carry_over else "no",
    }
