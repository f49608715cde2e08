"""Local-time waves: one issue, one build, sent to each reader at ``schedule.local_time``
in the reader's own timezone.

An issue is ready when its window has ended (the week, or the day, in the site's
timezone). Each reader's message is due at the first ``local_time`` on their clock at or
after that instant; readers whose due instants are equal form one wave. A zone ahead of the
site can therefore get a weekly issue on its Tuesday morning: its Monday 09:00 came before
the week was over where the site is.

Wall-clock rules (the same as the cron schedule's,
:func:`digest.content.wallclock.resolve_wall`):

* **a local time that does not exist** (spring forward skips it) is sent at the first
  instant after the gap: 02:30 on the day Europe/Berlin skips 02:00-03:00 is sent at 03:00
  CEST;
* **a local time that happens twice** (fall back repeats it) is sent once, in its first
  pass (``fold=0``, the earlier instant); the second pass is not a new due time.

Each reader gets exactly one due instant per issue, so a zone gets exactly one send of it
whatever its clock does that day.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from digest.content.wallclock import local_due, parse_wall_time, resolve_wall
from digest.errors import ConfigError

__all__ = ["Wave", "due_and_coming", "local_due", "parse_local_time", "plan", "resolve_wall"]


def parse_local_time(value: str) -> time:
    """``"09:00"`` as a time; ConfigError naming the option for anything else."""
    try:
        return parse_wall_time(value)
    except ValueError as exc:
        raise ConfigError(f"schedule.local_time: {exc}") from None


@dataclass(frozen=True)
class Wave:
    """Readers due at one instant: the zones in it and how many readers each holds."""

    due: datetime  # UTC
    zones: tuple[tuple[str, int], ...]

    @property
    def readers(self) -> int:
        return sum(count for _, count in self.zones)

    def local(self, zone: str) -> datetime:
        return self.due.astimezone(ZoneInfo(zone))

    def describe(self) -> str:
        names = ", ".join(
            f"{zone} {self.local(zone).strftime('%a %H:%M %Z')}" for zone, _ in self.zones
        )
        return f"{self.due.strftime('%Y-%m-%d %H:%M UTC')}: {self.readers} reader(s); {names}"


def plan(ready: datetime, at: time, zones: Mapping[str, int] | Iterable[str]) -> list[Wave]:
    """The waves of an issue ready at ``ready``: ``zones`` maps a zone to its readers (or
    lists zones, one reader each), grouped by due instant, earliest first."""
    counts = dict(zones) if isinstance(zones, Mapping) else dict.fromkeys(zones, 1)
    grouped: dict[datetime, list[tuple[str, int]]] = defaultdict(list)
    for zone, count in counts.items():
        grouped[local_due(ready, at, ZoneInfo(zone))].append((zone, count))
    return [Wave(due, tuple(sorted(grouped[due]))) for due in sorted(grouped)]


def due_and_coming(waves: Iterable[Wave], now: datetime) -> tuple[list[Wave], list[Wave]]:
    """(the waves whose time has come at ``now``, the waves still to come)."""
    done: list[Wave] = []
    coming: list[Wave] = []
    for wave in waves:
        (done if wave.due <= now else coming).append(wave)
    return done, coming
