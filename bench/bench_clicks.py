"""Load test of counted links: `/c/<token>` on two `digest serve` processes sharing PostgreSQL.

Starts a throwaway PostgreSQL cluster (tests/pg.py) unless --database names one, writes a
site whose issue manifest lists 20 posts, and starts two `digest serve` processes on it with
``analytics.clicks: aggregate``. Then 200 concurrent clients (keep-alive HTTP/1.1
connections, each its own address through X-Forwarded-For, half on each process, a browser's
User-Agent) follow their post's counted link until 50,000 clicks are made; the baseline,
measured in the same run against the same processes (the two take turns in five rounds),
is GET /healthz. Both processes then stop (each writes what it holds), and the click store
must hold exactly the clicks made, per post, none filtered.

Printed: p50 and p99 latency of the redirect beside /healthz's, throughput, and each
server's peak memory (VmHWM).

    python bench/bench_clicks.py                    # 50,000 clicks, 200 clients
    python bench/bench_clicks.py --clicks 2000 --clients 20
    python bench/bench_clicks.py --rate 500 --search 100,200,400,600,800,1000
    python bench/bench_clicks.py --in-process 20000   # the redirect's own cost, no sockets

Closed loop, each client sends its next click when the last was answered: with 200 clients
that measures queueing (Little's law: latency = clients in flight / throughput), not the
redirect. ``--rate`` adds open-loop runs (clicks due at a fixed total rate, a burst after
a send, latency counted from when each was due), and ``--search`` finds the highest of the
given rates at which p50 stays under 20 ms. With two or more cores the load generator is
pinned to one and both servers to another (``os.sched_setaffinity``), and the output says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.audience.clicktokens import Click, make_click_token  # noqa: E402
from digest.audience.tokens import token_secret  # noqa: E402
from digest.config import load_config  # noqa: E402
from digest.delivery.clicks import ClickStore  # noqa: E402
from digest.store.database import locate  # noqa: E402

SECRET = "bench-clicks-secret"
ISSUE = "2026-W47"
POSTS = 20
ROUNDS = 5
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@dataclass
class Run:
    requests: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # the servers' CPU seconds while it ran
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, other: Run) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.latencies += other.latencies
        self.errors += other.errors

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def make_site(folder: Path, database: str) -> Path:
    site = folder / "site"
    site.mkdir()
    shutil.copytree(ROOT / "content", site / "content")
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["serve"] = {"public_url": "http://127.0.0.1:8025", "trusted_proxies": ["127.0.0.1"]}
    data["analytics"] = {"clicks": "aggregate", "flush_seconds": 0.5}
    data["database"] = database
    (site / "config.yaml").write_text(yaml.safe_dump(data))
    issue = site / "out" / ISSUE
    issue.mkdir(parents=True)
    posts = [{"id": f"p{i}", "url": f"https://news.example.org/p/{i}"} for i in range(POSTS)]
    manifest = {"issue_id": ISSUE, "sections": [{"name": "News", "posts": posts}]}
    (issue / "manifest.json").write_text(json.dumps(manifest))
    return site


def start(site: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--port", "0", "--json"],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    text = ""
    while "}" not in text:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise SystemExit("digest serve did not start")
        text += line
    return proc, json.loads(text)["url"]


async def _get(
    streams: list[Any], host: str, port: int, path: str, headers: str
) -> tuple[int, str]:
    """One GET on the client's keep-alive connection (opened again when the server closed
    it); (status, Location)."""
    for attempt in (0, 1):
        if not streams:
            streams.extend(await asyncio.open_connection(host, port))
        reader, writer = streams
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n".encode())
        try:
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionResetError
            length, location = 0, ""
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "location":
                    location = value.strip()
            if length:
                await reader.readexactly(length)
            return int(status_line.split()[1]), location
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            streams.clear()
            if attempt:
                raise
    raise AssertionError("unreachable")


async def drive(
    urls: list[str], plan: list[list[str]], expect: int, rate: float | None = None
) -> Run:
    """Client ``i`` sends its paths in order on its own connection to ``urls[i % 2]``.

    Closed loop (``rate`` None): each client sends its next request when the last one is
    answered, so latency is what ``clients`` requests in flight queue for. Open loop: the
    requests of all clients are due at ``rate`` per second in all, evenly spaced, and each
    latency counts from when its request was due (a client still waiting on its last answer
    sends late, and that wait counts: no coordinated omission)."""
    run = Run(requests=sum(len(p) for p in plan))
    clients = len(plan)
    begin = time.perf_counter() + 0.2

    async def client(number: int, paths: list[str]) -> None:
        host, port = urls[number % len(urls)].removeprefix("http://").split(":")
        headers = (
            f"User-Agent: {BROWSER}\r\nX-Forwarded-For: 10.{number // 250}.{number % 250}.1\r\n"
        )
        streams: list[Any] = []
        for turn, path in enumerate(paths):
            started = time.perf_counter()
            if rate is not None:
                due = begin + (turn * clients + number) / rate
                if due > started:
                    await asyncio.sleep(due - started)
                started = due
            try:
                status, _ = await _get(streams, host, int(port), path, headers)
                if status != expect:
                    run.errors.append(f"{path}: {status}")
            except (OSError, asyncio.IncompleteReadError) as exc:
                run.errors.append(f"{path}: {type(exc).__name__}")
            run.latencies.append(time.perf_counter() - started)
        if streams:
            streams[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n, paths) for n, paths in enumerate(plan)))
    run.seconds = time.perf_counter() - started
    return run


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pin(pid: int, core: int | None) -> None:
    """Keep ``pid`` on one core (nothing when the machine has one, or ``core`` is None)."""
    if core is not None:
        os.sched_setaffinity(pid, {core})


def cores() -> tuple[int | None, int | None]:
    """(the load generator's core, the servers' core): apart when there are two or more."""
    usable = sorted(os.sched_getaffinity(0))
    return (usable[0], usable[1]) if len(usable) >= 2 else (None, None)


@dataclass
class Open:
    """An open-loop run: ``rate`` clicks per second in all, for ``clicks`` clicks."""

    rate: float
    clicks: int
    run: Run = field(default_factory=Run)


def _plan(links: list[str], clients: int, clicks: int) -> list[list[str]]:
    per = [clicks // clients + (1 if n < clicks % clients else 0) for n in range(clients)]
    return [[links[n % POSTS]] * per[n] for n in range(clients)]


def _tally(expected: dict[int, int], plan: list[list[str]]) -> None:
    for n, paths in enumerate(plan):
        if paths:
            expected[n % POSTS] = expected.get(n % POSTS, 0) + len(paths)


def measure(
    site: Path,
    *,
    clicks: int,
    clients: int,
    baseline: int,
    rates: tuple[Open, ...] = (),
    search: tuple[float, ...] = (),
    search_seconds: float = 4.0,
) -> dict[str, Any]:
    """Run the load on two serve processes; the figures, and whether the counts are exact.

    First the closed loop (``clicks`` from ``clients``, taking turns with the baseline);
    then each open-loop run of ``rates``; then ``search``: open-loop runs of
    ``search_seconds`` each at these rates, in order, until two in a row have a p50 of
    20 ms or more."""
    env = {**os.environ, "DIGEST_SECRET": SECRET}
    os.environ["DIGEST_SECRET"] = SECRET
    config = load_config(site / "config.yaml")
    key = token_secret(config)
    links = [f"/c/{make_click_token(Click(ISSUE, i, 'all'), key)}" for i in range(POSTS)]
    load_core, server_core = cores()
    before = os.sched_getaffinity(0)
    pin(0, load_core)
    processes = [start(site, env), start(site, env)]
    for proc, _ in processes:
        pin(proc.pid, server_core)
    urls = [url for _, url in processes]
    pids = [proc.pid for proc, _ in processes]

    def timed(plan: list[list[str]], expect: int, rate: float | None = None) -> Run:
        used = cpu_seconds(pids)
        run = asyncio.run(drive(urls, plan, expect, rate=rate))
        run.cpu = cpu_seconds(pids) - used
        return run

    expected: dict[int, int] = {}
    found: list[dict[str, float]] = []
    try:
        per = [clicks // clients + (1 if n < clicks % clients else 0) for n in range(clients)]
        # The baseline and the clicks take turns in rounds, so a shared machine's load
        # changes weigh on both alike.
        health, load = Run(), Run()
        for turn in range(ROUNDS):
            share = [p // ROUNDS + (1 if turn < p % ROUNDS else 0) for p in per]
            base = baseline // clients // ROUNDS or 1
            health.add(timed([["/healthz"] * base] * clients, 200))
            plan = [[links[n % POSTS]] * share[n] for n in range(clients)]
            load.add(timed(plan, 302))
            _tally(expected, plan)
        for run in rates:
            plan = _plan(links, clients, run.clicks)
            run.run = timed(plan, 302, run.rate)
            load.errors += run.run.errors
            _tally(expected, plan)
        for rate in search:
            plan = _plan(links, clients, int(rate * search_seconds))
            step = timed(plan, 302, rate)
            load.errors += step.errors
            _tally(expected, plan)
            found.append({"rate": rate, "p50": step.percentile(0.5), "p99": step.percentile(0.99)})
            if len(found) >= 2 and min(f["p50"] for f in found[-2:]) >= 20:
                break  # two rates in a row over 20 ms: one could be a neighbour's burst
        memory = [peak_mb(proc.pid) for proc, _ in processes]
    finally:
        for proc, _ in processes:
            proc.terminate()
        for proc, _ in processes:
            proc.wait(timeout=60)
        os.sched_setaffinity(0, before)
    with ClickStore(locate(config, config.analytics.database)) as store:
        counted = {c.post: c.kept for c in store.links(ISSUE)}
        filtered = sum(c.filtered for c in store.links(ISSUE))
    return {
        "clicks": clicks,
        "clients": clients,
        "cores": {"load": load_core, "servers": server_core},
        "open_loop": [
            {
                "rate": r.rate,
                "clicks": r.clicks,
                "p50_ms": r.run.percentile(0.5),
                "p99_ms": r.run.percentile(0.99),
                "achieved_per_second": r.run.requests / r.run.seconds if r.run.seconds else 0,
                "server_cpu_us": r.run.cpu / r.run.requests * 1e6,
            }
            for r in rates
        ],
        "search": found,
        "highest_rate_p50_under_20ms": max(
            (f["rate"] for f in found if f["p50"] < 20), default=None
        ),
        "errors": load.errors[:5] + health.errors[:5],
        "exact": counted == expected and filtered == 0,
        "counted": sum(counted.values()),
        "made": sum(expected.values()),
        "filtered": filtered,
        "click_p50_ms": load.percentile(0.50),
        "click_p99_ms": load.percentile(0.99),
        "health_p50_ms": health.percentile(0.50),
        "health_p99_ms": health.percentile(0.99),
        "clicks_per_second": load.requests / load.seconds,
        "health_per_second": health.requests / health.seconds,
        "server_peak_mb": memory,
        "exit_codes": [proc.returncode for proc, _ in processes],
        "mean_click_ms": statistics.fmean(load.latencies) * 1000,
        "click_cpu_us": load.cpu / load.requests * 1e6,
        "health_cpu_us": health.cpu / health.requests * 1e6,
        "load_average": os.getloadavg()[0],
    }


async def _asgi_rounds(app: Any, paths: dict[str, str], requests: int) -> dict[str, float]:
    """Microseconds per request of each path through the ASGI app itself (no socket, no
    HTTP parsing), the paths taking turns in rounds."""
    agent = BROWSER.encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    def scope(path: str) -> dict[str, Any]:
        return {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8025), "state": {},
            "headers": [(b"host", b"127.0.0.1:8025"), (b"user-agent", agent)],
        }  # fmt: skip

    spent = dict.fromkeys(paths, 0.0)
    for _ in range(ROUNDS):
        for name, path in paths.items():
            started = time.perf_counter()
            for _ in range(requests // ROUNDS):
                await app(scope(path), receive, send)
            spent[name] += time.perf_counter() - started
    return {name: seconds / requests * 1e6 for name, seconds in spent.items()}


def in_process(requests: int) -> dict[str, float]:
    """The redirect's own cost: /c/<token> and /healthz through the app in this process
    (SQLite click store, the lifespan running so the counter flushes as in serve)."""
    from datetime import datetime, timezone

    from digest.serve.app import create_app

    os.environ["DIGEST_SECRET"] = SECRET
    with tempfile.TemporaryDirectory() as folder:
        site = make_site(Path(folder), "")
        data = yaml.safe_load((site / "config.yaml").read_text())
        del data["database"]
        (site / "config.yaml").write_text(yaml.safe_dump(data))
        config = load_config(site / "config.yaml")
        link = f"/c/{make_click_token(Click(ISSUE, 3, 'all'), token_secret(config))}"
        app = create_app(config, clock=lambda: datetime.now(timezone.utc))

        async def run() -> dict[str, float]:
            events: asyncio.Queue[dict[str, str]] = asyncio.Queue()
            said: list[Any] = []

            async def answer(message: Any) -> None:
                said.append(message)

            await events.put({"type": "lifespan.startup"})
            life = asyncio.create_task(app({"type": "lifespan", "state": {}}, events.get, answer))
            while not said:
                await asyncio.sleep(0.01)
            found = await _asgi_rounds(app, {"click": link, "healthz": "/healthz"}, requests)
            await events.put({"type": "lifespan.shutdown"})
            await life
            return found

        return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=10_000, help="/healthz requests")
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        default=[],
        help="an open-loop run at this many clicks per second in all (repeatable)",
    )
    parser.add_argument("--open-clicks", type=int, default=10_000, help="clicks per --rate run")
    parser.add_argument(
        "--search",
        default="",
        help="rates for open-loop runs of 4 s, in order, until two in a row reach a p50 of 20 ms "
        "(e.g. 100,200,400,600,800)",
    )
    parser.add_argument(
        "--in-process",
        type=int,
        metavar="N",
        help="only N requests of each path through the app in this process (no servers)",
    )
    parser.add_argument("--database", help="a postgresql:// URL (default: a throwaway cluster)")
    args = parser.parse_args(argv)
    if args.in_process:
        cost = in_process(args.in_process)
        print(
            f"in process, {args.in_process:,} requests each: /c/<token> {cost['click']:.0f} "
            f"us, /healthz {cost['healthz']:.0f} us ({cost['click'] / cost['healthz']:.2f}x)"
        )
        return 0
    rates = tuple(Open(rate, args.open_clicks) for rate in args.rate)
    search = tuple(float(r) for r in args.search.split(",") if r.strip())
    cluster = None
    database = args.database
    if database is None:
        from tests.pg import Cluster

        cluster = Cluster()
        database = str(cluster.database())
    try:
        with tempfile.TemporaryDirectory() as folder:
            site = make_site(Path(folder), database)
            result = measure(
                site,
                clicks=args.clicks,
                clients=args.clients,
                baseline=args.baseline,
                rates=rates,
                search=search,
            )
    finally:
        if cluster is not None:
            cluster.stop()
    report(result)
    return 0 if result["exact"] and not result["errors"] else 1


def report(result: dict[str, Any]) -> None:
    where = result["cores"]
    if where["load"] is None:
        print("one core: the load generator and the servers share it")
    else:
        print(
            f"load generator pinned to core {where['load']}, both serve processes to core "
            f"{where['servers']} (PostgreSQL unpinned)"
        )
    print(
        f"closed loop: {result['clicks']:,} clicks from {result['clients']} clients on 2 "
        "serve processes (each client sends when its last answer came)"
    )
    print(f"  clicks made {result['made']:,}, counted {result['counted']:,}, "
          f"filtered {result['filtered']}, exact: {result['exact']}")  # fmt: skip
    print(f"  {'':<22}{'/c/<token>':>12}{'/healthz':>12}{'ratio':>8}")
    for name, q in (("p50 latency (ms)", "p50"), ("p99 latency (ms)", "p99")):
        click, base = result[f"click_{q}_ms"], result[f"health_{q}_ms"]
        print(f"  {name:<22}{click:>12.2f}{base:>12.2f}{click / base:>8.2f}")
    rate, base_rate = result["clicks_per_second"], result["health_per_second"]
    print(f"  {'requests/s':<22}{rate:>12.0f}{base_rate:>12.0f}{rate / base_rate:>8.2f}")
    click_cpu, base_cpu = result["click_cpu_us"], result["health_cpu_us"]
    print(f"  {'server CPU/request (us)':<22}{click_cpu:>12.0f}{base_cpu:>12.0f}"
          f"{click_cpu / base_cpu:>8.2f}")  # fmt: skip
    for run in result["open_loop"]:
        print(
            f"open loop: {run['clicks']:,} clicks from {result['clients']} clients at "
            f"{run['rate']:.0f}/s in all (achieved {run['achieved_per_second']:.0f}/s): "
            f"p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, "
            f"server CPU {run['server_cpu_us']:.0f} us/click"
        )
    for step in result["search"]:
        print(
            f"  search {step['rate']:>6.0f}/s: p50 {step['p50']:.2f} ms, p99 {step['p99']:.2f} ms"
        )
    if result["search"]:
        best = result["highest_rate_p50_under_20ms"]
        print(
            f"highest rate tried with p50 under 20 ms: {best if best is None else f'{best:.0f}/s'}"
        )
    print(f"  server peak memory (MB): {', '.join(f'{m:.0f}' for m in result['server_peak_mb'])}")
    print(
        f"  load average at the end: {result['load_average']:.1f} "
        f"(the machine's cores: {os.cpu_count()})"
    )
    if result["errors"]:
        print(f"  errors: {result['errors']}")


if __name__ == "__main__":
    sys.exit(main())
