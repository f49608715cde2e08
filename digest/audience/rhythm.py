"""Each subscriber's rhythm: how often they read (``weekly`` or ``daily``) and where
(an IANA timezone), kept in the subscriber store (its migration 7).

Cadence
-------
A newsletter whose issues are weeks (``period: week``, the default) can also be built for a
single day (issue ids such as ``2026-11-03`` beside ``2026-W45``, the same sources and
selection rules over a one-day window). A weekly reader receives the weekly issues, a daily
reader the daily ones, never both: :func:`receives_issue` decides, and the send queues only
the readers it lets through. A newsletter whose issues are days (``period: day``) is daily
for everyone who receives it.

A switch lands on a week boundary
---------------------------------
A change of cadence takes effect at the start of the next week (``week_start`` in the
site's timezone), never in the middle of one:

* **weekly to daily** on any day of week W: the reader still receives the weekly issue of
  week W (sent after W ends), then every daily issue from the first day of week W+1.
* **daily to weekly** on any day of week W: the reader still receives the daily issues of
  the rest of week W, then the weekly issue of week W+1.

Every post of the site falls in exactly one window the reader receives: nothing is missed
and nothing comes twice. The store keeps the cadence asked for (``frequency``) and the day
it starts (``frequency_since``); before that day the reader is on the other cadence. A
switch back before the first one has landed cancels it. :func:`switch` says which issue a
switch lands on, and ``digest subscribers set`` prints it.

Timezone
--------
``timezone`` is an IANA name checked against the zone database (:func:`check_timezone`);
NULL means the schedule's timezone (``schedule.timezone``, else the site's), so a reader
who never chose follows the config. Public input (the subscribe form) goes through
:func:`zone_or_default`: an unknown or malformed name is the default, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.audience.subscribers import Subscriber, SubscriberStore, normalise_email
from digest.content.wallclock import local_due, parse_wall_time
from digest.content.window import Window, day_window, is_day, window_for_week_containing
from digest.errors import StoreError
from digest.safelog import log_change
from digest.store.clock import utc_text

if TYPE_CHECKING:
    from digest.config import Config

WEEKLY = "weekly"
DAILY = "daily"
FREQUENCIES = (WEEKLY, DAILY)
_ZONE_LIMIT = 64  # the longest IANA name is 32 characters


class RhythmError(StoreError):
    """A frequency or timezone that digest does not know."""


def check_frequency(value: str) -> str:
    text = (value or "").strip().lower()
    if text not in FREQUENCIES:
        raise RhythmError(f"frequency {value!r}: expected one of {', '.join(FREQUENCIES)}")
    return text


def check_timezone(value: str) -> str:
    """``value`` as an IANA zone name zoneinfo knows, or RhythmError naming it."""
    text = (value or "").strip()
    try:
        if not text or len(text) > _ZONE_LIMIT:
            raise ValueError(text)
        ZoneInfo(text)
    except (ValueError, ZoneInfoNotFoundError, OSError):
        raise RhythmError(
            f"timezone {value!r}: not an IANA timezone; use a name such as Europe/Berlin or UTC"
        ) from None
    return text


def zone_or_default(value: str | None) -> str | None:
    """Public input: a known zone name, or None (the schedule's timezone)."""
    try:
        return check_timezone(value or "")
    except RhythmError:
        return None


def other(frequency: str) -> str:
    return DAILY if frequency == WEEKLY else WEEKLY


@dataclass(frozen=True)
class Rhythm:
    """A subscriber's cadence (from ``since`` on; the other one before) and zone."""

    frequency: str = WEEKLY
    timezone: str | None = None  # None: the schedule's timezone
    since: date | None = None

    def cadence_on(self, day: date) -> str:
        """The cadence the reader is on for an issue whose window starts on ``day``."""
        if self.since is None or day >= self.since:
            return self.frequency
        return other(self.frequency)

    def zone(self, default: str) -> str:
        return self.timezone or default


def issue_cadence(window: Window) -> str | None:
    """``daily`` for a one-day window, ``weekly`` for a week, None for another range."""
    span = window.end - window.start
    if is_day(window):
        return DAILY
    if timedelta(days=7) - timedelta(hours=1) <= span <= timedelta(days=7, hours=1):
        return WEEKLY
    return None


def receives_issue(rhythm: Rhythm, window: Window, config: Config) -> bool:
    """Whether a reader with ``rhythm`` receives the issue of ``window``.

    A ``period: day`` newsletter, and a window that is neither a day nor a week (an issue
    of ``--since/--until``), go to every reader as before."""
    cadence = issue_cadence(window)
    if config.period == "day" or cadence is None:
        return True
    return rhythm.cadence_on(window.start.date()) == cadence


@dataclass(frozen=True)
class Switch:
    """What :func:`switch` decided: the reader's rhythm now, and where the change lands."""

    email: str
    rhythm: Rhythm
    changed: bool
    last_old: str | None = None  # the last issue of the old cadence
    first_new: str | None = None  # the first issue of the new cadence

    def describe(self) -> str:
        zone = self.rhythm.timezone or "the schedule's timezone"
        head = f"{self.email}: {self.rhythm.frequency}, {zone}"
        if self.first_new:
            return (
                f"{head}; the switch lands on {self.first_new} "
                f"(the last {other(self.rhythm.frequency)} issue is {self.last_old})"
            )
        return head


def next_week_start(now: datetime, config: Config) -> date:
    """The first day of the week after the one ``now`` falls in (site timezone)."""
    this = window_for_week_containing(
        now.astimezone(config.tz).date(), config.tz, config.week_start
    )
    return this.end.date()


def landing(since: date, frequency: str, config: Config) -> tuple[str, str]:
    """(last issue of the old cadence, first issue of the new one) for a switch to
    ``frequency`` that starts on ``since``, with the newsletter's prefix."""
    tz, prefix = config.tz, config.issue_prefix
    last_day = since - timedelta(days=1)
    week_before = window_for_week_containing(last_day, tz, config.week_start).issue_id
    week_from = window_for_week_containing(since, tz, config.week_start).issue_id
    if frequency == DAILY:
        return prefix + week_before, prefix + day_window(since, tz).issue_id
    return prefix + day_window(last_day, tz).issue_id, prefix + week_from


class Rhythms:
    """The rhythm columns of the subscribers table, read and written on the store's own
    connection (either backend)."""

    def __init__(self, store: SubscriberStore) -> None:
        self._store = store
        self._db = store.connection

    @staticmethod
    def _from_row(row: tuple[object, ...]) -> Rhythm:
        frequency, zone, since = row
        return Rhythm(
            str(frequency or WEEKLY),
            str(zone) if zone else None,
            date.fromisoformat(str(since)) if since else None,
        )

    def of(self, subscriber: Subscriber) -> Rhythm:
        row = self._db.execute(
            "SELECT frequency, timezone, frequency_since FROM subscribers WHERE id = ?",
            (subscriber.id,),
        ).fetchone()
        return Rhythm() if row is None else self._from_row(tuple(row))

    def all(self) -> dict[int, Rhythm]:
        """subscriber id -> rhythm, for everyone whose rhythm is not the default."""
        rows = self._db.execute(
            "SELECT id, frequency, timezone, frequency_since FROM subscribers "
            "WHERE frequency <> 'weekly' OR timezone IS NOT NULL OR frequency_since IS NOT NULL"
        )
        return {int(row[0]): self._from_row(tuple(row[1:])) for row in rows}

    def imported(
        self, subscriber: Subscriber, frequency: str | None, timezone: str | None
    ) -> list[str]:
        """An import's values (already checked; None: the file does not say), as they are:
        an import states where a reader is now, so no switch rule applies. Returns the
        names of the columns it changed."""
        current = self.of(subscriber)
        changed: list[str] = []
        rhythm = current
        if frequency is not None and frequency != current.cadence_on(date.max):
            rhythm = Rhythm(frequency, rhythm.timezone, None)
            changed.append("frequency")
        if timezone is not None and timezone != current.timezone:
            rhythm = Rhythm(rhythm.frequency, timezone, rhythm.since)
            changed.append("timezone")
        if changed:
            self._db.execute(
                "UPDATE subscribers SET frequency = ?, timezone = ?, frequency_since = ? "
                "WHERE id = ?",
                (
                    rhythm.frequency,
                    rhythm.timezone,
                    rhythm.since.isoformat() if rhythm.since else None,
                    subscriber.id,
                ),
            )
        return changed

    def set(
        self,
        email: str,
        *,
        frequency: str | None = None,
        timezone: str | None = None,
        now: datetime,
        config: Config,
    ) -> Switch:
        """Change a reader's cadence and/or zone; a cadence change lands on the next week
        start (see the module's rule). Both values are checked first; nothing changes on a
        bad one."""
        wanted_frequency = check_frequency(frequency) if frequency is not None else None
        wanted_zone = check_timezone(timezone) if timezone is not None else None
        found = self._store.get(normalise_email(email))
        if found is None:
            raise StoreError(f"{email}: no such subscriber")
        current = self.of(found)
        rhythm, last_old, first_new = current, None, None
        if wanted_frequency is not None and wanted_frequency != current.frequency:
            since = next_week_start(now, config)
            if current.since is not None and current.since >= since:
                # the earlier switch has not landed yet: switching back cancels it
                rhythm = Rhythm(wanted_frequency, current.timezone, None)
            else:
                rhythm = Rhythm(wanted_frequency, current.timezone, since)
                last_old, first_new = landing(since, wanted_frequency, config)
        if wanted_zone is not None:
            rhythm = Rhythm(rhythm.frequency, wanted_zone, rhythm.since)
        changed = rhythm != current
        if changed:
            with self._store.atomic():
                self._db.execute(
                    "UPDATE subscribers SET frequency = ?, timezone = ?, frequency_since = ?,"
                    " updated_at = ? WHERE id = ?",
                    (
                        rhythm.frequency,
                        rhythm.timezone,
                        rhythm.since.isoformat() if rhythm.since else None,
                        utc_text(now, "seconds"),
                        found.id,
                    ),
                )
            log_change(
                "rhythm",
                email=found.email,
                frequency=rhythm.frequency,
                timezone=rhythm.timezone,
                since=rhythm.since.isoformat() if rhythm.since else None,
            )
        return Switch(found.email, rhythm, changed, last_old, first_new)


def default_zone(config: Config) -> str:
    """The timezone of a reader who never chose one: the schedule's."""
    return config.schedule.timezone or config.timezone


def of_cadence(
    store: SubscriberStore,
    subscribers: Iterable[Subscriber],
    window: Window,
    config: Config,
    *,
    due_by: datetime | None = None,
) -> Iterator[Subscriber]:
    """The ``subscribers`` who receive the issue of ``window`` (see :func:`receives_issue`);
    only readers whose rhythm is not the default are looked up.

    ``due_by`` (with ``schedule.local_time``): only the readers whose local time for this
    issue has come by then (the first ``local_time`` on their clock after the window ends)."""
    rhythms = Rhythms(store).all()
    default = Rhythm()
    at = parse_wall_time(config.schedule.local_time) if config.schedule.local_time else None
    fallback = default_zone(config)
    dues: dict[str, datetime] = {}
    for subscriber in subscribers:
        found = rhythms.get(subscriber.id, default)
        if not receives_issue(found, window, config):
            continue
        if due_by is not None and at is not None:
            zone = found.zone(fallback)
            if zone not in dues:
                dues[zone] = local_due(window.end, at, ZoneInfo(zone))
            if dues[zone] > due_by:
                continue
        yield subscriber


def zone_counts(
    store: SubscriberStore, config: Config, *, frequency: str | None = None
) -> dict[str, int]:
    """Active readers per timezone (a reader who never chose counts in the default);
    with ``frequency``, only the readers who asked for it (a switch not yet landed
    included)."""
    fallback = default_zone(config)
    counts: dict[str, int] = {}
    where = "status = 'active'" + (" AND frequency = ?" if frequency else "")
    for zone, count in store.connection.execute(
        f"SELECT timezone, COUNT(*) FROM subscribers WHERE {where} GROUP BY timezone",
        (frequency,) if frequency else (),
    ):
        name = zone or fallback
        counts[name] = counts.get(name, 0) + int(count)
    return counts
