"""Clocks: what the scheduler reads the time from and sleeps on (:class:`SystemClock`, or
a :class:`ScaledClock` that starts at a given moment and may run faster, for rehearsals)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Protocol

from digest.errors import (
    UsageError,
)

if TYPE_CHECKING:
    pass


class Clock(Protocol):
    """Where the scheduler gets the time, and how it waits."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        """Wait ``seconds`` or until ``stop`` is set, whichever comes first."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(max(0.0, seconds))


class ScaledClock:
    """A clock that reads ``start`` at the real instant ``anchor`` and runs ``speed`` times
    faster than real time: for rehearsing a weekly schedule in seconds.

    Every process given the same anchor, start and speed sees the same timeline, so a
    restarted scheduler carries on where the killed one was.
    """

    def __init__(self, start: datetime, anchor: float, speed: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError("the rehearsal clock's start must carry a UTC offset")
        self.start = start
        self.anchor = anchor
        self.speed = speed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.anchor) * self.speed)

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(max(0.0, seconds / self.speed))


def clock_at(moment: str | None) -> Clock:
    """The system clock; or, given ``--now``, a rehearsal clock.

    ``2026-11-23T09:30:00+01:00`` reads that moment now and goes on at the real pace.
    ``START@UNIX_TIME[xSPEED]`` reads START at that Unix time and runs SPEED times faster,
    so processes started later join the same rehearsal
    (``2026-11-16T08:59:00+01:00@1763279940x60480``: a week every 10 seconds).
    """
    if not moment:
        return SystemClock()
    start_text, _, rest = moment.partition("@")
    anchor_text, _, speed_text = rest.partition("x")
    try:
        start = datetime.fromisoformat(start_text)
        speed = float(speed_text or 1)
        if start.tzinfo is None or speed <= 0:
            raise ValueError(moment)
        anchor = float(anchor_text) if anchor_text else time.time()
    except ValueError:
        raise UsageError(
            f"--now {moment!r}: expected a moment with its offset, such as "
            "2026-11-23T09:30:00+01:00, or START@UNIX_TIME[xSPEED] to rehearse faster"
        ) from None
    return ScaledClock(start, anchor, speed)
