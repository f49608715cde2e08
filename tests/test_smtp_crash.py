"""Send to 2,000 subscribers through a real SMTP server on loopback while the sending
process is killed with SIGKILL at seeded random points, restarting it each time.

The server (aiosmtpd, in this test process, so its count survives every kill) records each
message it accepts; messages whose answer was lost to a kill are held ``uncertain``. Kill
points cover every phase: while building and queueing (a random
delay), just after the server received RCPT for message k (before the hand-off), and inside
the server's DATA handler for message k — the server has accepted the message, the sender
has not yet seen the 250 nor committed it, which is the window a naive sender double-sends
in.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import yaml

aiosmtpd = pytest.importorskip("aiosmtpd.controller")

from digest.audience.subscribers import SubscriberStore  # noqa: E402

pytestmark = pytest.mark.slow

N = 2000
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[str, str]] = []  # (recipient, Message-ID)
        self.rcpts = 0
        self.pid: int | None = None
        self.kill_at_data: int | None = None
        self.kill_at_rcpt: int | None = None

    def _kill(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            self.pid = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self.lock:
            self.rcpts += 1
            if self.kill_at_rcpt is not None and self.rcpts >= self.kill_at_rcpt:
                self.kill_at_rcpt = None
                self._kill()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((rcpt, str(message["Message-ID"])))
            # Accepted and counted; now the sender dies before it reads our 250.
            if self.kill_at_data is not None and len(self.received) >= self.kill_at_data:
                self.kill_at_data = None
                self._kill()
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Any:
    from aiosmtpd.controller import Controller

    recorder = Recorder()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


def test_sigkill_at_random_points_still_delivers_exactly_once(
    sample_site: Path, smtp_server: Any
) -> None:
    recorder, port = smtp_server
    config_path = sample_site / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["provider"] = {
        "name": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "timeout": 10,
    }
    config["send"] = {"lease": "2s"}  # a killed sender's rows come free soon
    config_path.write_text(yaml.safe_dump(config))

    rng = random.Random(20261123)
    active: set[str] = set()
    left: set[str] = set()
    with SubscriberStore(sample_site / "data/subscribers.sqlite") as store:
        for i in range(N):
            email = f"reader{i:04d}@example.com"
            cats = rng.choice([(), (), ("Work",), ("Tools", "Research"), ("Ethics",)])
            status = "unsubscribed" if i % 10 == 7 else "active"
            store.add(email, name=f"Reader {i}", categories=cats, status=status, now=NOW)
            (active if status == "active" else left).add(email)

    plan: list[tuple[str, float]] = [
        ("delay", rng.uniform(0.05, 0.4)),
        ("data", rng.randint(1, 300)),
        ("rcpt", rng.randint(50, 400)),
        ("data", rng.randint(100, 500)),
        ("rcpt", rng.randint(100, 500)),
        ("data", rng.randint(100, 500)),
    ]
    env = {**os.environ, "DIGEST_SECRET": "test-server-secret"}
    command = [
        sys.executable,
        "-m",
        "digest",
        "--config",
        str(config_path),
        "send",
        "--week",
        "2026-W47",
        "--json",
    ]
    kills = 0
    for kind, value in plan:
        with recorder.lock:
            base = len(recorder.received)
            base_rcpt = recorder.rcpts
        proc = subprocess.Popen(
            command, cwd=sample_site, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        with recorder.lock:
            recorder.pid = proc.pid
            if kind == "data":
                recorder.kill_at_data = base + int(value)
            elif kind == "rcpt":
                recorder.kill_at_rcpt = base_rcpt + int(value)
        if kind == "delay":
            time.sleep(value)
            with recorder.lock:
                if recorder.pid is not None:
                    recorder._kill()
        proc.communicate(timeout=120)
        with recorder.lock:
            recorder.pid = None
            recorder.kill_at_data = recorder.kill_at_rcpt = None
        if proc.returncode == -signal.SIGKILL:
            kills += 1
    assert kills >= 5

    final = subprocess.run(
        command, cwd=sample_site, env=env, capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stderr

    counted = Counter(rcpt for rcpt, _ in recorder.received)
    duplicates = {k: v for k, v in counted.items() if v > 1}
    assert duplicates == {}
    assert set(counted) == active
    assert not set(counted) & left
    # One distinct Message-ID per subscriber, as the ledger assigned it.
    assert len({mid for _, mid in recorder.received}) == len(active)

    ledger = sqlite3.connect(sample_site / "data/ledger.sqlite")
    rows = dict(ledger.execute("SELECT email, state FROM deliveries WHERE issue_id = '2026-W47'"))
    sent = {email for email, state in rows.items() if state == "sent"}
    uncertain = {email for email, state in rows.items() if state == "uncertain"}
    # A kill inside DATA (the server has the message, the sender never saw its 250) leaves
    # the row handed off: it is `uncertain`, held, never counted as sent and never resent.
    # Every other row is exactly what the server says.
    assert sent | uncertain == active
    assert 1 <= len(uncertain) <= sum(1 for kind, _ in plan if kind == "data")
    assert uncertain <= set(counted)  # they did arrive; holding them sent no second copy
    assert set(rows.values()) <= {"sent", "uncertain", "skipped"}
    again = subprocess.run(command, cwd=sample_site, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert Counter(rcpt for rcpt, _ in recorder.received) == counted  # nothing more sent
    assert "uncertain" in again.stdout
