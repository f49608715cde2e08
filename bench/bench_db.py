"""Queue and send one issue to N subscribers through the outbox: SQLite vs PostgreSQL, with
one sender process and with four (``digest send --workers 4``), as a user runs them.

For each combination, in one run:

- **enqueue**: a process that queues the issue in the ledger and sends nothing (what
  ``digest send --workers N`` does before its workers start): its time and peak RSS;
- **send**: ``digest send --week W`` (``--workers 4``: one parent and four worker processes)
  on the queued issue, as its own process tree: messages per second (the command's whole
  wall time, start-up and its pass over the queue included), the ratio to the SQLite
  one-worker run measured in the same run, and the peak RSS of every process in the tree
  (each process's ``VmHWM``, read from ``/proc`` every 0.2 s while it runs), and the CPU
  time of the whole tree per message (user + system; the server's is not counted).

Every message is built in full and written to the outbox as its own fsynced ``.eml`` file,
exactly as a send without the bench writes it. At 1,000,000 messages of about 37 KB those
files would need 37 GB, so the bench drains the outbox while the send runs, the way a mail
pickup consumes a spool folder: a thread deletes each ``.eml`` once it is under its final
name, counts it and its bytes, parses every 1,000th as a message addressed to the
subscriber its name says, and notes any subscriber whose file appears a second time. At
the end the files counted must equal the ledger's ``sent`` rows, and ``sent`` + ``skipped``
must equal the subscribers.

The PostgreSQL cluster is a throwaway one on loopback (tests/pg.py) with the server's
default durability (fsync and synchronous commit on), as SQLite runs with
``synchronous=FULL``; its subscribers are copied from the SQLite file with
``digest db migrate``, whose time is printed too.

    python bench/bench_db.py                        # 1,000,000 subscribers
    python bench/bench_db.py --subscribers 20000    # smaller
    python bench/run_all.py --db                    # with every other benchmark

``--dir /dev/shm`` puts the files and the cluster on tmpfs, so that the figures are the
work of digest and the database rather than of the disk's fsyncs (on this project's 2-core
machine the outbox's fsyncs held a 20,000-subscriber run on its disk to 344-600 msg/s).
The 1,000,000-subscriber run (2 cores, 24 GB, shared with other work; in docs/database.md)::

    $ nice python bench/bench_db.py --dir /dev/shm
    python 3.11.7, 2 CPUs; 1,000,000 subscribers; outbox drained while sending; files in /dev/shm (tmpfs)
    populate SQLite: 90.1 s
    sqlite 1 worker       enqueue   61.4 s (x1.00, peak 72 MB)  send 1,000,000 in   702.8 s =  1,423 msg/s (x1.00), 0.51 ms CPU/msg  peak RSS MB: main 80  outbox 24.6 GB drained
    digest db migrate of 1,000,000 subscribers to PostgreSQL: 12.4 s
    postgresql 1 worker   enqueue   56.2 s (x0.91, peak 113 MB)  send 1,000,000 in  1100.4 s =    909 msg/s (x0.64), 0.22 ms CPU/msg  peak RSS MB: main 113  outbox 24.6 GB drained
    sqlite 4 workers      enqueue   18.7 s (x0.30, peak 150 MB)  send 1,000,000 in   791.5 s =  1,263 msg/s (x0.89), 0.65 ms CPU/msg  peak RSS MB: main 73; workers 78, 78, 79, 80  outbox 24.6 GB drained
    digest db migrate of 1,000,000 subscribers to PostgreSQL: 10.1 s
    postgresql 4 workers  enqueue   45.8 s (x0.75, peak 150 MB)  send 1,000,000 in   903.4 s =  1,107 msg/s (x0.78), 0.24 ms CPU/msg  peak RSS MB: main 79; workers 83, 83, 83, 83  outbox 24.6 GB drained
"""  # noqa: E501

from __future__ import annotations

import argparse
import email.parser
import email.policy
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WEEK = "2026-W47"
ENV = {**os.environ, "DIGEST_SECRET": "bench-only-secret"}


def populate(path: Path, n: int) -> None:
    """N active subscribers straight into a subscriber file of the current schema."""
    from digest.audience.subscribers import SubscriberStore

    SubscriberStore(path).close()  # the schema, through the migrations
    db = sqlite3.connect(path)
    rows = (
        (
            f"reader{i:07d}@example.com",
            f"R{i}",
            "active",
            "2026-01-01T00:00:00Z",
            ["[]", '["Work"]', '["Tools", "Research"]'][i % 3],
            secrets.token_bytes(32),
            "2026-01-01T00:00:00Z",
        )
        for i in range(n)
    )
    db.executemany(
        "INSERT INTO subscribers (email, name, status, subscribed_at, categories, secret, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.commit()
    db.close()


def make_site(folder: Path, database: str | None) -> Path:
    shutil.copytree(ROOT / "content", folder / "content")
    config: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["provider"] = {"name": "outbox"}
    if database:
        config["database"] = database
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


# ------------------------------------------------------------------- measuring processes


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _role(pid: int, root: int) -> str:
    if pid == root:
        return "main"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "child"
    if "resource_tracker" in command:
        return "tracker"
    return "worker"


class PeakSampler(threading.Thread):
    """The peak RSS of every process under ``root`` (VmHWM), sampled every 0.2 s."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peaks: dict[int, tuple[str, float]] = {}
        self.cpu: dict[int, float] = {}  # CPU seconds (user + system) at the last sample
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            tree = _children()
            stack = [self.root]
            while stack:
                pid = stack.pop()
                stack.extend(tree.get(pid, []))
                peak = _hwm_mb(pid)
                cpu = _cpu_seconds(pid)
                if cpu is not None:
                    self.cpu[pid] = cpu
                if peak is not None:
                    role = self.peaks.get(pid, (_role(pid, self.root), 0.0))[0]
                    self.peaks[pid] = (role, max(peak, self.peaks.get(pid, (role, 0.0))[1]))
            self.done.wait(0.2)

    def by_role(self, role: str) -> list[float]:
        return [peak for r, peak in self.peaks.values() if r == role]


@dataclass
class Drain:
    """What the outbox consumer took: files, bytes, and the messages it parsed."""

    files: int = 0
    bytes: int = 0
    parsed: int = 0
    problems: list[str] = field(default_factory=list)


class OutboxDrain(threading.Thread):
    """A mail pickup: takes each finished ``.eml`` out of the outbox as it appears."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.drain = Drain()
        self.taken: set[int] = set()  # subscriber ids whose file was taken
        self.done = threading.Event()
        self._parser = email.parser.BytesHeaderParser(policy=email.policy.default)

    def sweep(self) -> int:
        taken = 0
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return 0
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(".eml"):
                continue  # a temporary file the sender is still writing
            subscriber = int(name.split("-", 1)[0])
            path = Path(entry.path)
            try:
                size = entry.stat().st_size
                if self.drain.files % 1000 == 0:
                    self.check(path, name)
                path.unlink()
            except FileNotFoundError:
                # a folder listed while files are renamed into it may name one twice
                if subscriber not in self.taken:
                    self.drain.problems.append(f"{name}: vanished before it was taken")
                continue
            if subscriber in self.taken:
                self.drain.problems.append(f"{name}: written again after it was taken")
            self.taken.add(subscriber)
            self.drain.bytes += size
            self.drain.files += 1
            taken += 1
        return taken

    def check(self, path: Path, name: str) -> None:
        with path.open("rb") as handle:
            headers = self._parser.parse(handle)
        address = name.split("-", 1)[1].removesuffix(".eml")
        if str(headers.get("To", "")).find(address) < 0 or not headers.get("Message-ID"):
            self.drain.problems.append(f"{name}: To {headers.get('To')!r}")
        self.drain.parsed += 1

    def run(self) -> None:
        while not self.done.is_set():
            if not self.sweep():
                self.done.wait(0.05)
        self.sweep()


def enqueue(site: Path) -> tuple[float, float]:
    """Queue the issue in its own process; (seconds, peak RSS MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--enqueue-only", str(site)],
        cwd=site,
        env=ENV,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    assert proc.stderr is not None
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"enqueue failed: {proc.stderr.read().decode()}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def enqueue_only(site: Path) -> None:
    """The child of :func:`enqueue`: what ``send_in_processes`` does before its workers."""
    from datetime import datetime, timezone

    from digest.config import load_config
    from digest.delivery.send import send_issue

    config = load_config(site / "config.yaml")
    report = send_issue(config, now=datetime.now(timezone.utc), week=WEEK, limit=0)
    assert report.sent == 0, report


def send(site: Path, workers: int) -> tuple[float, PeakSampler, Drain]:
    """`digest send` (with ``--workers``) while the outbox is drained."""
    command = [sys.executable, "-m", "digest", "send", "--week", WEEK, "--json"]
    if workers > 1:
        command += ["--workers", str(workers)]
    drain = OutboxDrain(site / "out" / WEEK / "outbox")
    drain.start()
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=site, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    sampler = PeakSampler(proc.pid)
    sampler.start()
    assert proc.stderr is not None
    errors = proc.stderr.read()  # until it exits (a full pipe would stall it)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    drain.done.set()
    drain.join()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        raise SystemExit(f"digest send failed ({code}): {errors.decode()[-2000:]}")
    if workers == 1:  # exact for a single process (wait4's figure covers its children too)
        role, peak = sampler.peaks.get(proc.pid, ("main", 0.0))
        sampler.peaks[proc.pid] = (role, max(peak, usage.ru_maxrss / 1024))
    return seconds, sampler, drain.drain


def check(site: Path, n: int, drained: Drain) -> int:
    """Every subscriber settled, and every ``sent`` row's file taken from the outbox."""
    from digest.config import load_config
    from digest.delivery.ledger import Ledger
    from digest.store.database import locate

    config = load_config(site / "config.yaml")
    with Ledger(locate(config, config.ledger.database)) as ledger:
        counts = ledger.counts(WEEK)
    assert counts["sent"] + counts["skipped"] == n, counts
    assert drained.files == counts["sent"], (drained.files, counts)
    assert not drained.problems, drained.problems[:5]
    return int(counts["sent"])


def _filesystem(folder: str) -> str:
    """The type of the file system ``folder`` is on (from /proc/mounts)."""
    best, kind = "", "?"
    target = os.path.realpath(folder)
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        mount = parts[1]
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(
            best
        ):
            best, kind = mount, parts[2]
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument(
        "--dir",
        help="where the sites, their SQLite files, outboxes and the PostgreSQL cluster live "
        "(default: the system's temporary folder)",
    )
    parser.add_argument("--enqueue-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.enqueue_only:
        enqueue_only(args.enqueue_only)
        return
    n = args.subscribers
    from tests.pg import Cluster

    # a SIGTERM runs the finally below too, so the throwaway cluster is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    where = args.dir or tempfile.gettempdir()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {n:,} subscribers; "
        f"outbox drained while sending; files in {where} ({_filesystem(where)})",
        flush=True,
    )
    cluster = Cluster(durable=True, parent=args.dir) if "postgresql" in args.backends else None
    base_send: float | None = None
    base_queue: float | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-db-", dir=args.dir) as tmp:
            seed = Path(tmp) / "seed.sqlite"
            began = time.perf_counter()
            populate(seed, n)
            print(f"populate SQLite: {time.perf_counter() - began:.1f} s", flush=True)
            # 1 worker on each backend first (the baseline and its peer), then 4 on each
            for workers in args.workers:
                for backend in args.backends:
                    site = Path(tmp) / f"{backend}-{workers}"
                    site.mkdir()
                    url = cluster.database() if cluster and backend == "postgresql" else None
                    make_site(site, url)
                    (site / "data").mkdir()
                    shutil.copy(seed, site / "data" / "subscribers.sqlite")
                    if url:
                        began = time.perf_counter()
                        moved = subprocess.run(
                            [sys.executable, "-m", "digest", "db", "migrate", "--to", url],
                            cwd=site,
                            env=ENV,
                            capture_output=True,
                            text=True,
                        )
                        if moved.returncode:
                            raise SystemExit(moved.stderr)
                        print(
                            f"digest db migrate of {n:,} subscribers to PostgreSQL: "
                            f"{time.perf_counter() - began:.1f} s",
                            flush=True,
                        )
                    queue_s, queue_mb = enqueue(site)
                    seconds, sampler, drained = send(site, workers)
                    sent = check(site, n, drained)
                    rate = sent / seconds
                    cpu_ms = 1000 * sum(sampler.cpu.values()) / max(sent, 1)
                    base_send = base_send or rate
                    base_queue = base_queue or queue_s
                    mains = sampler.by_role("main")
                    peaks = ", ".join(f"{p:.0f}" for p in sorted(sampler.by_role("worker")))
                    memory = f"main {mains[0]:.0f}" if mains else "main ?"
                    if peaks:
                        memory += f"; workers {peaks}"
                    label = f"{backend} {workers} worker{'s' if workers > 1 else ''}"
                    line = (
                        f"{label:<21} enqueue {queue_s:6.1f} s (x{queue_s / base_queue:.2f}, "
                        f"peak {queue_mb:.0f} MB)  send {sent:,} in {seconds:7.1f} s = "
                        f"{rate:>6,.0f} msg/s (x{rate / base_send:.2f}), {cpu_ms:.2f} ms CPU/msg  "
                        f"peak RSS MB: {memory}  outbox {drained.bytes / 1e9:.1f} GB drained"
                    )
                    print(line, flush=True)
                    shutil.rmtree(site)
    finally:
        if cluster is not None:
            cluster.stop()
    print("\nratios: against SQLite, 1 worker, in this run", flush=True)


if __name__ == "__main__":
    main()
