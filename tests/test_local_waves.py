"""schedule.local_time: four weeks of the sample site rehearsed with a stepping clock;
each reader gets each weekly issue once, at 09:00 on their own clock, across the
October and November DST changes (the ledger's sent times prove it)."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from digest.audience.rhythm import Rhythms
from digest.audience.subscribers import SubscriberStore
from digest.delivery.ledger import SENT, Ledger
from digest.schedule.scheduler import Policy, run_now
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
TICK = timedelta(minutes=1)  # how late each tick of the stepping clock comes


class SteppingClock:
    def __init__(self, start: datetime) -> None:
        self.moment = start

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.moment += timedelta(seconds=seconds)


def test_four_weeks_of_waves_reach_every_zone_at_nine_local(sample_site: Path) -> None:
    config = edit_config(
        sample_site,
        schedule={"cron": "0 9 * * MON", "grace": "6h", "local_time": "09:00"},
    )
    joined = datetime(2026, 10, 20, tzinfo=timezone.utc)
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        for email, zone in ZONES.items():
            store.add(email, now=joined)
            Rhythms(store).set(email, timezone=zone, now=joined, config=config)
    clock = SteppingClock(datetime(2026, 10, 25, 12, 0, tzinfo=timezone.utc))
    end = datetime(2026, 11, 18, tzinfo=timezone.utc)
    runs = 0
    while True:
        policy = Policy.from_config(config)
        clock.moment = policy.schedule.next_after(clock.moment) + TICK
        if clock.moment > end:
            break
        report = run_now(config, clock, stop=threading.Event())
        assert report.action == "ran", report.message
        runs += 1
    issues = ("2026-W43", "2026-W44", "2026-W45", "2026-W46")
    got: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    with Ledger(locate(config, config.ledger.database)) as ledger:
        for issue in issues:
            for chunk in ledger.iter_state(issue, [SENT]):
                for row in chunk:
                    assert row.sent_at is not None
                    got[row.email].append((issue, parse_utc(row.sent_at)))
    for issue in issues:  # one message per reader and issue reached the outbox
        outbox = config.path(config.out_dir) / issue / "outbox"
        assert len(list(outbox.glob("*.eml"))) == len(ZONES), issue
    assert runs == 5 * len(issues)  # one wave per zone and issue: no zone shares an offset
    for email, zone in ZONES.items():
        assert [issue for issue, _ in got[email]] == list(issues), email
        for issue, sent in got[email]:
            local = sent.astimezone(ZoneInfo(zone))
            assert timedelta(0) <= local - local.replace(hour=9, minute=0) <= TICK, (
                email,
                issue,
                local,
            )
    # across the changes: Berlin on 2026-10-25, New York and Los Angeles on 2026-11-01,
    # Auckland in September: the UTC hour of the send moves, the local hour does not
    berlin = [sent.astimezone(timezone.utc).hour for _, sent in got["berlin@example.com"]]
    assert berlin == [8, 8, 8, 8]  # W43 goes on 2026-10-26, already CET
    new_york = [sent.astimezone(timezone.utc).hour for _, sent in got["newyork@example.com"]]
    assert new_york == [13, 14, 14, 14]
