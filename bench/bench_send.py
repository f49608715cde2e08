"""Send one issue to N subscribers through the outbox and through SMTP on loopback.

For each transport and size it prints messages per second, CPU time per message (the
sending process only) and peak memory, and compares:

* the per-variant wire template against the naive path measured in the same run
  (``message.to_message(...).as_bytes()`` for every recipient, everything else equal);
* peak memory at the largest size against the smallest: it must stay flat, because
  subscribers and ledger rows are streamed a chunk at a time.

Each send runs in a fresh child process, so peak RSS (``ru_maxrss``) belongs to that send
alone and no tracing slows it down; the child also reports the Python heap peak from a
separate tracemalloc pass when ``--tracemalloc`` is given. The SMTP server (aiosmtpd, a
sink that accepts everything) runs in its own process, so its CPU is not counted.

    python bench/bench_send.py                       # 10k and 100k, outbox and smtp
    python bench/bench_send.py --sizes 2000 20000 --transports outbox --naive 1000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)

SERVER = """
import sys, time
from aiosmtpd.controller import Controller
class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


def make_site(folder: Path, n: int, provider: dict[str, Any]) -> Path:
    from digest.audience.subscribers import SubscriberStore

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


def child(config_path: str, naive: bool, trace: bool) -> None:
    """Runs in the child process: one send, figures as JSON on stdout."""
    from digest.config import load_config
    from digest.delivery.send import BuildComposer, send_issue

    class NaiveComposer(BuildComposer):
        wire_template = None  # type: ignore[assignment]  # no fast path: to_message each

    config = load_config(Path(config_path))
    composer = NaiveComposer() if naive else BuildComposer()
    if trace:
        import tracemalloc

        tracemalloc.start()
    started, cpu = time.perf_counter(), time.process_time()
    report = send_issue(config, now=NOW, week="2026-W47", composer=composer)
    seconds, cpu_used = time.perf_counter() - started, time.process_time() - cpu
    figures = {
        "sent": report.sent,
        "seconds": seconds,
        "cpu": cpu_used,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if trace:
        figures["heap_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    print(json.dumps(figures))


def run(
    n: int, provider: dict[str, Any], *, naive: bool = False, trace: bool = False
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        config = make_site(Path(tmp), n, provider)
        command = [sys.executable, __file__, "--child", str(config)]
        command += ["--naive-child"] if naive else []
        command += ["--tracemalloc"] if trace else []
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"send failed:\n{done.stderr}")
        r: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    assert r["sent"] == n, r
    r["rate"] = n / r["seconds"]
    r["cpu_ms"] = r["cpu"] / n * 1000
    return r


def line(label: str, n: int, r: dict[str, float], extra: str = "") -> str:
    heap = f", heap {r['heap_mb']:.1f} MB" if "heap_mb" in r else ""
    return (
        f"{label:<13} n={n:>7}  {r['rate']:>7.0f} msg/s  {r['cpu_ms']:6.3f} ms CPU/msg  "
        f"{r['seconds']:7.1f} s  peak RSS {r['rss_mb']:.0f} MB{heap}{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--transports", nargs="+", default=["outbox", "smtp"])
    parser.add_argument(
        "--naive", type=int, default=2000, help="subscribers for the naive baseline run"
    )
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the heap peak")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--naive-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Real transports sign links with the server secret that `digest serve` checks.
    os.environ.setdefault("DIGEST_SECRET", "bench-only-secret")
    if args.child:
        child(args.child, args.naive_child, args.tracemalloc)
        return
    server = None
    providers: dict[str, dict[str, Any]] = {"outbox": {"name": "outbox"}}
    if "smtp" in args.transports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        providers["smtp"] = {"name": "smtp", "host": "127.0.0.1", "port": port, "security": "none"}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; sizes {args.sizes}", flush=True)
    try:
        for transport in args.transports:
            naive = run(args.naive, providers[transport], naive=True, trace=args.tracemalloc)
            print(
                line(f"{transport} naive", args.naive, naive, "  (baseline: to_message)"),
                flush=True,
            )
            first: dict[str, float] | None = None
            for n in args.sizes:
                r = run(n, providers[transport], trace=args.tracemalloc)
                extra = (
                    f"  vs naive: CPU/msg x{naive['cpu_ms'] / r['cpu_ms']:.1f} less, "
                    f"rate x{r['rate'] / naive['rate']:.1f}"
                )
                if first is None:
                    first = r
                else:
                    extra += f"; peak RSS x{r['rss_mb'] / first['rss_mb']:.2f} vs n={args.sizes[0]}"
                    if "heap_mb" in r:
                        extra += f", heap x{r['heap_mb'] / first['heap_mb']:.2f}"
                print(line(transport, n, r, extra), flush=True)
    finally:
        if server is not None:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
