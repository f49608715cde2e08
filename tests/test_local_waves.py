"""schedule.local_time: four weeks of the sample site rehearsed with a stepping clock;
each reader gets each issue of their cadence once, at 09:00 on their own clock, across
the October and November DST changes (the ledger's sent times prove it)."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from digest.audience.rhythm import Rhythms
from digest.audience.subscribers import SubscriberStore
from digest.cli import main
from digest.config import Config
from digest.delivery.ledger import SENT, Ledger
from digest.schedule.local import wave_schedule
from digest.schedule.scheduler import Policy, run_newsletters
from digest.store.clock import parse_utc
from digest.store.database import locate
from tests.helpers import edit_config

ZONES = {
    "tokyo@example.com": "Asia/Tokyo",
    "berlin@example.com": "Europe/Berlin",
    "newyork@example.com": "America/New_York",
    "la@example.com": "America/Los_Angeles",
    "auckland@example.com": "Pacific/Auckland",
}
# the days from 2026-10-24 to 2026-11-16 with a published post in the sample site (the
# one dated 2026-11-06 is a draft); each is due in New York and Auckland before the end
DAYS_WITH_POSTS = [
    "2026-10-24", "2026-10-27", "2026-10-28", "2026-10-29", "2026-10-31", "2026-11-02",
    "2026-11-05", "2026-11-07", "2026-11-09", "2026-11-11", "2026-11-12", "2026-11-13",
    "2026-11-15", "2026-11-16",
]  # fmt: skip
TICK = timedelta(minutes=1)  # how late each tick of the stepping clock comes


class SteppingClock:
    def __init__(self, start: datetime) -> None:
        self.moment = start

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.moment += timedelta(seconds=seconds)


DAILY = ("newyork@example.com", "auckland@example.com")


def _next_wake(config: Config, moment: datetime) -> datetime:
    weekly = Policy.from_config(config).schedule.next_after(moment)
    daily = wave_schedule(config, daily=True).next_after(moment)
    return min(weekly, daily) + TICK


@pytest.mark.slow  # about 50 s here: four weeks of waves, each a recorded run and send
def test_four_weeks_of_waves_reach_every_zone_at_nine_local(sample_site: Path) -> None:
    config = edit_config(
        sample_site,
        schedule={"cron": "0 9 * * MON", "grace": "6h", "local_time": "09:00"},
    )
    joined = datetime(2026, 10, 14, tzinfo=timezone.utc)  # daily from 2026-10-19 on
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        for email, zone in ZONES.items():
            store.add(email, now=joined)
            frequency = "daily" if email in DAILY else None
            Rhythms(store).set(email, timezone=zone, frequency=frequency, now=joined, config=config)
    clock = SteppingClock(datetime(2026, 10, 25, 12, 0, tzinfo=timezone.utc))
    end = datetime(2026, 11, 18, tzinfo=timezone.utc)
    while True:
        clock.moment = _next_wake(config, clock.moment)
        if clock.moment > end:
            break
        results = run_newsletters(config, ["weekly"], clock, stop=threading.Event())
        assert [r.error for r in results] == [None, None]
        assert any(r.report is not None and r.report.action == "ran" for r in results)
    got: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    with Ledger(locate(config, config.ledger.database)) as ledger:
        for issue in ledger.issues():
            for chunk in ledger.iter_state(issue, [SENT]):
                for row in chunk:
                    assert row.sent_at is not None
                    got[row.email].append((issue, parse_utc(row.sent_at)))
    weeks = ["2026-W43", "2026-W44", "2026-W45", "2026-W46"]
    days = [issue for issue, _ in sorted(got["newyork@example.com"])]
    assert days == DAYS_WITH_POSTS, days
    for email, zone in ZONES.items():
        issues = sorted(got[email])
        assert [i for i, _ in issues] == (DAYS_WITH_POSTS if email in DAILY else weeks), email
        for issue, sent in issues:
            local = sent.astimezone(ZoneInfo(zone))
            assert timedelta(0) <= local - local.replace(hour=9, minute=0) <= TICK, (
                email,
                issue,
                local,
            )
    for issue in weeks + DAYS_WITH_POSTS:  # one message per reader and issue at the outbox
        outbox = config.path(config.out_dir) / issue / "outbox"
        readers = len(DAILY) if issue in DAYS_WITH_POSTS else len(ZONES) - len(DAILY)
        assert len(list(outbox.glob("*.eml"))) == readers, issue
    # across the changes (Berlin on 2026-10-25, New York on 2026-11-01, Auckland in
    # September) the UTC hour of the send moves, the local hour does not
    berlin = [sent.astimezone(timezone.utc).hour for _, sent in sorted(got["berlin@example.com"])]
    assert berlin == [8, 8, 8, 8]  # W43 goes on 2026-10-26, already CET
    new_york = {sent.astimezone(timezone.utc).hour for _, sent in got["newyork@example.com"]}
    assert new_york == {13, 14}


def test_schedule_next_lists_the_waves_with_their_zones(sample_site: Path) -> None:
    config = edit_config(sample_site, schedule={"cron": "0 9 * * MON", "local_time": "09:00"})
    now = datetime(2026, 10, 20, tzinfo=timezone.utc)
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        for email in ("tokyo@example.com", "seoul@example.com", "la@example.com"):
            store.add(email, now=now)
        zones = {"tokyo": "Asia/Tokyo", "seoul": "Asia/Seoul", "la": "America/Los_Angeles"}
        for name, zone in zones.items():
            Rhythms(store).set(f"{name}@example.com", timezone=zone, now=now, config=config)
    result = CliRunner().invoke(
        main,
        ["--config", str(sample_site / "config.yaml"), "schedule", "next", "-n", "3",
         "--now", "2026-10-30T12:00:00+01:00"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == (
        "'09:00 local in 3 zone(s)' in Europe/Berlin:\n"
        "  Mon 2026-11-02 01:00:00 CET   2026-11-02 00:00:00 UTC   sends 2026-W44\n"
        "      Asia/Seoul: Mon 2026-11-02 09:00 KST\n"
        "      Asia/Tokyo: Mon 2026-11-02 09:00 JST\n"
        "  Mon 2026-11-02 18:00:00 CET   2026-11-02 17:00:00 UTC   sends 2026-W44\n"
        "      America/Los_Angeles: Mon 2026-11-02 09:00 PST\n"
        "  Mon 2026-11-09 01:00:00 CET   2026-11-09 00:00:00 UTC   sends 2026-W45\n"
        "      Asia/Seoul: Mon 2026-11-09 09:00 KST\n"
        "      Asia/Tokyo: Mon 2026-11-09 09:00 JST\n"
    )


def test_status_shows_the_waves_sent_and_to_come(sample_site: Path) -> None:
    config = edit_config(sample_site, schedule={"cron": "0 9 * * MON", "local_time": "09:00"})
    joined = datetime(2026, 10, 20, tzinfo=timezone.utc)
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        for name, zone in (("tokyo", "Asia/Tokyo"), ("la", "America/Los_Angeles")):
            store.add(f"{name}@example.com", now=joined)
            Rhythms(store).set(f"{name}@example.com", timezone=zone, now=joined, config=config)
    # the Tokyo wave of 2026-W44 (Monday 09:00 JST), a minute late
    clock = SteppingClock(datetime(2026, 11, 2, 0, 1, tzinfo=timezone.utc))
    report = run_newsletters(config, ["weekly"], clock, stop=threading.Event())[0].report
    assert report is not None and report.run is not None
    assert (report.action, report.run.outcome, report.run.sent) == ("ran", "sent", 1)
    result = CliRunner().invoke(
        main, ["--config", str(sample_site / "config.yaml"), "status", "--week", "2026-W44"]
    )
    assert result.exit_code == 0, result.output
    # read after the rehearsed Monday: the Los Angeles wave's time has come, unsent
    assert result.output.endswith(
        "  waves (schedule.local_time):\n"
        "    2026-11-02 00:00 UTC  1 of 1 sent  sent    Asia/Tokyo\n"
        "    2026-11-02 17:00 UTC  0 of 1 sent  due     America/Los_Angeles\n"
    )
    assert "joined since" not in result.output


def test_a_thin_day_is_skipped_and_recorded_with_its_reason(sample_site: Path) -> None:
    config = edit_config(
        sample_site,
        schedule={"cron": "0 9 * * MON", "local_time": "09:00"},
        limits={"min_posts": 1, "min_posts_daily": 2},
    )
    joined = datetime(2026, 10, 14, tzinfo=timezone.utc)
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        store.add("ada@example.com", now=joined)
        Rhythms(store).set("ada@example.com", frequency="daily", now=joined, config=config)
    # Berlin's wave for 2026-10-27, which has one post
    clock = SteppingClock(datetime(2026, 10, 28, 8, 1, tzinfo=timezone.utc))
    results = run_newsletters(config, ["weekly"], clock, stop=threading.Event())
    daily = results[1]
    assert daily.newsletter == "weekly daily" and daily.report is not None
    run = daily.report.run
    assert run is not None and (run.issue_id, run.outcome, run.sent) == (
        "2026-10-27",
        "skipped-empty",
        0,
    )
    assert run.detail == (
        "2026-10-27 has 1 post, under limits.min_posts_daily (2); not sent "
        "(`digest send --force` sends it)"
    )
    with Ledger(locate(config, config.ledger.database)) as ledger:
        assert "2026-10-27" not in ledger.issues()
