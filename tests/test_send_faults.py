"""The send loop under provider faults, against a real SMTP server on loopback (aiosmtpd):
a refusal for now is retried within ``send.retry_for`` and never becomes a permanent
failure; an issue is complete only on evidence; a refusal storm with batches in flight
leaves no claimed batch behind; a sender frozen past its lease stops without sending; an
unsubscribe lands within the batch in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("aiosmtpd.controller")
from aiosmtpd.controller import Controller

from digest.audience.subscribers import SubscriberStore, unsubscribe
from digest.config import Config, load_config
from digest.delivery.ledger import PENDING, SENT, SKIPPED, Ledger
from digest.delivery.providers.base import Batch, Event
from digest.delivery.providers.outbox import OutboxProvider
from digest.delivery.send import send_issue
from digest.delivery.send_report import issue_status
from digest.errors import ProviderError, SendError
from digest.store.database import locate

from .conftest import run_digest

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WEEK = "2026-W47"


class Sink:
    """An SMTP server that counts every message it accepts, and can refuse, pace, or hold
    one RCPT until told to go on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, float]] = []  # (recipient, monotonic time)
        self.refuse_rcpt: str | None = None
        self.delay = 0.0
        self.hold_rcpt: str | None = None  # this address's RCPT waits for `release`
        self.holding = threading.Event()
        self.release = threading.Event()
        self.port = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse_rcpt is not None:
            return self.refuse_rcpt
        if address == self.hold_rcpt:
            self.hold_rcpt = None
            self.holding.set()
            while not self.release.is_set():  # other connections go on meanwhile
                await asyncio.sleep(0.02)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.accepted.append((rcpt, time.monotonic()))
        return "250 2.0.0 Ok: queued as Q1"

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(r for r, _ in self.accepted)


@pytest.fixture
def sink() -> Iterator[Sink]:
    recorder = Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        recorder.port = probe.getsockname()[1]
    controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port)
    controller.start()
    try:
        yield recorder
    finally:
        recorder.release.set()
        controller.stop()


def _smtp_site(site: Path, port: int, **send: Any) -> Config:
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["provider"] = {
        "name": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "timeout": 30,
    }
    data["send"] = send
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def _add(config: Config, n: int) -> list[str]:
    emails = [f"reader{i:03d}@example.com" for i in range(n)]
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        for email in emails:
            store.add(email, name=email.split("@")[0], categories=(), now=NOW)
    return emails


def _states(config: Config) -> dict[str, int]:
    with Ledger(locate(config, config.ledger.database)) as ledger:
        return {k: v for k, v in ledger.counts(WEEK).items() if v}


# --------------------------------------------------------------------------- refusals for now


@pytest.mark.integration
def test_smtp_451_longer_than_retry_for_stops_with_exit_6_and_the_rerun_delivers(
    sample_site: Path, sink: Sink
) -> None:
    sink.refuse_rcpt = "451 4.3.0 Try again later"
    config = _smtp_site(sample_site, sink.port, retry_for="1m")
    emails = _add(config, 12)
    moments = [datetime.now(timezone.utc)]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the run's clock moves by what it waits
        sleeps.append(seconds)
        moments.append(moments[-1] + timedelta(seconds=seconds))

    with pytest.raises(SendError) as stopped:
        send_issue(config, now=NOW, week=WEEK, sleep=sleep, clock=lambda: moments[-1])
    assert str(stopped.value) == (
        "the provider kept refusing for now (SMTP RCPT TO: 451 4.3.0 Try again later) over 6 "
        "tries in 60s; 12 message(s) stay pending: run the same command later to send them"
    )
    assert sleeps == [2.0, 4.0, 8.0, 16.0, 30.0]  # doubling, cut to what retry_for leaves
    assert _states(config) == {PENDING: 12}  # never failed-permanent
    status = issue_status(config, WEEK)
    assert (status["complete"], status["completed_at"]) == (False, None)
    assert not sink.accepted

    sink.refuse_rcpt = None  # the outage is over: the next run sends every one of them
    report = send_issue(config, now=NOW, week=WEEK)
    assert (report.sent, report.complete, report.exit_code) == (12, True, 0)
    assert sink.counts() == Counter(dict.fromkeys(emails, 1))
    assert issue_status(config, WEEK)["complete"] is True


@pytest.mark.integration
def test_an_issue_marked_complete_with_rows_unfinished_is_sent_not_refused(
    sample_site: Path, sink: Sink
) -> None:
    config = _smtp_site(sample_site, sink.port)
    emails = _add(config, 4)
    with Ledger(locate(config, config.ledger.database)) as ledger:
        # as an older digest left it: rows given up on, the issue marked complete
        ledger.start_run(WEEK, subject="s", provider="smtp", now=NOW)
        ledger.enqueue(WEEK, [(i + 1, e) for i, e in enumerate(emails)], now=NOW)
        ledger.mark_completed(WEEK, NOW)
    status = issue_status(config, WEEK)
    assert (status["complete"], status["counts"][PENDING]) == (False, 4)
    shown = run_digest("status", "--week", WEEK, cwd=sample_site)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{WEEK}: not complete (1 run)\n")
    report = send_issue(config, now=NOW, week=WEEK)
    assert (report.sent, report.complete) == (4, True)
    assert sink.counts() == Counter(dict.fromkeys(emails, 1))


# --------------------------------------------------------------------------- a refusal storm


class _Storm(OutboxProvider):
    """Two batches in flight; every request after the first two is refused (401)."""

    default_concurrency = 2
    mixes_variants = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.lock = threading.Lock()

    def send(self, batch: Batch) -> Iterator[Event]:
        with self.lock:
            self.calls += 1
            call = self.calls
        if call > 2:
            raise ProviderError("emulated", "invalid API key", status=401)
        yield from super().send(batch)


def test_a_refusal_storm_with_batches_in_flight_leaves_no_claimed_batch_behind(
    sample_site: Path,
) -> None:
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["send"] = {"batch_size": 3}
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    emails = _add(config, 30)
    with pytest.raises(ProviderError, match="emulated 401: invalid API key"):
        send_issue(config, now=NOW, week=WEEK, provider=_Storm.from_config(config))
    # the two accepted batches are sent; every other row, claimed or not, is pending
    assert _states(config) == {SENT: 6, PENDING: 24}
    report = send_issue(config, now=NOW, week=WEEK)
    assert (report.sent, report.complete) == (24, True)
    outbox = config.path(config.out_dir) / WEEK / "outbox"
    assert len(list(outbox.glob("*.eml"))) == len(emails)


# --------------------------------------------------------------------------- fencing


def _digest(site: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DIGEST_SECRET": "test-server-secret"}
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(site / "config.yaml"), *args],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.integration
def test_a_sender_frozen_past_its_lease_stops_without_sending(
    sample_site: Path, sink: Sink
) -> None:
    config = _smtp_site(sample_site, sink.port, lease="2s")
    emails = _add(config, 12)
    sink.hold_rcpt = emails[4]  # the frozen sender waits here, before DATA
    frozen = _digest(sample_site, "send", "--week", WEEK)
    try:
        deadline = time.monotonic() + 120
        while not sink.holding.is_set():
            assert frozen.poll() is None, frozen.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        frozen.send_signal(signal.SIGSTOP)
        # another sender waits for the frozen one's lease to run out, settles its row (never
        # handed off: pending) and sends everything
        other = _digest(sample_site, "send", "--week", WEEK)
        _, err = other.communicate(timeout=120)
        assert other.returncode == 0, err
        assert sink.counts() == Counter(dict.fromkeys(emails, 1))
        sink.release.set()  # the held RCPT is answered; the frozen sender goes on
    finally:
        frozen.send_signal(signal.SIGCONT)
    _, err = frozen.communicate(timeout=120)
    assert frozen.returncode == 6, err
    assert "passed to another sender; stopped before sending them" in err
    assert sink.counts() == Counter(dict.fromkeys(emails, 1))  # no second copy
    assert _states(config) == {SENT: 12}


# --------------------------------------------------------------------------- unsubscribes


@pytest.mark.integration
def test_an_unsubscribe_during_a_paced_send_lands_within_the_message_in_flight(
    sample_site: Path, sink: Sink
) -> None:
    sink.delay = 0.05  # about 20 messages a second
    config = _smtp_site(sample_site, sink.port)
    emails = _add(config, 160)
    report: list[Any] = []
    sender = threading.Thread(
        target=lambda: report.append(send_issue(config, now=NOW, week=WEEK)), daemon=True
    )
    sender.start()
    left: dict[str, float] = {}  # address -> when its unsubscribe returned
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        deadline = time.monotonic() + 300
        while len(left) < 12 and sender.is_alive():
            assert time.monotonic() < deadline
            done = len(sink.accepted)
            if done < 10 + 10 * len(left):
                time.sleep(0.01)
                continue
            target = emails[min(done + 4, len(emails) - 1)]  # about to be sent
            if target not in left:
                unsubscribe(store, target, server=None, now=NOW)
                left[target] = time.monotonic()
    sender.join(timeout=300)
    assert report and report[0].complete
    assert len(left) == 12
    with sink.lock:
        accepted = list(sink.accepted)
    lags = []
    for address, returned in left.items():
        mailed = [t for r, t in accepted if r == address]
        assert len(mailed) <= 1
        if mailed and mailed[0] > returned:
            # mailed after their unsubscribe returned: only as the message already in
            # flight, so no other message was accepted in between
            between = [r for r, t in accepted if returned < t < mailed[0]]
            assert between == [], (address, between)
            lags.append(mailed[0] - returned)
    skipped = sum(1 for address in left if not any(r == address for r, _ in accepted))
    assert skipped >= len(left) // 2  # most left before their turn: the path was taken
    assert _states(config).get(SKIPPED) == skipped
    print(f"unsubscribe lag at 20 msg/s: worst {max(lags, default=0.0):.3f}s over {len(left)}")
