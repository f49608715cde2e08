"""Queue and send one issue to N subscribers through the outbox: SQLite vs PostgreSQL, with
one sender process and with four, as a user runs them (``digest send`` processes).

For each combination it prints messages per second (queueing included: every sender queues
the issue, as separate hosts would), the ratio to the SQLite one-sender run measured in the
same run, and the peak RSS of each sender process (from ``wait4``). The PostgreSQL cluster is
a throwaway one on loopback (tests/pg.py); its subscribers are copied from the SQLite file
with ``digest db migrate``, whose time is printed too.

    python bench/bench_db.py                        # 1,000,000 subscribers
    python bench/bench_db.py --subscribers 100000   # smaller

The outbox writes one file per message (about 37 KB each): 1,000,000 subscribers need about
37 GB free for the largest run; each run's outbox is deleted before the next.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WEEK = "2026-W47"


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


def senders(site: Path, count: int) -> tuple[float, list[float]]:
    """Start ``count`` `digest send` processes together; (seconds, peak RSS MB of each)."""
    env = {**os.environ, "DIGEST_SECRET": "bench-only-secret"}
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "digest", "send", "--week", WEEK, "--json"],
            cwd=site,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    peaks: list[float] = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.stderr is not None
        if proc.returncode not in (0, 5):
            raise SystemExit(f"digest send failed ({proc.returncode}): {proc.stderr.read()}")
        peaks.append(usage.ru_maxrss / 1024)
    return time.perf_counter() - started, peaks


def check(site: Path, n: int, database: str | None) -> None:
    from digest.config import load_config
    from digest.delivery.ledger import Ledger
    from digest.store.database import locate

    config = load_config(site / "config.yaml")
    with Ledger(locate(config, config.ledger.database)) as ledger:
        counts = ledger.counts(WEEK)
    assert counts["sent"] + counts["skipped"] == n, counts
    outbox = site / "out" / WEEK / "outbox"
    files = sum(1 for _ in os.scandir(outbox))
    assert files == counts["sent"], (files, counts)
    shutil.rmtree(outbox)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    n = args.subscribers
    from tests.pg import Cluster

    # a SIGTERM runs the finally below too, so the throwaway cluster is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {n:,} subscribers", flush=True)
    cluster = Cluster()
    baseline: float | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-db-") as tmp:
            seed = Path(tmp) / "seed.sqlite"
            began = time.perf_counter()
            populate(seed, n)
            print(f"populate SQLite: {time.perf_counter() - began:.1f} s", flush=True)
            for backend in ("sqlite", "postgresql"):
                for workers in args.workers:
                    site = Path(tmp) / f"{backend}-{workers}"
                    site.mkdir()
                    url = cluster.database() if backend == "postgresql" else None
                    make_site(site, url)
                    (site / "data").mkdir()
                    shutil.copy(seed, site / "data" / "subscribers.sqlite")
                    if url:
                        began = time.perf_counter()
                        moved = subprocess.run(
                            [sys.executable, "-m", "digest", "db", "migrate", "--to", url],
                            cwd=site,
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
                    seconds, peaks = senders(site, workers)
                    check(site, n, url)
                    rate = n / seconds
                    baseline = baseline or rate
                    memory = ", ".join(f"{p:.0f}" for p in peaks)
                    print(
                        f"{backend:<10} {workers} sender{'s' if workers > 1 else ' '}  "
                        f"{rate:>7,.0f} msg/s  {seconds:7.1f} s  x{rate / baseline:.2f} vs "
                        f"SQLite 1 sender  peak RSS MB per process: {memory}",
                        flush=True,
                    )
                    shutil.rmtree(site)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
