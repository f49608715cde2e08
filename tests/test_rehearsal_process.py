"""The operator's rehearsal, as processes: four weeks of the sample site sent by the
`digest run --now MOMENT` command itself, called a minute after each wave as cron would,
each call naming the next wave in its --json report (docs/schedule.md, "Rehearsing a
schedule"). Five readers in five zones, two of them daily: the Date header of every
message in the outbox shows each reader got each issue of their cadence once, at 09:00
on their own clock, across the October (Europe) and November (US) DST changes."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.audience.rhythm import Rhythms
from digest.audience.subscribers import SubscriberStore
from digest.store.database import locate
from tests.helpers import edit_config
from tests.test_local_waves import DAILY, DAYS_WITH_POSTS, ZONES

from .conftest import run_digest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LATE = timedelta(minutes=1)  # each call comes this long after the wave it sends
TICK = timedelta(minutes=5)  # the scheduler's tick: a message's Date is within it of 09:00
WEEKS = ["2026-W43", "2026-W44", "2026-W45", "2026-W46"]


def _outbox(site: Path) -> dict[str, list[tuple[str, datetime]]]:
    """reader -> [(issue, the Date header)], from every message in every issue's outbox."""
    got: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for path in sorted((site / "out").glob("*/outbox/*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        reader = parseaddr(str(message["To"]))[1]
        got[reader].append((path.parent.parent.name, parsedate_to_datetime(message["Date"])))
    return got


def test_four_weeks_rehearsed_with_digest_run_reach_every_zone_at_nine_local(
    sample_site: Path,
) -> None:
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
    # the operator's first call finds nothing of these weeks due (older waves are past
    # the grace, and recorded as missed); every later call is a minute after the wave
    # the call before named as next
    moment = datetime(2026, 10, 25, 12, 0, tzinfo=timezone.utc)
    end = datetime(2026, 11, 18, tzinfo=timezone.utc)
    calls: list[tuple[datetime, list[str]]] = []
    while moment <= end:
        args = ("run", "--newsletter", "weekly", "--json", "--now", moment.isoformat())
        result = run_digest(*args, cwd=sample_site)
        assert result.returncode == 0, (moment, result.stdout, result.stderr[-2000:])
        reports = json.loads(result.stdout)["newsletters"]
        assert set(reports) == {"weekly", "weekly daily"}, reports
        calls.append((moment, [r["action"] for r in reports.values()]))
        moment = min(datetime.fromisoformat(r["next_occurrence"]) for r in reports.values())
        moment += LATE
    assert all("ran" in actions for _, actions in calls[1:]), calls
    got = _outbox(sample_site)
    assert set(got) == set(ZONES)
    for email, zone in ZONES.items():
        issues = sorted(got[email])
        # each issue of the reader's cadence, once (a repeat would show twice)
        assert [i for i, _ in issues] == (DAYS_WITH_POSTS if email in DAILY else WEEKS), email
        for issue, sent in issues:
            local = sent.astimezone(ZoneInfo(zone))
            nine = local.replace(hour=9, minute=0, second=0, microsecond=0)
            assert timedelta(0) <= local - nine <= TICK, (email, issue, local.isoformat())

    def utc_hours(email: str) -> list[int]:
        return [sent.astimezone(timezone.utc).hour for _, sent in sorted(got[email])]

    # the UTC hour moves with each zone's DST change, the local hour does not: Berlin
    # changed on 2026-10-25, before W43 went out on 2026-10-26; Los Angeles and New York
    # on 2026-11-01; Auckland in September; Tokyo has no DST
    assert utc_hours("tokyo@example.com") == [0, 0, 0, 0]
    assert utc_hours("berlin@example.com") == [8, 8, 8, 8]
    assert utc_hours("la@example.com") == [16, 17, 17, 17]
    new_york = dict(zip(DAYS_WITH_POSTS, utc_hours("newyork@example.com"), strict=True))
    assert {day: hour for day, hour in new_york.items() if hour != 14} == {
        "2026-10-24": 13, "2026-10-27": 13, "2026-10-28": 13, "2026-10-29": 13
    }  # fmt: skip
    assert set(utc_hours("auckland@example.com")) == {20}
