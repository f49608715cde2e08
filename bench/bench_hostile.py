"""Hostile input costs what ordinary input costs: alias bombs and bounded JSON.

    python bench/bench_hostile.py [--posts 1000]

1. Loading ``--posts`` files that each hold a nine-level "billion laughs" (as the title, the
   tags or an unused key), beside the baseline of loading as many ordinary posts of the
   same size, each in its own process (peak memory is its own max RSS).
2. Reading a subscribe body with :func:`digest.serve.jsonbody.loads_bounded`, beside plain
   ``json.loads`` (the baseline), and what a 7,000-level body costs each.
3. ``digest serve`` under attack (``--serve``, on by default; ``--no-serve`` skips it): the
   service runs as its own process on loopback; two attacker processes open
   ``--idle-connections`` idle connections between them from 127.0.0.2 (500 at a time,
   each batch established before the next) and hold them (opening a new one for each the
   server closes) while a thread sends 1 MB hostile JSON bodies to ``/webhooks/mailgun``
   back to back from 127.0.0.3; the health checks come from 127.0.0.1, as a load
   balancer's come from its own address. The attack runs twice: every process on every
   core (the attackers starve the server of CPU as well), then (``--pinned``, on by
   default, with two cores or more) the attackers and the checker on one core and the
   server on the others, as when the attack comes from other machines. Once the server's
   descriptors stop growing, ``/healthz`` answer times (p50, p99, worst) are measured
   under that attack beside the same requests with no attack (the baseline), with their
   ratios, the server's CPU time, peak memory and how many bytes of log it wrote. The
   bench and the attackers raise their soft open-file limits to the hard one.
4. Subscribe answer times by the address's status (new, pending, active, unsubscribed,
   complained) with an SMTP server that takes ``--provider-delay`` seconds per message:
   the p50 of each, beside ``/healthz`` in the same run, and the largest difference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

BOMB = "\n".join(
    ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
)
WHERE = ("title: *a9", "title: Tags\ntags: *a9", "title: Unused\nlol: *a9")


def write_posts(folder: Path, n: int, hostile: bool) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        if hostile:
            front = f"{BOMB}\n{WHERE[i % 3]}\ndate: 2026-11-18\ncategory: Tools"
        else:  # the same size, no aliases
            front = f"title: Post {i}\ndate: 2026-11-18\ncategory: Tools\nnote: {'x' * len(BOMB)}"
        (folder / f"p{i}.md").write_text(f"---\n{front}\n---\n\nBody of post {i}.\n")


def measure_load(folder: str) -> dict[str, float]:
    from zoneinfo import ZoneInfo

    from digest.content.posts import PARALLEL_THRESHOLD, load_posts

    assert PARALLEL_THRESHOLD > 0
    start = time.perf_counter()
    result = load_posts(Path(folder), ZoneInfo("UTC"))
    return {
        "seconds": time.perf_counter() - start,
        "posts": len(result.posts),
        "problems": len(result.problems),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def in_process(folder: Path) -> dict[str, float]:
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[2]);"
        "from bench_hostile import measure_load;"
        "print(json.dumps(measure_load(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def measure_json(rounds: int) -> tuple[float, float, float, float]:
    from digest.serve.jsonbody import BadJson, loads_bounded

    body = json.dumps(
        {"email": "ann@example.com", "name": "Ann Example", "categories": ["Tools", "Research"]}
    ).encode()
    start = time.perf_counter()
    for _ in range(rounds):
        json.loads(body)
    plain = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(rounds):
        loads_bounded(body)
    bounded = time.perf_counter() - start
    deep = b"[" * 7000 + b"]" * 7000
    start = time.perf_counter()
    with contextlib.suppress(RecursionError):
        json.loads(deep)
    deep_plain = time.perf_counter() - start
    start = time.perf_counter()
    with contextlib.suppress(BadJson):
        loads_bounded(deep)
    deep_bounded = time.perf_counter() - start
    return plain, bounded, deep_plain, deep_bounded


# --------------------------------------------------------------------------- digest serve

SECRET = "bench-hostile-secret"
MAILGUN_KEY = "bench-hostile-mailgun"
HOSTILE_BODY = b"[" * 40 + b'"' + b'\\"' * 524_200  # 1 MB, under the webhook body limit
STATUSES = ("new", "pending", "active", "unsubscribed", "complained")


def serve_site(folder: Path, smtp_port: int) -> Path:
    """A copy of the sample site whose service mails through the slow SMTP server."""
    site = folder / "site"
    site.mkdir()
    shutil.copytree(ROOT / "content", site / "content")
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["provider"] = {"name": "smtp", "host": "127.0.0.1", "port": smtp_port}
    data["provider"]["security"] = "none"
    data["serve"] = {
        "public_url": "http://127.0.0.1:8025",
        "subscribe_burst": 10_000_000,
        "subscribe_per_minute": 10_000_000,
        "mail_per_address": 1_000_000,
        "webhooks": {"mailgun_signing_key": "${MG_KEY}"},
    }
    (site / "config.yaml").write_text(yaml.safe_dump(data))
    return site


def seed_statuses(site: Path, count: int) -> None:
    """``count`` subscribers in each status but new, as a store holds them."""
    from digest.audience.subscribers import SubscriberStore
    from digest.config import load_config
    from digest.store.database import locate

    config = load_config(site / "config.yaml")
    now = datetime.now(timezone.utc)
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        for status in STATUSES[1:]:
            for n in range(count):
                store.add(f"{status}{n}@example.com", status=status, now=now)


class SlowSmtp:
    """An SMTP server on loopback that takes ``delay`` seconds to accept each message."""

    def __init__(self, delay: float) -> None:
        from aiosmtpd.controller import Controller

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                import asyncio

                await asyncio.sleep(delay)
                return "250 OK"

        with socket.socket() as probe:  # a free port (aiosmtpd cannot take port 0)
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def start_serve(site: Path) -> tuple[subprocess.Popen[str], str, int]:
    env = {**os.environ, "DIGEST_SECRET": SECRET, "MG_KEY": MAILGUN_KEY}
    with open(site / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "serve", "--port", "0"],
            cwd=site,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on " not in line:
        proc.kill()
        raise SystemExit(f"digest serve did not start: {line!r}")
    url = line.split("listening on ", 1)[1].split()[0]
    return proc, url, int(url.rsplit(":", 1)[1])


def server_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def http(
    port: int, request: bytes, timeout: float = 30.0, source: str = "127.0.0.1"
) -> tuple[int, float]:
    """One request on a new connection from ``source``: (status, seconds until the whole
    answer came)."""
    started = time.perf_counter()
    with socket.socket() as sock:
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1] or 0), time.perf_counter() - started


# Linux routes all of 127/8 to lo: the horde comes from one address, the hostile bodies
# from another, the health checks from 127.0.0.1 (the load balancer's)
ATTACKER_ADDRESS = "127.0.0.2"
BODIES_ADDRESS = "127.0.0.3"
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def health_times(port: int, count: int) -> list[float]:
    times = []
    for _ in range(count):
        try:
            status, seconds = http(port, HEALTH)
        except OSError:  # refused, reset or timed out: a failed check
            status, seconds = 0, float("inf")
        times.append(seconds if status == 200 else float("inf"))
        time.sleep(0.01)  # a health checker polls; it does not hammer
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


ATTACKER = """
import resource, selectors, socket, sys, time
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
source = sys.argv[4]  # the attacker's own address (another host's, as a real attack's)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < hard:  # each attacker holds its share of the connections open
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.DefaultSelector()
opened = reopened = failed = 0
def connect(watch=sel):
    global opened, failed
    s = socket.socket()
    s.setblocking(False)
    # the port is picked at connect (per destination), not by bind from the whole range:
    # bind(port 0) searches the range for a port no socket holds, slower as it fills
    s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
    try:
        s.bind((source, 0))
        s.connect_ex(("127.0.0.1", port))
        watch.register(s, selectors.EVENT_READ if watch is sel else selectors.EVENT_WRITE)
        opened += 1
    except OSError:
        s.close(); failed += 1
# The horde is opened 500 at a time, each batch established before the next, as an
# attacker who wants its connections held (not dropped by a full accept queue) opens them.
for start in range(0, count, 500):
    pending = selectors.DefaultSelector()
    for _ in range(min(500, count - start)):
        connect(pending)
    while pending.get_map():
        for key, _ in pending.select(1.0):
            pending.unregister(key.fileobj)
            if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                key.fileobj.close(); failed += 1; opened -= 1
            else:
                sel.register(key.fileobj, selectors.EVENT_READ)
print("ready", flush=True)
sel.register(sys.stdin, selectors.EVENT_READ)  # closed by the bench: time to stop
end = time.monotonic() + seconds
while time.monotonic() < end:
    closed = 0
    events = sel.select(0.05)
    if any(key.fileobj is sys.stdin for key, _ in events):
        break
    for key, _ in events:
        sel.unregister(key.fileobj); key.fileobj.close(); closed += 1
    for _ in range(closed):  # keep the count: a new idle connection for each one closed
        connect(); reopened += 1
    time.sleep(0.01)
print(opened, reopened, failed, len(sel.get_map()) - 1, flush=True)
"""


def hostile_bodies(port: int, stop: threading.Event, answers: list[int]) -> None:
    head = (
        b"POST /webhooks/mailgun HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(HOSTILE_BODY)).encode() + b"\r\n\r\n"
    )
    while not stop.is_set():
        try:
            status, _ = http(port, head + HOSTILE_BODY, timeout=120, source=BODIES_ADDRESS)
        except OSError:
            status = 0
        answers.append(status)


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled(pid: int) -> int:
    """The server's open descriptors once they stop growing (it has taken in the horde)."""
    counts = [open_descriptors(pid)]
    while len(counts) < 6 or counts[-1] > counts[-6]:
        time.sleep(0.2)
        counts.append(open_descriptors(pid))
    return counts[-1]


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


@contextlib.contextmanager
def pinned(server_pid: int, attacker_pids: list[int], pin: bool) -> Any:
    """With ``pin`` (and two cores or more): the attackers and this process (the health
    checker, the hostile bodies) on the first core, the server alone on the others, as
    when the attack comes from other machines; everyone back on every core afterwards."""
    every = cores()
    if not pin or len(every) < 2:
        yield
        return
    for pid in [0, *attacker_pids]:
        os.sched_setaffinity(pid, every[:1])
    os.sched_setaffinity(server_pid, every[1:])
    try:
        yield
    finally:
        for pid in [0, server_pid, *attacker_pids]:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, every)


def attack(
    port: int, pid: int, args: argparse.Namespace, pin: bool
) -> tuple[list[float], list[int], list[str], int]:
    """Health times while two processes hold the idle connections (from 127.0.0.2) and a
    thread sends hostile bodies; the attack ends when the health checks have been made.
    The checks start once the server holds the horde (its descriptors stop growing)."""
    seconds = 600.0  # an upper bound: the attackers are stopped when the checks are done
    half = args.idle_connections // 2
    attackers = [
        subprocess.Popen(
            [sys.executable, "-c", ATTACKER, str(port), str(share), str(seconds), ATTACKER_ADDRESS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in (half, args.idle_connections - half)
    ]
    with pinned(pid, [proc.pid for proc in attackers], pin):
        return _attacked(port, pid, args, attackers)


def _attacked(
    port: int, pid: int, args: argparse.Namespace, attackers: list[subprocess.Popen[str]]
) -> tuple[list[float], list[int], list[str], int]:
    for proc in attackers:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready": its connections are open (or refused)
    held = settled(pid)
    stop, answers = threading.Event(), []  # type: ignore[var-annotated]
    sender = threading.Thread(target=hostile_bodies, args=(port, stop, answers))
    sender.start()
    try:
        times = health_times(port, args.health_requests)
    finally:
        stop.set()
        reports = [stop_attacker(proc) for proc in attackers]
        sender.join()
    return times, answers, reports, held


def stop_attacker(proc: subprocess.Popen[str]) -> str:
    """Its report, once its stdin is closed; killed if it does not stop within 2 minutes."""
    try:
        return proc.communicate(timeout=120)[0].strip()
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "(did not stop within 120 s: killed)"


def subscribe_times(port: int, per_status: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {s: [] for s in STATUSES}
    for n in range(per_status):
        for status in STATUSES:  # interleaved, so drift in the machine's load hits all alike
            address = f"{status}{n}@example.com"
            body = json.dumps({"email": address}).encode()
            request = (
                b"POST /subscribe HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            )
            code, seconds = http(port, request + body)
            assert code == 202, (status, code)
            times[status].append(seconds)
    return times


def report_attack(name: str, run: dict[str, Any], baseline: list[float]) -> None:
    base50, base99 = percentile(baseline, 0.5), percentile(baseline, 0.99)
    times = run["times"]
    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    failed = sum(t == float("inf") for t in times)
    print(
        f"/healthz {name} x{len(times)}: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"worst {max(times) * 1000:.1f} ms, failed {failed}; baseline (no attack) p50 "
        f"{base50 * 1000:.1f} ms, p99 {base99 * 1000:.1f} ms; ratio p50 "
        f"{p50 / base50:.1f}x, p99 {p99 / base99:.1f}x; p99 within 1 s: {p99 <= 1.0}"
    )
    if "held" not in run:
        return
    print(f"  the server held {run['held']} descriptors when these checks began")
    print(
        "  attackers (opened, reopened after the server closed them, refused, still open): "
        + "; ".join(run["reports"])
    )
    answers = run["answers"]
    print(
        f"  1 MB hostile bodies answered: {len(answers)} (statuses {sorted(set(answers))}); "
        f"log written: {run['log_bytes'] / 1024:.1f} KB; server CPU "
        f"{run['cpu']:.1f} s in {run['seconds']:.1f} s; connection attempts the kernel "
        f"dropped for a full accept queue (whole machine): {run['drops']}"
    )


def server_cpu(pid: int) -> float:
    """User plus system CPU seconds the process has used (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listen_drops() -> int:
    """Connection attempts the kernel dropped because a listening socket's accept queue was
    full (TcpExt ListenDrops, for the whole machine: other work's count too)."""
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            if names.startswith("TcpExt:"):
                row = dict(zip(names.split()[1:], values.split()[1:], strict=True))
                return int(row.get("ListenDrops", 0))
    return 0


def attack_run(site: Path, port: int, pid: int, args: argparse.Namespace, pin: bool) -> Any:
    log_before = (site / "serve.log").stat().st_size
    cpu_before, started = server_cpu(pid), time.monotonic()
    drops_before = listen_drops()
    times, answers, reports, held = attack(port, pid, args, pin)
    return {
        "drops": listen_drops() - drops_before,
        "times": times,
        "answers": answers,
        "reports": reports,
        "held": held,
        "log_bytes": (site / "serve.log").stat().st_size - log_before,
        "cpu": server_cpu(pid) - cpu_before,
        "seconds": time.monotonic() - started,
    }


def bench_serve(args: argparse.Namespace) -> None:
    smtp = SlowSmtp(args.provider_delay)
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        site = serve_site(Path(tmp), smtp.port)
        seed_statuses(site, args.subscribes)
        proc, url, port = start_serve(site)
        try:
            baseline = health_times(port, args.health_requests)
            print(f"\ndigest serve at {url}; {len(cores())} cores", flush=True)
            kinds = [("under attack, every process on every core", False)]
            if args.pinned and len(cores()) >= 2:
                kinds.append(("under attack, server and attackers on separate cores", True))
            for name, pin in kinds:
                runs[name] = attack_run(site, port, proc.pid, args, pin=pin)
                report_attack(name, runs[name], baseline)  # now, in case a later run fails
                sys.stdout.flush()
            served_log = (site / "serve.log").read_text(errors="replace").splitlines()
            subscribes = subscribe_times(port, args.subscribes)
            runs["after the attack"] = {"times": health_times(port, 50)}
            peak = server_peak_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=120)
            smtp.stop()
        clean_exit = proc.returncode in (0, -15)
    print(f"SIGTERM ended digest serve cleanly: {clean_exit}")
    print(
        f"attack: {args.idle_connections} idle connections from {ATTACKER_ADDRESS}, 1 MB "
        f"hostile bodies from {BODIES_ADDRESS}, health checks from 127.0.0.1, on "
        f"{len(cores())} cores. A real attacker is another machine: the run on separate "
        "cores measures the server; the run sharing every core measures CPU starvation too."
    )
    for line in served_log:
        if "open-file limit" in line or "open connections" in line:
            print(f"  server log: {line.strip()}")
    report_attack("after the attack", runs["after the attack"], baseline)
    closings = [line.strip() for line in served_log if "closed " in line and "more like" in line]
    for line in closings[-6:]:
        print(f"  server log: {line}")
    exhausted = sum("out of system resource" in line for line in served_log)
    print(f"times the server ran out of descriptors and paused accepting: {exhausted}")
    print_subscribes(subscribes, percentile(baseline, 0.5), args.provider_delay)
    print(f"server peak memory {peak:.0f} MB")


def print_subscribes(
    subscribes: dict[str, list[float]], base50: float, provider_delay: float
) -> None:
    medians = {s: percentile(t, 0.5) for s, t in subscribes.items()}
    for status, median in medians.items():
        print(
            f"POST /subscribe, {status} address x{len(subscribes[status])}: "
            f"p50 {median * 1000:.1f} ms (ratio to /healthz p50 {median / base50:.1f}x)"
        )
    spread = max(medians.values()) - min(medians.values())
    print(
        f"subscribe p50 spread across statuses: {spread * 1000:.1f} ms "
        f"(with a {provider_delay * 1000:.0f} ms provider)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--json-rounds", type=int, default=100_000)
    parser.add_argument("--serve", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--idle-connections", type=int, default=20_000)
    parser.add_argument(
        "--pinned",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the attack with the server and the attackers on separate cores",
    )
    parser.add_argument("--health-requests", type=int, default=300)
    parser.add_argument("--subscribes", type=int, default=40, help="per status")
    parser.add_argument("--provider-delay", type=float, default=0.4)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # the health checks and the hostile bodies need descriptors too
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as tmp:
        hostile, plain = Path(tmp) / "hostile", Path(tmp) / "plain"
        write_posts(hostile, args.posts, hostile=True)
        write_posts(plain, args.posts, hostile=False)
        bombs = in_process(hostile)
        baseline = in_process(plain)
    print(
        f"load {args.posts} billion-laughs posts: {bombs['seconds']:.2f} s, "
        f"peak {bombs['peak_mb']:.0f} MB, {bombs['problems']:.0f} reported and skipped"
    )
    print(
        f"load {args.posts} ordinary posts (baseline): {baseline['seconds']:.2f} s, "
        f"peak {baseline['peak_mb']:.0f} MB, {baseline['posts']:.0f} posts"
    )
    print(
        f"ratio hostile/baseline: time {bombs['seconds'] / baseline['seconds']:.2f}x, "
        f"peak memory {bombs['peak_mb'] / baseline['peak_mb']:.2f}x"
    )
    plain_s, bounded_s, deep_plain, deep_bounded = measure_json(args.json_rounds)
    print(
        f"subscribe body x{args.json_rounds}: loads_bounded {bounded_s:.2f} s, "
        f"json.loads (baseline) {plain_s:.2f} s, ratio {bounded_s / plain_s:.2f}x"
    )
    print(
        f"7,000-level body: loads_bounded refuses it in {deep_bounded * 1000:.1f} ms; "
        f"json.loads spends {deep_plain * 1000:.1f} ms and raises RecursionError"
    )
    if args.serve:
        bench_serve(args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
