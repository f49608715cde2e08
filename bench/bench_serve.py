"""Load test of `digest serve` on loopback: subscribe, one-click unsubscribe and archive reads.

Starts `digest serve` as its own process on a copy of the sample site (after `digest build`
so the archive exists), seeds active subscribers to unsubscribe, then sends a bounded number
of requests from concurrent clients (keep-alive HTTP/1.1 connections on asyncio streams, a
client small enough to leave the shared CPU to the server) in an even mix:

- POST /subscribe (JSON, a new address each time)        → one pending subscriber each
- POST /unsubscribe/<token> with List-Unsubscribe=One-Click → one unsubscribed each
- GET  /archive/<issue>/                                  → read only

and checks that no request failed and no write was lost: the store's counts must equal the
requests made. The baseline, measured in the same run against the same process, is GET
/healthz (a route that touches neither the store nor the disk); figures are printed beside it
as a ratio. Peak memory: the server's (VmHWM, read before it stops) and this script's (ru_maxrss).

    python bench/bench_serve.py                 # 20,000 requests, 50 clients
    python bench/bench_serve.py --requests 2000 --clients 20

The rate limit on /subscribe is raised for this run, since every request comes from
127.0.0.1; tests/test_serve.py and tests/test_serve_http.py check the limiter itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-serve-secret"


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float, kind: str | None = None) -> float:
        values = sorted(v for k, vs in self.latencies.items() if kind in (None, k) for v in vs)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(q * len(values)))]


def site_store(site: Path) -> Any:
    """The site's subscriber store, wherever its config puts it (a file or PostgreSQL)."""
    from digest.audience.subscribers import SubscriberStore
    from digest.config import load_config
    from digest.store.database import locate

    config = load_config(site / "config.yaml")
    return SubscriberStore(locate(config, config.subscribers.database))


def seed(site: Path, count: int, secret: str) -> list[str]:
    """Add ``count`` active subscribers; return an unsubscribe token for each."""
    from digest.audience.tokens import make_token, signing_key

    now = datetime.now(timezone.utc)
    tokens = []
    with site_store(site) as store:
        for n in range(count):
            subscriber, _ = store.add(f"leaver{n}@example.com", now=now)
            key = signing_key(subscriber.secret, secret.encode())
            tokens.append(make_token("unsubscribe", subscriber.handle, key))
    return tokens


def store_counts(site: Path) -> dict[str, int]:
    with site_store(site) as store:
        counts: dict[str, int] = store.counts()
        return counts


class _Connection:
    """One keep-alive HTTP/1.1 connection: a small client, so the load generator spends
    little of the shared CPU and the figures describe the server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = ""
    ) -> tuple[int, bytes, bool]:
        """(status, body, reused): ``reused`` says the connection had served a request."""
        reused = self.writer is not None
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body or method == "POST":
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            await self.close()
            raise ConnectionResetError("closed before a response")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(parts)
        else:
            data = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, data, reused


async def _drive(
    url: str, plan: list[tuple[str, str]], concurrency: int, result: LoadResult
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)

    async def one(connection: _Connection, kind: str, arg: str) -> tuple[int, bytes, bool]:
        if kind == "subscribe":
            body = json.dumps({"email": arg}).encode()
            return await connection.request("POST", "/subscribe", body, "application/json")
        if kind == "unsubscribe":
            return await connection.request(
                "POST",
                f"/unsubscribe/{arg}",
                b"List-Unsubscribe=One-Click",
                "application/x-www-form-urlencoded",
            )
        return await connection.request("GET", arg)

    expected = {"subscribe": 202, "unsubscribe": 200, "archive": 200, "health": 200}

    async def worker() -> None:
        connection = _Connection(host, port)
        try:
            while True:
                try:
                    kind, arg = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                try:
                    try:
                        status, body, _ = await one(connection, kind, arg)
                    except (ConnectionError, asyncio.IncompleteReadError):
                        # A kept-alive connection the server had just closed: like any HTTP
                        # client, send again on a new one (every request here is idempotent).
                        await connection.close()
                        result.retries += 1
                        status, body, _ = await one(connection, kind, arg)
                    if status != expected[kind] or (kind == "unsubscribe" and body):
                        result.errors.append(f"{kind} {arg[:30]}: {status}")
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    result.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                    await connection.close()
                result.latencies.setdefault(kind, []).append(time.perf_counter() - started)
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def run_load(
    url: str,
    site: Path,
    *,
    total: int,
    concurrency: int,
    secret: str = SECRET,
    archive_path: str = "/archive/",
) -> LoadResult:
    """Send ``total`` requests (a third of each kind) and compare the store with them."""
    n_unsub = total // 3
    n_sub = total // 3
    n_read = total - n_sub - n_unsub
    before = store_counts(site)
    tokens = seed(site, n_unsub, secret)
    plan: list[tuple[str, str]] = []
    for n in range(max(n_sub, n_unsub, n_read)):
        if n < n_sub:
            plan.append(("subscribe", f"joiner{n}@example.com"))
        if n < n_unsub:
            plan.append(("unsubscribe", tokens[n]))
        if n < n_read:
            plan.append(("archive", archive_path))
    result = LoadResult(requests=len(plan), seconds=0.0)
    started = time.perf_counter()
    asyncio.run(_drive(url, plan, concurrency, result))
    result.seconds = time.perf_counter() - started
    result.counts = store_counts(site)
    result.expected = {
        **before,
        "pending": before["pending"] + n_sub,
        "unsubscribed": before["unsubscribed"] + n_unsub,
    }
    return result


def run_baseline(url: str, *, total: int, concurrency: int) -> LoadResult:
    result = LoadResult(requests=total, seconds=0.0)
    started = time.perf_counter()
    asyncio.run(_drive(url, [("health", "/healthz")] * total, concurrency, result))
    result.seconds = time.perf_counter() - started
    return result


def _site(folder: Path) -> Path:
    site = folder / "site"
    site.mkdir()
    shutil.copytree(ROOT / "content", site / "content")
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["serve"] = {"public_url": "http://127.0.0.1:8025", "subscribe_burst": 10_000_000}
    (site / "config.yaml").write_text(yaml.safe_dump(data))
    return site


def _start(site: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    with open(site / "serve.log", "w") as log:  # the server's log, kept as a service's is
        proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "serve", "--port", "0"],
            cwd=site,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "digest serve: listening on http://127.0.0.1:PORT (…)"
    if "listening on " not in line:
        proc.kill()
        raise SystemExit(f"digest serve did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].split()[0]


def _peak_rss_mb(pid: int) -> float:
    """The server's peak resident memory (VmHWM), read while it still runs."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--week", default="2026-W47")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        site = _site(Path(folder))
        env = {**os.environ, "DIGEST_SECRET": SECRET}
        subprocess.run(
            [sys.executable, "-m", "digest", "build", "--week", args.week],
            cwd=site,
            env=env,
            check=True,
            capture_output=True,
        )
        proc, url = _start(site, env)
        try:
            baseline = run_baseline(url, total=args.requests, concurrency=args.clients)
            load = run_load(
                url,
                site,
                total=args.requests,
                concurrency=args.clients,
                archive_path=f"/archive/{args.week}/",
            )
            server_peak_mb = _peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        client_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        logged = (site / "serve.log").read_text().splitlines()
        changes = sum(" is now " in line or "added as pending" in line for line in logged)

    def row(name: str, value: float, base: float, unit: str) -> None:
        ratio = value / base if base else float("nan")
        print(
            f"  {name:<28} {value:>10.1f} {unit:<6} baseline {base:>10.1f} {unit:<6} "
            f"ratio {ratio:.2f}"
        )

    print(
        f"digest serve load test: {load.requests} requests, {args.clients} clients, "
        "127.0.0.1 (baseline: GET /healthz, same process, same run)"
    )
    row("throughput", load.throughput, baseline.throughput, "req/s")
    row("p50 latency (all)", load.percentile(0.50) * 1000, baseline.percentile(0.50) * 1000, "ms")
    row("p99 latency (all)", load.percentile(0.99) * 1000, baseline.percentile(0.99) * 1000, "ms")
    for kind in ("subscribe", "unsubscribe", "archive"):
        print(
            f"  p50/p99 {kind:<12} {load.percentile(0.5, kind) * 1000:8.1f} / "
            f"{load.percentile(0.99, kind) * 1000:8.1f} ms "
            f"({len(load.latencies.get(kind, []))} requests)"
        )
    print(
        f"  errors                        {len(load.errors)} (baseline {len(baseline.errors)}); "
        f"resent after a closed keep-alive connection: {load.retries}"
    )
    for error in load.errors[:5]:
        print(f"    {error}")
    lost = {
        k: (load.expected[k], load.counts.get(k))
        for k in load.expected
        if load.expected[k] != load.counts.get(k)
    }
    print(f"  server log                    {len(logged)} lines, {changes} state changes")
    print(f"  store counts                  {load.counts}")
    print(f"  lost writes                   {lost or 'none'}")
    print(
        f"  peak memory                   server {server_peak_mb:.0f} MB, "
        f"load client {client_peak_mb:.0f} MB (VmHWM / ru_maxrss)"
    )
    return 0 if not load.errors and not lost and not baseline.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
