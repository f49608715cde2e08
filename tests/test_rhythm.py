"""Each reader's cadence and timezone: stored on both backends, checked, switched on a
week boundary, and the issues each cadence receives."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest.audience.rhythm import (
    Rhythm,
    RhythmError,
    Rhythms,
    check_timezone,
    landing,
    next_week_start,
    receives_issue,
    zone_or_default,
)
from digest.audience.subscribers import SubscriberStore
from digest.cli import main
from digest.config import Config, load_config, parse_config
from digest.content.window import day_window, range_window, week_window
from digest.delivery.send import send_issue
from digest.errors import StoreError
from digest.store.database import Target, locate

NOW = datetime(2026, 11, 4, 12, 0, tzinfo=timezone.utc)  # Wednesday of 2026-W45
BASE: dict[str, Any] = {
    "site": {"name": "Field Notes", "base_url": "https://fieldnotes.example.com"},
    "sender": {"from_name": "Field Notes", "from_email": "news@fieldnotes.example.com"},
    "timezone": "Europe/Berlin",
}


@pytest.fixture
def store(store_at: Callable[[str], Target]) -> SubscriberStore:
    found = SubscriberStore(store_at("subs.sqlite"))
    found.add("ada@example.com", now=NOW)
    return found


def test_timezones_are_checked_against_the_zone_database() -> None:
    assert check_timezone(" Europe/Berlin ") == "Europe/Berlin"
    for bad in ("Mars/Olympus", "", "../etc/passwd", "Europe/" + "x" * 80):
        with pytest.raises(RhythmError) as raised:
            check_timezone(bad)
        assert str(raised.value) == (
            f"timezone {bad!r}: not an IANA timezone; use a name such as Europe/Berlin or UTC"
        )
    assert zone_or_default("Asia/Tokyo") == "Asia/Tokyo"
    assert zone_or_default("Nowhere/Land") is None and zone_or_default(None) is None


@pytest.mark.backends
def test_a_new_reader_is_weekly_in_the_schedules_zone(store: SubscriberStore) -> None:
    ada = store.get("ada@example.com")
    assert ada is not None
    assert Rhythms(store).of(ada) == Rhythm("weekly", None, None)
    assert Rhythms(store).all() == {}


@pytest.mark.backends
def test_a_switch_to_daily_lands_on_the_next_weeks_first_day(
    store: SubscriberStore, tmp_path: Path
) -> None:
    config = parse_config(BASE, tmp_path / "config.yaml")
    switch = Rhythms(store).set(
        "ADA@example.com", frequency="daily", timezone="Asia/Tokyo", now=NOW, config=config
    )
    assert switch.changed
    assert switch.rhythm == Rhythm("daily", "Asia/Tokyo", date(2026, 11, 9))
    assert (switch.last_old, switch.first_new) == ("2026-W45", "2026-11-09")
    assert switch.describe() == (
        "ada@example.com: daily, Asia/Tokyo; the switch lands on 2026-11-09 "
        "(the last weekly issue is 2026-W45)"
    )
    ada = store.get("ada@example.com")
    assert ada is not None and Rhythms(store).of(ada) == switch.rhythm
    assert Rhythms(store).all() == {ada.id: switch.rhythm}
    # The weekly issue of the week in progress, then every day from the next week on.
    tz = config.tz
    assert receives_issue(switch.rhythm, week_window("2026-W45", tz), config)
    assert not receives_issue(switch.rhythm, week_window("2026-W46", tz), config)
    assert not receives_issue(switch.rhythm, day_window(date(2026, 11, 8), tz), config)
    assert receives_issue(switch.rhythm, day_window(date(2026, 11, 9), tz), config)


@pytest.mark.backends
def test_a_switch_back_to_weekly_lands_after_the_daily_week_and_misses_no_day(
    store: SubscriberStore, tmp_path: Path
) -> None:
    config = parse_config(BASE, tmp_path / "config.yaml")
    rhythms = Rhythms(store)
    rhythms.set("ada@example.com", frequency="daily", now=NOW, config=config)
    later = NOW + timedelta(days=14)  # Wednesday of 2026-W47: daily since 2026-11-09
    back = rhythms.set("ada@example.com", frequency="weekly", now=later, config=config)
    assert back.rhythm == Rhythm("weekly", None, date(2026, 11, 23))
    assert (back.last_old, back.first_new) == ("2026-11-22", "2026-W48")
    tz = config.tz
    # every day from 2026-11-02 to 2026-11-29 falls in exactly one issue she receives
    got: list[date] = []
    for week in ("2026-W45", "2026-W46", "2026-W47", "2026-W48"):
        window = week_window(week, tz)
        if receives_issue(back.rhythm, window, config):
            got += [window.start.date() + timedelta(days=n) for n in range(7)]
        for n in range(7):
            day = day_window(window.start.date() + timedelta(days=n), tz)
            if receives_issue(back.rhythm, day, config):
                got.append(day.start.date())
    assert sorted(got) == [date(2026, 11, 2) + timedelta(days=n) for n in range(28)]


@pytest.mark.backends
def test_switching_back_before_the_switch_lands_cancels_it(
    store: SubscriberStore, tmp_path: Path
) -> None:
    config = parse_config(BASE, tmp_path / "config.yaml")
    rhythms = Rhythms(store)
    rhythms.set("ada@example.com", frequency="daily", now=NOW, config=config)
    back = rhythms.set("ada@example.com", frequency="weekly", now=NOW, config=config)
    assert back.rhythm == Rhythm("weekly", None, None) and back.first_new is None
    assert back.describe() == "ada@example.com: weekly, the schedule's timezone"
    same = rhythms.set("ada@example.com", frequency="weekly", now=NOW, config=config)
    assert not same.changed


@pytest.mark.backends
def test_bad_values_change_nothing(store: SubscriberStore, tmp_path: Path) -> None:
    config = parse_config(BASE, tmp_path / "config.yaml")
    rhythms = Rhythms(store)
    with pytest.raises(RhythmError, match="frequency 'hourly': expected one of weekly, daily"):
        rhythms.set("ada@example.com", frequency="hourly", timezone="UTC", now=NOW, config=config)
    with pytest.raises(RhythmError, match="timezone 'Mars/Olympus'"):
        rhythms.set(
            "ada@example.com", frequency="daily", timezone="Mars/Olympus", now=NOW, config=config
        )
    with pytest.raises(StoreError) as raised:
        rhythms.set("nobody@example.com", frequency="daily", now=NOW, config=config)
    assert str(raised.value) == "nobody@example.com: no such subscriber"
    assert rhythms.all() == {}


def test_a_daily_newsletter_and_ad_hoc_ranges_go_to_every_reader(tmp_path: Path) -> None:
    daily = parse_config({**BASE, "period": "day"}, tmp_path / "config.yaml")
    weekly_reader = Rhythm("weekly")
    assert receives_issue(weekly_reader, day_window(date(2026, 11, 3), daily.tz), daily)
    config = parse_config(BASE, tmp_path / "config.yaml")
    ranged = range_window(date(2026, 11, 1), date(2026, 11, 20), config.tz)
    assert receives_issue(Rhythm("daily"), ranged, config)
    assert receives_issue(weekly_reader, ranged, config)


def test_subscribers_set_prints_where_the_switch_lands(sample_site: Path) -> None:
    config = str(sample_site / "config.yaml")
    runner = CliRunner()
    added = runner.invoke(main, ["--config", config, "subscribers", "add", "ada@example.com"])
    assert added.exit_code == 0, added.output
    today = datetime.now(timezone.utc)
    loaded = load_config(sample_site / "config.yaml")
    since = next_week_start(today, loaded)
    last, first = landing(since, "daily", loaded)
    result = runner.invoke(
        main,
        ["--config", config, "subscribers", "set", "ada@example.com", "--frequency", "daily",
         "--timezone", "Pacific/Auckland"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"ada@example.com: daily, Pacific/Auckland; the switch lands on {first} "
        f"(the last weekly issue is {last})\n"
    )
    bad = runner.invoke(
        main, ["--config", config, "subscribers", "set", "ada@example.com", "--timezone", "Mars"]
    )
    assert bad.exit_code == 7
    assert bad.output == (
        "error: timezone 'Mars': not an IANA timezone; use a name such as Europe/Berlin or UTC\n"
    )
    shown = runner.invoke(
        main, ["--config", config, "subscribers", "set", "ada@example.com", "--timezone",
               "Pacific/Auckland", "--json"],
    )  # fmt: skip
    assert json.loads(shown.output) == {
        "email": "ada@example.com",
        "frequency": "daily",
        "timezone": "Pacific/Auckland",
        "since": since.isoformat(),
        "last_issue_before": None,
        "first_issue": None,
        "changed": False,
    }


def _outboxed(config: Config, issue_id: str) -> list[str]:
    folder = config.path(config.out_dir) / issue_id / "outbox"
    return sorted(str(message_from_bytes(path.read_bytes())["To"]) for path in folder.glob("*.eml"))


def test_the_weekly_issue_goes_to_weekly_readers_and_the_daily_one_to_daily_readers(
    sample_site: Path,
) -> None:
    config = load_config(sample_site / "config.yaml")
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        for email in ("weekly@example.com", "daily@example.com", "later@example.com"):
            store.add(email, now=NOW)
        rhythms = Rhythms(store)
        rhythms.set("daily@example.com", frequency="daily", now=NOW, config=config)
        # switches to daily in 2026-W47: still weekly for it, daily from 2026-11-23
        rhythms.set(
            "later@example.com", frequency="daily", now=NOW + timedelta(days=14), config=config
        )
    sent_at = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    weekly = send_issue(config, now=sent_at, week="2026-W47")
    assert weekly.sent == 2
    assert _outboxed(config, "2026-W47") == ["later@example.com", "weekly@example.com"]
    daily = send_issue(config, now=sent_at, week="2026-11-18")
    assert daily.sent == 1
    assert _outboxed(config, "2026-11-18") == ["daily@example.com"]
