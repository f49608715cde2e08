"""`digest schedule` as a real process: killed mid-send, stopped mid-send, restarted.

The scheduler runs on a rehearsal clock (``DIGEST_CLOCK``) on which a week passes in
about 24 seconds, so three Monday occurrences happen within a minute or so. Every wait
is on a condition (files, database rows, process exit) with a generous deadline; nothing
depends on how fast this machine is beyond those deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email import message_from_bytes
from pathlib import Path

import pytest
import yaml

from digest.audience.imports.importer import import_file
from digest.audience.subscribers import Categories, SubscriberStore
from digest.config import load_config

pytestmark = pytest.mark.slow

SUBSCRIBERS = 400
WEEK_SECONDS = 24.0  # real seconds per rehearsed week
SPEED = 7 * 86400 / WEEK_SECONDS
ISSUES = {  # occurrence (UTC) -> the issue it sends
    "2026-11-09T08:00:00+00:00": "2026-W45",
    "2026-11-16T08:00:00+00:00": "2026-W46",
    "2026-11-23T08:00:00+00:00": "2026-W47",
}
DEADLINE = 240.0  # seconds for any one condition, on a loaded machine


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def runs(site: Path) -> dict[str, tuple[str, str, int]]:
    """occurrence -> (issue, outcome, attempts), read while the scheduler writes."""
    path = site / "data" / "runs.sqlite"
    if not path.exists():
        return {}
    with sqlite3.connect(path, timeout=30) as db:
        try:
            rows = db.execute("SELECT occurrence, issue_id, outcome, attempts FROM runs").fetchall()
        except sqlite3.OperationalError:
            return {}
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def outbox(site: Path, issue: str) -> list[Path]:
    folder = site / "out" / issue / "outbox"
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def inodes(files: list[Path]) -> dict[str, int]:
    return {f.name: f.stat().st_ino for f in files}


@pytest.fixture
def scheduled_site(sample_site: Path) -> Path:
    config_file = sample_site / "config.yaml"
    data = yaml.safe_load(config_file.read_text())
    data["schedule"] = {"cron": "0 9 * * MON", "grace": "3d", "skip_empty": True}
    data["send"] = {"batch_size": 20}
    data["provider"] = {"name": "outbox"}
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))
    readers = [
        {"email": f"reader{i:04d}@example.com", "name": f"Reader {i}", "status": "active"}
        for i in range(SUBSCRIBERS)
    ]
    (sample_site / "readers.json").write_text(json.dumps(readers))
    config = load_config(config_file)
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        report = import_file(
            store,
            sample_site / "readers.json",
            Categories.from_config(config),
            now=datetime(2026, 11, 1, tzinfo=timezone.utc),
            erasure_key=None,
        )
    assert report.added == SUBSCRIBERS
    return sample_site


def start(site: Path, clock: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DIGEST_CLOCK": clock, "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(site / "config.yaml"), "schedule"],
            cwd=site,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_killed_and_stopped_mid_send_each_issue_reaches_each_subscriber_once(
    scheduled_site: Path,
) -> None:
    site = scheduled_site
    log = site / "scheduler.log"
    # Rehearsed time starts 12 hours before the first Monday 09:00 (Europe/Berlin).
    # Ten real seconds before the first occurrence: process start-up on a loaded machine
    # must not carry the clock past it (the 2026-11-02 occurrence is then already missed).
    clock = f"2026-11-06T09:00:00+01:00@{time.time():.3f}x{SPEED:.1f}"
    w45, w46, w47 = ISSUES.values()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # 1. SIGKILL in the middle of the first issue.
        first = start(site, clock, log)
        processes.append(first)
        wait_for(lambda: 0 < len(outbox(site, w45)) < SUBSCRIBERS // 2, f"{w45} mid-send")
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
        killed_at = inodes(outbox(site, w45))
        assert 0 < len(killed_at) < SUBSCRIBERS
        assert runs(site)["2026-11-09T08:00:00+00:00"][1] == "running"

        # 2. Restarted: it resumes the first issue; SIGTERM in the middle of the second.
        second = start(site, clock, log)
        processes.append(second)
        wait_for(lambda: 0 < len(outbox(site, w46)) < SUBSCRIBERS // 2, f"{w46} mid-send")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=DEADLINE) == 0
        stopped_at = inodes(outbox(site, w46))
        assert 0 < len(stopped_at) < SUBSCRIBERS
        assert runs(site)["2026-11-16T08:00:00+00:00"][1] == "stopped"
        assert len(outbox(site, w45)) == SUBSCRIBERS

        # 3. Restarted again: it resumes the second and sends the third on time.
        third = start(site, clock, log)
        processes.append(third)
        wait_for(
            lambda: runs(site).get("2026-11-23T08:00:00+00:00", ("", "", 0))[1] == "sent",
            f"{w47} sent",
        )
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=DEADLINE) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)
    output = log.read_text()

    recorded = runs(site)
    assert "2026-11-02T08:00:00+00:00" in recorded, output
    assert recorded["2026-11-02T08:00:00+00:00"][:2] == ("2026-W44", "missed")
    assert {k: v for k, v in recorded.items() if k in ISSUES} == {
        "2026-11-09T08:00:00+00:00": (w45, "sent", 2),
        "2026-11-16T08:00:00+00:00": (w46, "sent", 2),
        "2026-11-23T08:00:00+00:00": (w47, "sent", 1),
    }
    expected = {f"reader{i:04d}@example.com" for i in range(SUBSCRIBERS)}
    config = load_config(site / "config.yaml")
    with sqlite3.connect(config.path(config.ledger.database)) as ledger:
        for issue in ISSUES.values():
            files = outbox(site, issue)
            recipients = [message_from_bytes(f.read_bytes())["To"] for f in files]
            assert len(recipients) == SUBSCRIBERS, issue
            assert {r.split("<")[-1].rstrip(">") for r in recipients} == expected, issue
            states = ledger.execute(
                "SELECT state, COUNT(*) FROM deliveries WHERE issue_id = ? GROUP BY state",
                (issue,),
            ).fetchall()
            assert states == [("sent", SUBSCRIBERS)], issue
    # The messages written before the kill and the stop were never written again.
    assert {n: i for n, i in inodes(outbox(site, w45)).items() if n in killed_at} == killed_at
    assert {n: i for n, i in inodes(outbox(site, w46)).items() if n in stopped_at} == stopped_at
    assert output.count("stopping at the next safe point") == 2
    assert "digest schedule: stopped" in output


def test_two_schedulers_started_at_once_only_one_runs(scheduled_site: Path) -> None:
    site = scheduled_site
    # A quiet moment: the last run was long ago (missed), the next is days away.
    clock = f"2026-11-11T12:00:00+01:00@{time.time():.3f}x1"
    env = {**os.environ, "DIGEST_CLOCK": clock}
    command = [sys.executable, "-m", "digest", "--config", str(site / "config.yaml"), "schedule"]
    both = [
        subprocess.Popen(
            command, cwd=site, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        wait_for(lambda: any(p.poll() is not None for p in both), "one scheduler to give up")
        refused = next(p for p in both if p.poll() is not None)
        running = next(p for p in both if p is not refused)
        _, refused_err = refused.communicate(timeout=60)
        assert refused.returncode == 8
        assert "only one digest schedule may run at a time" in refused_err
        assert f"(pid {running.pid}," in refused_err
        assert running.poll() is None
        running.send_signal(signal.SIGTERM)
        out, _ = running.communicate(timeout=DEADLINE)
        assert running.returncode == 0
        assert out.endswith("digest schedule: stopped\n")
    finally:
        for process in both:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=60)
