"""The schedule of ``schedule.local_time``: its occurrences are the waves of every issue.

With ``local_time: "09:00"`` an issue (a week, or a day with ``period: day``) is built
once, when its first wave comes, and sent in waves: one per due instant of the readers'
timezones (:mod:`digest.schedule.waves`). :class:`WaveSchedule` offers the occurrence maths
of :class:`~digest.schedule.due.Schedule` (next, latest, count), so ``digest run``
and ``digest schedule`` treat each wave as one run of the runs database: recorded once,
resumed after a crash, caught up within ``schedule.grace``. The issue a wave sends is the
last complete window before it (each zone's due instant falls less than a day after its
window ended), and the send queues the readers whose due instant is at or before the wave
(a wave missed past the grace goes out with the next one); the ledger's one row per
reader and issue keeps every wave to one message per reader.

The zones are those of the active readers (a reader who chose none counts in the
schedule's timezone), read when the schedule is made: ``digest run`` reads them on each
run; a long-lived ``digest schedule`` on start, and a reader in a zone it has not seen yet
goes out with the next wave after their due time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from digest.audience.rhythm import DAILY, default_zone, zone_counts
from digest.audience.subscribers import SubscriberStore
from digest.content.wallclock import local_due
from digest.content.window import Window, day_window, window_for_week_containing
from digest.schedule.occurrences import Occurrences
from digest.schedule.waves import parse_local_time
from digest.store.database import locate

if TYPE_CHECKING:
    from digest.config import Config


class WaveSchedule(Occurrences):
    """Every wave instant of every issue, for readers in ``zones``."""

    def __init__(
        self,
        at: time,
        zones: Iterable[str],
        *,
        site_tz: ZoneInfo,
        tz: ZoneInfo,
        period: str = "week",
        week_start: str = "monday",
    ) -> None:
        self.at = at
        self.zones = tuple(sorted(set(zones)))
        self.site_tz = site_tz
        self.tz = tz  # how times are shown: the schedule's timezone
        self.period = period
        self.week_start = week_start
        self.cron = f"{at.strftime('%H:%M')} local in {len(self.zones)} zone(s)"

    def _window(self, day: date) -> Window:
        if self.period == "day":
            return day_window(day, self.site_tz)
        return window_for_week_containing(day, self.site_tz, self.week_start)

    def waves_of(self, window: Window) -> list[datetime]:
        """The due instants of one issue, earliest first (UTC)."""
        return sorted({local_due(window.end, self.at, ZoneInfo(z)) for z in self.zones})

    def zones_at(self, wave: datetime) -> list[str]:
        """The zones whose readers are due at ``wave`` (for the issue it sends)."""
        day = wave.astimezone(self.site_tz).date()
        found: set[str] = set()
        for back in range(0, 9):
            window = self._window(day - timedelta(days=back))
            if window.end > wave:
                continue
            for zone in self.zones:
                if local_due(window.end, self.at, ZoneInfo(zone)) == wave:
                    found.add(zone)
            break
        return sorted(found)

    def _around(self, moment: datetime) -> list[datetime]:
        """Every wave of the issues whose windows end within a period of ``moment``."""
        step = timedelta(days=1 if self.period == "day" else 7)
        day = moment.astimezone(self.site_tz).date()
        instants: set[datetime] = set()
        for n in range(-2, 3):
            instants.update(self.waves_of(self._window(day + n * step)))
        return sorted(instants)

    def next_after(self, moment: datetime) -> datetime:
        """The first wave strictly after ``moment`` (aware, in the schedule's zone)."""
        if not self.zones:
            raise ValueError("a wave schedule without zones has no waves")
        while True:
            found = [i for i in self._around(moment) if i > moment]
            if found:
                return found[0].astimezone(self.tz)
            moment += timedelta(days=7)  # pragma: no cover - every period has a wave

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        found = [i for i in self._around(moment) if i <= moment]
        return found[-1].astimezone(self.tz) if found else None


def wave_schedule(config: Config, *, daily: bool = False) -> WaveSchedule:
    """The waves of ``config``'s newsletter, for the zones of its active readers now; with
    ``daily``, the waves of the day issues of a weekly newsletter, for its daily readers
    (empty when it has none)."""
    assert config.schedule.local_time is not None
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        zones = zone_counts(store, config, frequency=DAILY if daily else None)
    if daily:
        return WaveSchedule(
            parse_local_time(config.schedule.local_time),
            zones,
            site_tz=config.tz,
            tz=ZoneInfo(default_zone(config)),
            period="day",
        )
    shown = ZoneInfo(default_zone(config))
    return WaveSchedule(
        parse_local_time(config.schedule.local_time),
        zones or (shown.key,),
        site_tz=config.tz,
        tz=shown,
        period=config.period,
        week_start=config.week_start,
    )


def has_daily_waves(config: Config) -> bool:
    """Whether a weekly newsletter sent at local time has daily readers to send to."""
    if config.schedule.local_time is None or config.period != "week":
        return False
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        return bool(zone_counts(store, config, frequency=DAILY))
