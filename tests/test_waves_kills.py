"""Local-time waves through SIGKILLs on PostgreSQL: `digest run` processes step through the
waves of one issue for readers spread over 50 zones; ten are killed mid-wave and run again.
Every active reader gets the issue exactly once (an inotify watch counts each file renamed
into the outbox). `digest run` holds the run lock, so these runs are one at a time;
DIGEST_WAVE_KILL_N sets the readers (2,000 here; 20,000 by hand)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from digest.audience.subscribers import SubscriberStore
from digest.content.window import week_window
from digest.delivery.ledger import SENT, Ledger
from digest.schedule.local import wave_schedule
from digest.store.database import locate
from tests.helpers import edit_config, recipient_of
from tests.test_send_workers import RenameWatch, _bulk_add

from .conftest import run_digest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

WEEK = "2026-W47"
ZONES = (
    "Pacific/Kiritimati", "Pacific/Tongatapu", "Pacific/Auckland", "Pacific/Chatham",
    "Australia/Sydney", "Australia/Adelaide", "Australia/Brisbane", "Australia/Darwin",
    "Australia/Perth", "Asia/Tokyo", "Asia/Seoul", "Asia/Shanghai", "Asia/Singapore",
    "Asia/Jakarta", "Asia/Bangkok", "Asia/Yangon", "Asia/Dhaka", "Asia/Kathmandu",
    "Asia/Kolkata", "Asia/Karachi", "Asia/Tashkent", "Asia/Kabul", "Asia/Dubai",
    "Asia/Tehran", "Europe/Moscow", "Europe/Istanbul", "Africa/Nairobi", "Europe/Athens",
    "Africa/Cairo", "Europe/Berlin", "Europe/Paris", "Africa/Lagos", "Europe/London",
    "Africa/Abidjan", "Atlantic/Azores", "Atlantic/Cape_Verde", "America/Noronha",
    "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "America/St_Johns",
    "America/Halifax", "America/Caracas", "America/New_York", "America/Chicago",
    "America/Denver", "America/Phoenix", "America/Los_Angeles", "America/Anchorage",
    "Pacific/Honolulu", "Pacific/Pago_Pago",
)  # fmt: skip
N = int(os.environ.get("DIGEST_WAVE_KILL_N", "2000"))


@pytest.mark.parametrize("site_backend", ["postgresql"], indirect=True)
def test_waves_through_sigkills_send_every_reader_once(sample_site: Path) -> None:
    assert len(set(ZONES)) == 50
    config = edit_config(
        sample_site,
        schedule={"cron": "0 9 * * MON", "grace": "6h", "local_time": "09:00"},
        send={"batch_size": 50, "lease": "2s"},
    )
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        _bulk_add(store, N)
        with store.atomic():
            for i, zone in enumerate(ZONES):
                store.connection.execute(
                    "UPDATE subscribers SET timezone = ? WHERE id % 50 = ?", (zone, i)
                )
    window = week_window(WEEK, config.tz)
    waves = wave_schedule(config).waves_of(window)
    assert 20 <= len(waves) <= 50
    watch = RenameWatch(config.path(config.out_dir) / WEEK / "outbox")
    rng = random.Random(26)
    kills = 0
    # the first waves each killed once and run again; then the last wave, whose run
    # queues every reader due by then (the waves in between, as after an outage)
    for wave in [*waves[:10], waves[-1]]:
        moment = (wave + timedelta(minutes=1)).isoformat()
        args = [sys.executable, "-m", "digest", "run", "--newsletter", "weekly", "--now", moment]
        if wave != waves[-1]:
            process = subprocess.Popen(
                args, cwd=sample_site, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.5, 3.0))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait()
        rerun = run_digest("run", "--newsletter", "weekly", "--now", moment, cwd=sample_site)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    renamed = watch.close()
    # how many runs were still going when their kill came depends on the machine's speed:
    # at least one must have been, or nothing here was killed
    print(f"{kills} of 10 runs killed mid-run")
    assert kills >= 1, "every run had finished before its kill came"
    with Ledger(locate(config, config.ledger.database)) as ledger:
        assert {k: v for k, v in ledger.counts(WEEK).items() if v} == {SENT: N}
    assert {name: c for name, c in renamed.items() if c != 1} == {}
    outbox = config.path(config.out_dir) / WEEK / "outbox"
    assert {recipient_of(outbox / name) for name in renamed} == {
        f"r{i:05d}@example.com" for i in range(N)
    }
