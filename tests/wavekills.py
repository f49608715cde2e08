"""Local-time waves through SIGKILLs: the run that tests/test_waves_kills.py (CI size) and
bench/bench_waves_kill.py (20,000 readers over 50 zones) share.

Readers are spread evenly over the zones given. Each wave of one weekly issue is sent by
`digest run --workers N --now WAVE+1min`, as cron would call it a minute after the wave's
time; in the waves picked for a kill, the whole process group (the run and its worker
processes) is SIGKILLed once the outbox has taken a random part of that wave (an inotify
watch counts each message renamed into the outbox, so a kill lands on progress, never
after a fixed sleep), and the same command is run again to completion. At the end the
outbox is read against the ledger and the readers: a reader with no message is lost, a
message renamed into place twice (or two files for one reader) is duplicated.
"""

from __future__ import annotations

import email.parser
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path

from digest.audience.rhythm import zone_counts
from digest.audience.subscribers import SubscriberStore
from digest.config import Config
from digest.content.window import week_window
from digest.delivery.ledger import SENT, Ledger
from digest.schedule.local import wave_schedule
from digest.store.database import locate
from tests.helpers import cpu_time, import_readers, wait_for
from tests.test_send_workers import RenameWatch

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
TICK = timedelta(minutes=1)  # how late after its wave each run is called


def reader(i: int) -> str:
    return f"r{i:05d}@example.com"


def add_readers(config: Config, count: int, zones: Sequence[str]) -> None:
    """``count`` active readers, reader i in ``zones[i % len(zones)]``."""
    import_readers(config, (reader(i) for i in range(count)))
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        with store.atomic():
            for i, zone in enumerate(zones):
                store.connection.execute(
                    "UPDATE subscribers SET timezone = ? WHERE CAST(SUBSTR(email, 2, 5) AS "
                    "INTEGER) % ? = ?",
                    (zone, len(zones), i),
                )
        counts = zone_counts(store, config)
    assert sum(counts.values()) == count and len(counts) == len(zones), counts


@dataclass
class Outcome:
    readers: int
    waves: int
    kills: int  # process groups killed mid-wave
    runs: int  # `digest run` processes started, reruns included
    resumed: int  # runs that stopped safely (exit 6) and were run again
    ledger: dict[str, int]  # the rows by state, zero states left out
    files: int  # messages renamed into the outbox, repeats included
    lost: int  # readers without a message in the outbox
    duplicated: int  # messages beyond one per reader
    sent_without_file: int  # ledger rows `sent` whose reader has no message
    seconds: float

    def line(self) -> str:
        return (
            f"{self.readers:,} readers, {self.waves} waves, {self.runs} runs "
            f"({self.resumed} resumed after a safe stop), "
            f"{self.kills} SIGKILLs: {self.files:,} messages in the outbox, lost {self.lost}, "
            f"duplicated {self.duplicated}, ledger {self.ledger}, sent without a file "
            f"{self.sent_without_file}; {self.seconds:.1f} s"
        )


def _moved(watch: RenameWatch) -> int:
    """How many messages the outbox has taken so far (read while the watch counts)."""
    while True:
        try:
            return sum(watch.counts.values())
        except RuntimeError:  # the counter grew while it was summed
            continue


def _recipient(path: Path) -> str:
    with path.open("rb") as handle:
        head = email.parser.BytesHeaderParser().parse(handle)
    return parseaddr(str(head["To"]))[1]


def _kill_mid_wave(
    args: list[str], site: Path, env: dict[str, str], watch: RenameWatch, part: int
) -> int | None:
    """Start ``args`` in a session of its own; once the outbox has taken ``part`` more
    messages, SIGKILL the session (the run and its workers). Returns the messages taken
    before the kill, or None when the run ended first."""
    before = _moved(watch)
    process = subprocess.Popen(
        args, cwd=site, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            lambda: _moved(watch) >= before + part or process.poll() is not None,
            f"{part} messages of a wave in the outbox",
            progress=lambda: (_moved(watch), cpu_time(process.pid)),
            cap=900,
        )
        if process.poll() is not None:
            return None
        os.killpg(process.pid, signal.SIGKILL)
        return _moved(watch) - before
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def send_waves_through_kills(
    site: Path,
    config: Config,
    *,
    readers: int,
    workers: int,
    kills: int,
    seed: int,
    env: dict[str, str] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> Outcome:
    """Send every wave of :data:`WEEK` with `digest run --workers N`, SIGKILLing ``kills``
    of them mid-wave (each run again at once), and read the outcome from the outbox."""
    started = time.perf_counter()
    schedule = wave_schedule(config)
    waves = schedule.waves_of(week_window(WEEK, config.tz))
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        per_zone = zone_counts(store, config)
    rng = random.Random(seed)
    killed_waves = set(rng.sample(range(len(waves)), min(kills, len(waves))))
    outbox = config.path(config.out_dir) / WEEK / "outbox"
    watch = RenameWatch(outbox)
    full_env = {**os.environ, **(env or {})}
    kills_done = runs = resumed = 0
    for n, wave in enumerate(waves):
        args = [sys.executable, "-m", "digest", "run", "--newsletter", "weekly",
                "--workers", str(workers), "--now", (wave + TICK).isoformat()]  # fmt: skip
        size = sum(per_zone[zone] for zone in schedule.zones_at(wave))
        if n in killed_waves:
            runs += 1
            moved = _kill_mid_wave(
                args, site, full_env, watch, rng.randint(1, max(1, size * 3 // 4))
            )
            if moved is not None:
                kills_done += 1
                say(f"wave {n + 1}/{len(waves)} ({size} readers): SIGKILL after {moved} messages")
        # run to completion, as the next cron calls would: a run that stops safely (exit 6:
        # a worker whose lease lapsed on a loaded machine hands its rows over and stops)
        # is resumed by the next call
        for _ in range(5):
            result = subprocess.run(
                args, cwd=site, env=full_env, capture_output=True, text=True, timeout=900
            )
            runs += 1
            if result.returncode != 6:
                break
            resumed += 1
            say(f"wave {n + 1}/{len(waves)}: stopped safely, run again ({result.stderr[-200:]})")
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(args[2:])}: {result.returncode}\n{result.stderr}")
    moved = watch.close()
    recipients = Counter(_recipient(outbox / name) for name in moved)
    with Ledger(locate(config, config.ledger.database)) as ledger:
        counts = {str(getattr(s, "value", s)): n for s, n in ledger.counts(WEEK).items() if n}
        sent_rows = {row.email for chunk in ledger.iter_state(WEEK, [SENT]) for row in chunk}
    expected = {reader(i) for i in range(readers)}
    return Outcome(
        readers=readers,
        waves=len(waves),
        kills=kills_done,
        runs=runs,
        resumed=resumed,
        ledger=counts,
        files=sum(moved.values()),
        lost=len(expected - set(recipients)),
        duplicated=sum(moved.values()) - len(moved) + sum(c - 1 for c in recipients.values()),
        sent_without_file=len(sent_rows - set(recipients)),
        seconds=time.perf_counter() - started,
    )
