"""Thin periods carried over (``limits.carry_over``): the next issue's window reaches back
to where the last sent issue of its cadence ended.

A period with fewer posts than ``limits.min_posts`` (``min_posts_daily`` for a day) is
not sent by the schedule, and its run is recorded with the reason. Without carry-over its
posts are never sent. With it, the next issue of the same cadence takes as candidates the
posts dated from the end of the last issue that was sent up to its own window, so a thin
week's posts go out with the next full one.

What counts as sent is a mark the send loop leaves in the issue's folder
(``out/<issue>/sent.json``, with the issue's window) when it queues the issue's
readers, before a message leaves: an issue that began to go out counts as sent, so its
posts are never carried into another one. The mark is the only thing read here; a built
issue without it (a preview, a thin week `digest send` refused) was never sent.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from digest.content.decisions import Decision, Reason, Selection
from digest.content.files import read_inside
from digest.content.window import Window, is_day
from digest.errors import ContentError
from digest.store.atomic import write_atomic

log = logging.getLogger(__name__)

SENT_MARK = "sent.json"
_PERIOD = re.compile(r"\d{4}-(W\d{2}|\d{2}-\d{2})")  # a week's or a day's issue id


@dataclass(frozen=True)
class SentIssue:
    """An issue that began to go out, and its window."""

    issue_id: str
    start: datetime
    end: datetime

    @property
    def daily(self) -> bool:
        return is_day(Window(self.start, self.end, self.issue_id))


def mark_sent(folder: Path, window: Window, now: datetime) -> None:
    """Record in an issue's folder that it began to go out (written once, kept)."""
    path = folder / SENT_MARK
    if path.exists():
        return
    data = {
        "issue_id": window.issue_id,
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
        "marked_at": now.isoformat(),
    }
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def sent_issues(out_dir: Path) -> list[SentIssue]:
    """Every issue in ``out_dir`` with a sent mark; an unreadable mark is logged and
    skipped."""
    found: list[SentIssue] = []
    if not out_dir.is_dir():
        return found
    for path in out_dir.glob(f"*/{SENT_MARK}"):
        try:
            data = json.loads(read_inside(path.parent, path, max_bytes=100_000))
            found.append(
                SentIssue(
                    str(data["issue_id"]),
                    datetime.fromisoformat(data["window"]["start"]),
                    datetime.fromisoformat(data["window"]["end"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError, ContentError) as exc:
            log.warning("%s: not read as a sent issue (%s)", path, exc)
    return found


def is_sent(out_dir: Path, issue_id: str) -> bool:
    """Whether the issue ``issue_id`` has a sent mark."""
    return (out_dir / issue_id / SENT_MARK).is_file()


def carried_from(out_dir: Path, window: Window, issue_prefix: str = "") -> datetime | None:
    """Where ``window``'s candidates start with carry-over: the end of the last sent issue
    of the same newsletter (``issue_prefix``) and cadence (day or week) that ended before
    the window began; None when that is the window's own start (nothing skipped in
    between) or nothing of that cadence was ever sent (a first issue reaches back to
    nothing)."""
    daily = is_day(window)
    ends = [
        sent.end
        for sent in sent_issues(out_dir)
        if sent.issue_id.startswith(issue_prefix)
        and _PERIOD.fullmatch(sent.issue_id[len(issue_prefix) :])
        and sent.daily == daily
        and sent.end <= window.start
    ]
    if not ends:
        return None
    last = max(ends)
    # a gap under a second is the same instant written differently (DST, rounding)
    return last if window.start - last >= timedelta(seconds=1) else None


def note_carried(decisions: list[Decision], window: Window, start: datetime) -> list[Decision]:
    """Each decision on a post from the carried span says so (``select --explain``)."""
    note = f"; carried over: dated after {start:%Y-%m-%d %H:%M}, where the last sent issue ended"
    return [
        replace(d, detail=d.explain() + note)
        if start <= d.post.date < window.start and d.reason is not Reason.OUT_OF_WINDOW
        else d
        for d in decisions
    ]


def manifest_entry(selection: Selection) -> dict[str, Any]:
    """The manifest's ``carried`` entry: where the carried span started and the posts of
    the email that came from it (empty when nothing was carried)."""
    if selection.carried_from is None:
        return {}
    return {
        "carried": {
            "from": selection.carried_from.isoformat(),
            "posts": sorted(post.slug for post in selection.carried),
        }
    }
