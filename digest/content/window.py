"""An issue's window of time: an ISO week, a day, or a since/until range, in the site's
timezone, with the issue id that names it."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from digest.config import WEEKDAYS, Config
from digest.errors import DigestError


class WindowError(DigestError):
    exit_code = 2


@dataclass(frozen=True)
class Window:
    """``start`` inclusive, ``end`` exclusive, both aware in the site's timezone."""

    start: datetime
    end: datetime
    issue_id: str

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()

    def describe(self) -> str:
        return f"{self.start.date().isoformat()} to {self.last_day.isoformat()}"


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz)


def _week_start_of(day: date, week_start: str) -> date:
    offset = (day.weekday() - WEEKDAYS.index(week_start)) % 7
    return day - timedelta(days=offset)


def week_window(week: str, tz: ZoneInfo, week_start: str = "monday") -> Window:
    """The window of an ISO week label such as ``2026-W34``.

    With a week start other than Monday, the window begins on the last such day on or
    before the ISO week's Monday.
    """
    match = re.fullmatch(r"(\d{4})-?W(\d{1,2})", week.strip(), flags=re.IGNORECASE)
    if not match:
        raise WindowError(f"--week {week!r}: expected an ISO week such as 2026-W34")
    year, number = int(match.group(1)), int(match.group(2))
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError:
        raise WindowError(f"--week {week!r}: {year} has no week {number}") from None
    first = _week_start_of(monday, week_start)
    label = f"{year}-W{number:02d}"
    return Window(_midnight(first, tz), _midnight(first + timedelta(days=7), tz), label)


def last_complete_week(now: datetime, tz: ZoneInfo, week_start: str = "monday") -> Window:
    """The most recent whole week that ended before ``now``."""
    today = now.astimezone(tz).date()
    this_week = _week_start_of(today, week_start)
    first = this_week - timedelta(days=7)
    return window_for_week_containing(first, tz, week_start)


def window_for_week_containing(day: date, tz: ZoneInfo, week_start: str = "monday") -> Window:
    first = _week_start_of(day, week_start)
    # Label by the ISO week that holds most of the window (its Thursday-equivalent).
    iso = (first + timedelta(days=3)).isocalendar()
    label = f"{iso[0]}-W{iso[1]:02d}"
    return Window(_midnight(first, tz), _midnight(first + timedelta(days=7), tz), label)


def day_window(day: date, tz: ZoneInfo) -> Window:
    """One day, midnight to midnight in ``tz``, labelled by its date (a daily issue)."""
    return Window(_midnight(day, tz), _midnight(day + timedelta(days=1), tz), day.isoformat())


def is_day(window: Window) -> bool:
    """Whether a window is one day (a day of a DST change lasts 23 or 25 hours)."""
    return window.end - window.start <= timedelta(hours=25)


def last_complete_day(now: datetime, tz: ZoneInfo) -> Window:
    """The day before ``now``'s day in ``tz``."""
    return day_window(now.astimezone(tz).date() - timedelta(days=1), tz)


_DAY_LABEL = re.compile(r"\d{4}-\d{2}-\d{2}")


def range_window(since: date, until: date, tz: ZoneInfo) -> Window:
    """From the start of ``since`` to the end of ``until`` (both days included)."""
    if until < since:
        raise WindowError(f"--until {until} is before --since {since}")
    label = f"{since.isoformat()}_{until.isoformat()}"
    return Window(_midnight(since, tz), _midnight(until + timedelta(days=1), tz), label)


def resolve_window(
    config: Config,
    now: datetime,
    *,
    week: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> Window:
    """The window the command line asks for; the last complete week by default.

    A newsletter other than the config's first has its name before its issue ids
    (``links-2026-W47``), so its ledger, runs and archive are its own; ``--week`` takes
    either form.
    """
    window = _resolve_window(config, now, week=_unprefixed(config, week), since=since, until=until)
    if config.issue_prefix:
        window = replace(window, issue_id=config.issue_prefix + window.issue_id)
    return window


def _unprefixed(config: Config, week: str | None) -> str | None:
    if week and config.issue_prefix and week.startswith(config.issue_prefix):
        return week[len(config.issue_prefix) :]
    if week:
        for name in config.newsletter_names[1:]:
            if name != config.newsletter_name and week.startswith(f"{name}-"):
                raise WindowError(
                    f"--week {week}: that is an issue of the {name} newsletter; "
                    f"add --newsletter {name}"
                )
    return week


def _resolve_window(
    config: Config,
    now: datetime,
    *,
    week: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> Window:
    tz = config.tz
    if week and (since or until):
        raise WindowError("use either --week or --since/--until, not both")
    if week and _DAY_LABEL.fullmatch(week.strip()):  # a daily issue's id
        try:
            return day_window(date.fromisoformat(week.strip()), tz)
        except ValueError:
            raise WindowError(f"--week {week!r}: not a date such as 2026-11-17") from None
    if week:
        return week_window(week, tz, config.week_start)
    if since or until:
        start = since or (until - timedelta(days=6) if until else now.astimezone(tz).date())
        end = until or now.astimezone(tz).date()
        return range_window(start, end, tz)
    if config.period == "day":
        return last_complete_day(now, tz)
    return last_complete_week(now, tz, config.week_start)
