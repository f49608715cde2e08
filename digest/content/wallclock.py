"""Wall-clock times in a timezone as instants, with one rule for the hours daylight saving
time skips or repeats (used by the cron schedule and by each reader's local time):

* a wall-clock time that does not exist (spring forward) stands for the first instant
  after the gap;
* a wall-clock time that happens twice (fall back) stands for its first pass
  (``fold=0``, the earlier instant).
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo


def resolve_wall(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant a naive wall-clock time in ``tz`` stands for: the first pass of a
    repeated time, the end of the gap for a skipped one (aware, in ``tz``)."""
    first = wall.replace(tzinfo=tz, fold=0)
    if first.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists (once, or twice: the first pass wins)
    # In a gap: the two readings straddle the transition; find its instant.
    lo = wall.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    hi = first.astimezone(timezone.utc)
    lo, hi = min(lo, hi), max(lo, hi)
    before = lo.astimezone(tz).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi.replace(microsecond=0).astimezone(tz)


def local_due(ready: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first ``at`` on ``tz``'s clock at or after ``ready`` (aware, in UTC)."""
    day = ready.astimezone(tz).date() - timedelta(days=1)  # a repeated hour can step back
    while True:
        due = resolve_wall(datetime.combine(day, at), tz)
        if due >= ready:
            return due.astimezone(timezone.utc)
        day += timedelta(days=1)


_WALL_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def parse_wall_time(value: str) -> time:
    """``"09:00"`` as a time; ValueError for anything else."""
    match = _WALL_TIME.fullmatch((value or "").strip())
    if not match:
        raise ValueError(f'{value!r} is not a time of day such as "09:00" (HH:MM)')
    return time(int(match.group(1)), int(match.group(2)))
