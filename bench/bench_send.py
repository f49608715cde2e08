"""Send one issue to N subscribers through the outbox and through SMTP on loopback.

Prints messages per second, CPU time per message and peak memory (tracemalloc) for each
size, with the 10k run as the baseline the 100k run is compared to: memory must stay flat
because subscribers and ledger rows are streamed a chunk at a time.

    python bench/bench_send.py                 # 10k and 100k, outbox and smtp
    python bench/bench_send.py --sizes 2000 20000 --transports outbox
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from digest.config import load_config
from digest.send import send_issue
from digest.subscribers import SubscriberStore

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def make_site(folder: Path, n: int, provider: dict[str, Any]) -> Path:
    shutil.copytree(ROOT / "content", folder / "content")
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["provider"] = provider
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with SubscriberStore(folder / "data/subscribers.sqlite") as store:
        store._db.execute("BEGIN")
        for i in range(n):
            cats = [(), ("Work",), ("Tools", "Research")][i % 3]
            store.add(f"reader{i:06d}@example.com", name=f"R{i}", categories=cats, now=NOW)
        store._db.execute("COMMIT")
    return folder / "config.yaml"


def run(n: int, provider: dict[str, Any]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(make_site(Path(tmp), n, provider))
        tracemalloc.start()
        started, cpu = time.perf_counter(), time.process_time()
        report = send_issue(config, now=NOW, week="2026-W47")
        seconds, cpu_used = time.perf_counter() - started, time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.sent == n, report.as_dict()
    return {"rate": n / seconds, "cpu_ms": cpu_used / n * 1000, "peak_mb": peak / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--transports", nargs="+", default=["outbox", "smtp"])
    args = parser.parse_args()
    controller = None
    providers: dict[str, dict[str, Any]] = {"outbox": {"name": "outbox"}}
    if "smtp" in args.transports:
        from aiosmtpd.controller import Controller

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        controller = Controller(Sink(), hostname="127.0.0.1", port=port)
        controller.start()
        providers["smtp"] = {"name": "smtp", "host": "127.0.0.1", "port": port, "security": "none"}
    try:
        for transport in args.transports:
            baseline: dict[str, float] | None = None
            for n in args.sizes:
                r = run(n, providers[transport])
                line = (
                    f"{transport:<6} n={n:>7}  {r['rate']:>7.0f} msg/s  "
                    f"{r['cpu_ms']:.2f} ms CPU/msg  peak {r['peak_mb']:.1f} MB"
                )
                if baseline is None:
                    baseline = r
                    line += "  (baseline)"
                else:
                    line += (
                        f"  rate x{r['rate'] / baseline['rate']:.2f}, "
                        f"peak memory x{r['peak_mb'] / baseline['peak_mb']:.2f}"
                        f" vs n={args.sizes[0]}"
                    )
                print(line, flush=True)
    finally:
        if controller is not None:
            controller.stop()


if __name__ == "__main__":
    main()
