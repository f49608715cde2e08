"""Several senders on one issue: `digest send --workers N`, separate `digest send` processes,
SIGKILLed at random and started again; every active subscriber gets the issue exactly once.

Evidence of "once" is taken where a duplicate would show: the provider emulator counts each
accepted message per recipient, and for the outbox an inotify watch counts every file
renamed into the outbox folder (a second send of one message would rename onto its name
again, which no listing of the folder could reveal).
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import json
import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest.audience.subscribers import SubscriberStore
from digest.cli import main
from digest.config import Config
from digest.delivery.ledger import SENT, UNCERTAIN, Ledger
from digest.store.database import locate
from tests.helpers import edit_config, recipient_of

from .conftest import run_digest
from .emulators.providers import run_emulator

pytestmark = pytest.mark.backends

WEEK = "2026-W47"
KEY = "emu-key-workers"


def _site(site: Path, n: int, **extra: Any) -> Config:
    config = edit_config(site, **extra)
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        _bulk_add(store, n)
        store.set_status("r00003@example.com", "unsubscribed", cause="cli_unsubscribe", now=_now())
    return config


def _bulk_add(store: SubscriberStore, n: int) -> None:
    lines = ["email,name,status"] + [f"r{i:05d}@example.com,Reader {i},active" for i in range(n)]
    csv_path = Path(os.environ["HOME"]) / "many.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    from digest.audience.imports.importer import import_file
    from digest.audience.subscribers import Categories

    import_file(store, csv_path, Categories(), now=_now(), erasure_key=None)


def _now() -> Any:
    from datetime import datetime, timezone

    return datetime(2026, 11, 23, 12, tzinfo=timezone.utc)


def _active(n: int) -> set[str]:
    return {f"r{i:05d}@example.com" for i in range(n)} - {"r00003@example.com"}


def _outbox(config: Config) -> Path:
    return config.path(config.out_dir) / WEEK / "outbox"


class RenameWatch:
    """Counts files renamed into a folder (inotify IN_MOVED_TO), by name, as they happen."""

    IN_MOVED_TO = 0x80
    IN_Q_OVERFLOW = 0x4000

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        assert libc.inotify_add_watch(self.fd, str(folder).encode(), self.IN_MOVED_TO) >= 0
        self.counts: Counter[str] = Counter()
        self.overflow = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                self._drain()
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
                offset += 16 + length
                if mask & self.IN_Q_OVERFLOW:
                    self.overflow = True
                elif name.endswith(".eml"):
                    self.counts[name] += 1

    def close(self) -> Counter[str]:
        self._stop.set()
        self._thread.join()
        os.close(self.fd)
        assert not self.overflow, "the inotify queue overflowed: counts are incomplete"
        return self.counts


def _recipient(config: Config, name: str) -> str:
    return recipient_of(_outbox(config) / name)  # the name holds a hash, not the address


@pytest.mark.integration
def test_workers_share_one_issue(sample_site: Path) -> None:
    n = 600
    config = _site(sample_site, n, send={"batch_size": 50})
    watch = RenameWatch(_outbox(config))
    # the command in this process (its workers are processes of their own)
    result = CliRunner().invoke(
        main,
        ["--config", str(sample_site / "config.yaml"), "send", "--week", WEEK, "--workers", "3",
         "--json"],
    )  # fmt: skip
    renamed = watch.close()
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert result.stderr.splitlines()[-1].startswith(f"sending: {n - 1:,} of {n - 1:,} (")
    # the workers' own counts add up to one send per reader: none sent a row another did
    assert (report["sent"], report["attempted"], report["complete"]) == (n - 1, n - 1, True)
    assert report["ledger"][SENT] == n - 1
    assert sorted(_recipient(config, name) for name in renamed) == sorted(_active(n))
    assert set(renamed.values()) == {1}
    again = run_digest("send", "--week", WEEK, cwd=sample_site)
    assert again.returncode == 5 and "was already sent" in again.stderr


def _spawn(site: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "send", "--week", WEEK, "--json"],
        cwd=site,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_and_rerun(
    site: Path, env: dict[str, str], *, senders: int, kills: int, seed: int
) -> list[int]:
    """Run ``senders`` `digest send` processes; SIGKILL one at random ``kills`` times and
    start another in its place; then let them all finish. Their exit codes."""
    rng = random.Random(seed)
    running = [_spawn(site, env) for _ in range(senders)]
    done: list[int] = []
    killed = 0
    while killed < kills:
        # short gaps, so that the kills land before the send can finish on a fast machine
        time.sleep(rng.uniform(0.1, 0.6))
        alive = [p for p in running if p.poll() is None]
        if not alive:
            break  # everything finished before the kills ran out (reported by the caller)
        victim = rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed += 1
        running.remove(victim)
        running.append(_spawn(site, env))
    for process in running:
        _, err = process.communicate(timeout=900)
        # 6: a sender too slow to renew its lease on a loaded machine lost rows to another
        # and stopped without sending them (the fence); the others and the rerun send them
        lost = process.returncode == 6 and b"passed to another sender" in err
        assert process.returncode in (0, 5) or lost, err.decode()[-2000:]
        done.append(process.returncode)
    assert killed == kills, f"the send finished after {killed} kills; make it bigger"
    return done


def _ledger_counts(config: Config) -> dict[str, int]:
    with Ledger(locate(config, config.ledger.database)) as ledger:
        return {k: v for k, v in ledger.counts(WEEK).items() if v}


def kill_test_size() -> int:
    """10,000 in the suite (5,000 through the API); DIGEST_KILL_TEST_N=200000 for the full
    run by hand (400000 for 200,000 through the API)."""
    return int(os.environ.get("DIGEST_KILL_TEST_N", "10000"))


@pytest.mark.slow
def test_killed_senders_through_the_outbox_send_everyone_once(sample_site: Path) -> None:
    n = kill_test_size()
    config = _site(sample_site, n, send={"batch_size": 100, "lease": "2s"})
    watch = RenameWatch(_outbox(config))
    kill_and_rerun(sample_site, {}, senders=4, kills=10, seed=16)
    final = run_digest("send", "--week", WEEK, cwd=sample_site)  # resumes anything left
    renamed = watch.close()
    assert final.returncode in (0, 5), final.stderr
    assert _ledger_counts(config) == {SENT: n - 1}
    assert {name: c for name, c in renamed.items() if c != 1} == {}
    assert {_recipient(config, name) for name in renamed} == _active(n)


@pytest.fixture
def brevo() -> Iterator[Any]:
    with run_emulator("brevo", key=KEY, seed=3) as emulator:
        yield emulator


@pytest.mark.slow
def test_killed_senders_through_an_api_send_everyone_once(sample_site: Path, brevo: Any) -> None:
    n = kill_test_size() // 2
    config = _site(
        sample_site,
        n,
        send={"batch_size": 200, "lease": "2s"},
        provider={
            "name": "brevo",
            "base_url": brevo.url,
            "api_key": "${EMU_KEY}",
            "max_retries": 8,
            "retry_base_delay": 0.05,
            "retry_max_delay": 0.5,
        },
    )
    kill_and_rerun(sample_site, {"EMU_KEY": KEY}, senders=4, kills=10, seed=61)
    final = run_digest("send", "--week", WEEK, cwd=sample_site, env={"EMU_KEY": KEY})
    assert final.returncode in (0, 5), final.stderr
    counts = brevo.counts()
    assert {a: c for a, c in counts.items() if c != 1} == {}
    assert set(counts) == _active(n)
    assert _ledger_counts(config) == {SENT: n - 1}


RATE = 8  # send requests per second the emulated account allows


@pytest.fixture
def limited_brevo() -> Iterator[Any]:
    with run_emulator("brevo", key=KEY, seed=5, rate_limit=RATE, retry_after=1) as emulator:
        yield emulator


@pytest.mark.slow
def test_four_senders_together_keep_the_providers_rate_limit(
    sample_site: Path, limited_brevo: Any
) -> None:
    """The account allows RATE requests in any second; four processes share it through the
    database: not one request refused for the rate, and never more than RATE in any second."""
    per_request = 10
    n = RATE * per_request * 30 + 1  # about 30 s of sending at the limit
    config = _site(
        sample_site,
        n,
        send={"batch_size": per_request, "concurrency": 2},
        provider={"name": "brevo", "base_url": limited_brevo.url, "api_key": "${EMU_KEY}"},
    )
    senders = [_spawn(sample_site, {"EMU_KEY": KEY}) for _ in range(4)]
    for sender in senders:
        _, err = sender.communicate(timeout=600)
        assert sender.returncode in (0, 5), err.decode()[-2000:]
    refused = [r for r in limited_brevo.requests() if r["fault"] == "rate_limit"]
    assert refused == [], ([r["request_id"] for r in refused], len(limited_brevo.requests()))
    accepted: dict[int, float] = {}
    for message in limited_brevo.messages():
        at = datetime.fromisoformat(message["accepted_at"]).timestamp()
        accepted[message["request_id"]] = min(at, accepted.get(message["request_id"], at))
    times = sorted(accepted.values())
    assert len(times) == (n - 1) // per_request
    busiest = max(bisect.bisect_right(times, t + 1.0 - 1e-9) - i for i, t in enumerate(times))
    assert busiest <= RATE  # never above, in any window of one second
    # how close together they come to the limit depends on the machine's load: reported
    # here, measured in bench/bench_send.py, never a reason for this test to fail
    achieved = (len(times) - 1) / (times[-1] - times[0])
    print(f"4 senders together: {achieved:.2f} requests/s of {RATE} allowed")
    assert _ledger_counts(config) == {SENT: n - 1}


def test_senders_never_settle_the_same_uncertain_rows_twice(sample_site: Path) -> None:
    """Uncertain rows are leased like pending ones: while one sender asks the provider about
    a chunk of them, another sender on the issue leaves that chunk alone (before, both asked
    and the second to record its answer failed on rows the first had settled)."""
    from digest.delivery.providers.base import Result
    from digest.delivery.providers.outbox import OutboxProvider
    from digest.delivery.send import send_issue

    n = 300
    config = _site(sample_site, n)

    class Unanswered(OutboxProvider):
        """Every request goes out and no answer comes: every row ends ``uncertain``."""

        def send(self, batch: Any) -> Iterator[Any]:
            for recipient in batch.recipients:
                yield Result(recipient.subscriber_id, "uncertain", reason="no answer came")

    report = send_issue(config, now=_now(), week=WEEK, provider=Unanswered.from_config(config))
    assert (report.uncertain, report.complete) == (n - 1, False)
    assert _ledger_counts(config) == {UNCERTAIN: n - 1}

    asked: Counter[int] = Counter()
    in_lookup, go_on = threading.Event(), threading.Event()
    guard = threading.Lock()

    class LooksUp(OutboxProvider):
        """Can say what it accepted (everything); the first question waits until the other
        sender has finished or is waiting for this one's leases."""

        can_look_up = True

        def lookup(self, issue_id: str, deliveries: Any) -> dict[int, str | None]:
            with guard:
                first = not asked
                asked.update(d.subscriber_id for d in deliveries)
            if first:
                in_lookup.set()
                assert go_on.wait(120), "the other sender neither finished nor waited"
            return {d.subscriber_id: f"<{d.subscriber_id}@provider>" for d in deliveries}

    errors: dict[str, BaseException] = {}

    def first() -> None:
        try:
            send_issue(config, now=_now(), week=WEEK, provider=LooksUp.from_config(config))
        except BaseException as exc:
            errors["first"] = exc

    def second_sleeps(seconds: float) -> None:
        go_on.set()  # waiting for the first sender's leases: let it answer
        time.sleep(min(seconds, 0.2))

    def second() -> None:
        try:
            assert in_lookup.wait(120), "the first sender never asked the provider"
            send_issue(
                config,
                now=_now(),
                week=WEEK,
                provider=LooksUp.from_config(config),
                sleep=second_sleeps,
            )
        except BaseException as exc:
            errors["second"] = exc
        finally:
            go_on.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == {}
    assert len(asked) == n - 1 and set(asked.values()) == {1}  # each row asked about once
    assert _ledger_counts(config) == {SENT: n - 1}


def _pool_workers(pid: int) -> list[int]:
    """The worker processes of ``digest send --workers`` running as ``pid`` (its spawned
    children running spawn_main, not the resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command:
            found.append(int(child))
    return found


@pytest.mark.slow
def test_a_worker_killed_alone_stops_the_run_and_the_next_run_sends_the_rest(
    sample_site: Path,
) -> None:
    """One worker SIGKILLed on its own (the OOM killer's way) ends the run with exit 6 and a
    message, never a run waiting forever for it; the next run sends the rest, once each."""
    n = 6000
    config = _site(sample_site, n, send={"batch_size": 20, "lease": "2s"})
    watch = RenameWatch(_outbox(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "send", "--week", WEEK, "--workers", "3"],
        cwd=sample_site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # on progress: once the workers have sent something, kill one of them
    while sum(watch.counts.values()) < 40 and process.poll() is None:
        time.sleep(0.05)
    workers = _pool_workers(process.pid)
    assert process.poll() is None and workers, "the send finished before the kill; make it bigger"
    os.kill(workers[0], signal.SIGKILL)
    _, err = process.communicate(timeout=900)
    assert process.returncode == 6, err.decode()[-2000:]
    assert "a worker process ended without finishing" in err.decode()
    again = run_digest("send", "--week", WEEK, cwd=sample_site)
    assert again.returncode == 0, again.stderr[-2000:]
    renamed = watch.close()
    assert sorted(_recipient(config, name) for name in renamed) == sorted(_active(n))
    assert set(renamed.values()) == {1}
    assert _ledger_counts(config) == {SENT: n - 1}
