"""Local-time waves: each zone's due instant for an issue, across DST changes."""

from __future__ import annotations

from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from digest.content.window import day_window, week_window
from digest.errors import ConfigError
from digest.schedule.waves import due_and_coming, local_due, parse_local_time, plan

BERLIN = ZoneInfo("Europe/Berlin")
NINE = time(9, 0)
FIVE = (
    "Asia/Tokyo",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Auckland",
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)  # type: ignore[misc]


def test_local_time_is_hh_mm() -> None:
    assert parse_local_time("09:00") == NINE and parse_local_time(" 23:59") == time(23, 59)
    for bad in ("9:00", "24:00", "09:60", "nine", ""):
        with pytest.raises(ConfigError) as raised:
            parse_local_time(bad)
        assert str(raised.value) == (
            f'schedule.local_time: {bad!r} is not a time of day such as "09:00" (HH:MM)'
        )


def test_a_weekly_issue_reaches_each_zone_at_its_first_nine_after_the_week_ends() -> None:
    # 2026-W44 ends Monday 2026-11-02 00:00 in Berlin (Sunday 23:00 UTC); every zone
    # but Auckland is past its DST change by then.
    ready = week_window("2026-W44", BERLIN).end
    waves = plan(ready, NINE, {zone: 2 for zone in FIVE})
    assert [(w.due, w.zones) for w in waves] == [
        (utc(2026, 11, 2, 0, 0), (("Asia/Tokyo", 2),)),
        (utc(2026, 11, 2, 8, 0), (("Europe/Berlin", 2),)),
        (utc(2026, 11, 2, 14, 0), (("America/New_York", 2),)),
        (utc(2026, 11, 2, 17, 0), (("America/Los_Angeles", 2),)),
        # Auckland's Monday 09:00 (Sunday 20:00 UTC) came before the week was over in
        # Berlin: it gets the issue on its Tuesday morning.
        (utc(2026, 11, 2, 20, 0), (("Pacific/Auckland", 2),)),
    ]
    for wave in waves:
        ((zone, _),) = wave.zones
        assert wave.local(zone).strftime("%H:%M") == "09:00"
    assert waves[1].describe() == ("2026-11-02 08:00 UTC: 2 reader(s); Europe/Berlin Mon 09:00 CET")
    done, coming = due_and_coming(waves, utc(2026, 11, 2, 14, 0))
    assert (len(done), len(coming)) == (3, 2)


def test_zones_with_the_same_offset_share_a_wave() -> None:
    ready = day_window(datetime(2026, 7, 1).date(), BERLIN).end
    waves = plan(ready, NINE, ["Europe/Berlin", "Europe/Paris", "Africa/Lagos"])
    # in July Berlin and Paris are UTC+2, Lagos UTC+1
    assert [(w.due, [z for z, _ in w.zones]) for w in waves] == [
        (utc(2026, 7, 2, 7, 0), ["Europe/Berlin", "Europe/Paris"]),
        (utc(2026, 7, 2, 8, 0), ["Africa/Lagos"]),
    ]


def test_a_local_time_in_the_skipped_hour_is_sent_at_the_end_of_the_gap() -> None:
    # Europe/Berlin skips 02:00-03:00 on 2026-03-29
    ready = utc(2026, 3, 28, 23, 0)
    due = local_due(ready, time(2, 30), BERLIN)
    assert due == utc(2026, 3, 29, 1, 0)  # 03:00 CEST, the first instant after the gap
    assert due.astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"


def test_a_repeated_local_time_is_sent_once_in_its_first_pass() -> None:
    # Europe/Berlin repeats 02:00-03:00 on 2026-10-25
    ready = utc(2026, 10, 24, 22, 0)
    due = local_due(ready, time(2, 30), BERLIN)
    assert due == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, not 02:30 CET an hour later
    # asked again between the two passes, the next 02:30 is the next day's
    assert local_due(utc(2026, 10, 25, 0, 31), time(2, 30), BERLIN) == utc(2026, 10, 26, 1, 30)


def test_nine_local_stays_nine_across_the_october_and_november_changes() -> None:
    # Berlin changes on 2026-10-25, New York and Los Angeles on 2026-11-01.
    new_york = ZoneInfo("America/New_York")
    days = [(10, 24), (10, 25), (10, 26), (10, 31), (11, 1), (11, 2)]
    seen = []
    for month, day in days:
        ready = day_window(datetime(2026, month, day).date(), BERLIN).end
        for zone in (BERLIN, new_york):
            due = local_due(ready, NINE, zone)
            assert due.astimezone(zone).strftime("%H:%M") == "09:00"
            seen.append(due)
    assert len(set(seen)) == len(seen)
