"""`digest schedule` as a real process: killed mid-send, stopped mid-send, restarted.

The scheduler runs on a rehearsal clock (``digest schedule --now``) on which a week passes in
about 24 seconds, so three Monday occurrences happen within a minute or so. It sends over
SMTP to a real server on loopback (aiosmtpd) that can hold the next message: a sender is
caught mid-send because the server holds it there, not because a poll happened to look at
the right moment, so a fast machine passes as surely as a slow one. Other waits are on a
condition (an event, database rows, process exit) with a generous deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller

from digest.audience.imports.importer import import_file
from digest.audience.subscribers import Categories, SubscriberStore
from digest.config import load_config
from digest.store.clock import parse_utc
from tests.helpers import wait_for

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


def runs(site: Path) -> dict[str, tuple[str, str, int]]:
    """occurrence (ISO, +00:00) -> (issue, outcome, attempts), read while the scheduler
    writes."""
    path = site / "data" / "runs.sqlite"
    if not path.exists():
        return {}
    with sqlite3.connect(path, timeout=30) as db:
        try:
            rows = db.execute("SELECT occurrence, issue_id, outcome, attempts FROM runs").fetchall()
        except sqlite3.OperationalError:
            return {}
    return {parse_utc(row[0]).isoformat(): (row[1], row[2], row[3]) for row in rows}


class Gate:
    """An SMTP server's handler that takes every message until told to hold: then the next
    MAIL FROM waits until it is let go, so nothing of that message is handed over yet."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[str, str]] = []  # (issue, recipient)
        self.hold_at: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()

    def hold_after(self, count: int) -> None:
        """Hold once ``count`` messages in all have been taken; let any held one go."""
        with self.lock:
            previous = self.release
            self.holding, self.release = threading.Event(), threading.Event()
            self.hold_at = count
        previous.set()

    def open(self) -> None:
        with self.lock:
            self.hold_at = None
            self.release.set()

    def of(self, issue: str) -> Counter[str]:
        with self.lock:
            return Counter(to for i, to in self.received if i == issue)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self.lock:
            held = self.hold_at is not None and len(self.received) >= self.hold_at
            holding, release = self.holding, self.release
        if held:
            holding.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait)
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message_id = str(message_from_bytes(envelope.content)["Message-ID"])
        issue = message_id.strip("<>").split(".")[0]
        with self.lock:
            self.received.append((issue, envelope.rcpt_tos[0]))
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def gate() -> Iterator[tuple[Gate, int]]:
    handler = Gate()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        handler.open()
        controller.stop()


@pytest.fixture
def scheduled_site(sample_site: Path, gate: tuple[Gate, int]) -> Path:
    config_file = sample_site / "config.yaml"
    data = yaml.safe_load(config_file.read_text())
    data["schedule"] = {"cron": "0 9 * * MON", "grace": "3d", "skip_empty": True}
    # Leases run on the real clock: a killed sender's rows come free after one real second
    # (about seven rehearsed hours at a week per 24 s), not the default minute (17 days).
    data["send"] = {"batch_size": 20, "lease": "1s"}
    data["provider"] = {"name": "smtp", "host": "127.0.0.1", "port": gate[1], "security": "none"}
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
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    config = str(site / "config.yaml")
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", config, "schedule", "--now", clock],
            cwd=site,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_killed_and_stopped_mid_send_each_issue_reaches_each_subscriber_once(
    scheduled_site: Path, gate: tuple[Gate, int]
) -> None:
    site, (server, _) = scheduled_site, gate
    log = site / "scheduler.log"
    # Rehearsed time starts 12 hours before the first Monday 09:00 (Europe/Berlin).
    # Ten real seconds before the first occurrence: process start-up on a loaded machine
    # must not carry the clock past it (the 2026-11-02 occurrence is then already missed).
    clock = f"2026-11-06T09:00:00+01:00@{time.time():.3f}x{SPEED:.1f}"
    w45, w46, w47 = ISSUES.values()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # 1. SIGKILL while the server holds the 101st message of the first issue.
        server.hold_after(100)
        first = start(site, clock, log)
        processes.append(first)
        assert server.holding.wait(DEADLINE), f"{w45} never reached its 101st message"
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
        assert sum(server.of(w45).values()) == 100
        assert runs(site)["2026-11-09T08:00:00+00:00"][1] == "running"

        # 2. Restarted: it resumes the first issue (300 more); SIGTERM while the server
        # holds the 101st message of the second, then the server lets it go.
        server.hold_after(500)
        second = start(site, clock, log)
        processes.append(second)
        assert server.holding.wait(DEADLINE), f"{w46} never reached its 101st message"
        second.send_signal(signal.SIGTERM)
        server.open()
        assert second.wait(timeout=DEADLINE) == 0
        assert 100 <= sum(server.of(w46).values()) < SUBSCRIBERS
        assert runs(site)["2026-11-16T08:00:00+00:00"][1] == "stopped"
        assert sum(server.of(w45).values()) == SUBSCRIBERS

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
        server.open()
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
    expected = Counter(f"reader{i:04d}@example.com" for i in range(SUBSCRIBERS))
    config = load_config(site / "config.yaml")
    with sqlite3.connect(config.path(config.ledger.database)) as ledger:
        for issue in ISSUES.values():
            assert server.of(issue) == expected, issue  # each reader once, none twice
            states = ledger.execute(
                "SELECT state, COUNT(*) FROM deliveries WHERE issue_id = ? GROUP BY state",
                (issue,),
            ).fetchall()
            assert states == [("sent", SUBSCRIBERS)], issue
    assert output.count("stopping at the next safe point") == 2
    assert "digest schedule: stopped" in output


def test_two_schedulers_started_at_once_only_one_runs(scheduled_site: Path) -> None:
    site = scheduled_site
    # A quiet moment: the last run was long ago (missed), the next is days away.
    clock = f"2026-11-11T12:00:00+01:00@{time.time():.3f}x1"
    env = dict(os.environ)
    config = str(site / "config.yaml")
    command = [sys.executable, "-m", "digest", "--config", config, "schedule", "--now", clock]
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
