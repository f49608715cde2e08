"""Send one issue to N subscribers through the outbox (and SMTP on loopback), as `digest send`.

The issue is a busy week of the real corpus (2026-W02) with three posts per section: 24
posts in the 8 of the 13 categories that have posts that week. For each size it sends
twice, in the same run:

* ``uniform``: every subscriber gets the whole issue (no preferences);
* ``random``: every subscriber chose 1–5 of the 13 categories at random (seeded), as the
  first user's subscribers do, so there are up to 218 distinct variants (the subsets of
  at most five of the week's 8 sections); a reader whose choice has no posts this week is
  skipped, and the rate counts the messages sent;

and prints messages per second, CPU time per message (the sending process only), peak
memory, the random case's rate as a share of the uniform one, and peak memory at each size
against the smallest. The per-variant wire template is also compared with the naive path
(``to_message(...).as_bytes()`` for every recipient), everything else equal.

Each send runs in a fresh child process (``digest send`` as a whole: build, queue, send,
report), so peak RSS (``ru_maxrss``) belongs to that send alone. The SMTP server (aiosmtpd,
a sink) runs in its own process, so its CPU is not counted.

A last row, ``fenced``, sends the same issue to the same subscribers (uniform) with the
send loop as it was before fencing and the per-batch status checks (``--base``, by default
where this branch left ``main``: checked out into a temporary git worktree, its code run
as a whole process) and with this one, alternately, ``--fence-repeats`` times each; it
prints the best rate of each, their ratio and peak memory, for the outbox and for SMTP
(where every message is fenced and its subscriber read again at the hand-off).

    python bench/bench_send.py                      # 5k and 10k, outbox; the fenced row
    python bench/bench_send.py --large              # and 100k
    python bench/bench_send.py --sizes 2000 --transports outbox smtp --naive 1000
    python bench/bench_send.py --only-fence --fence-n 3000 --base f7aa992
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=timezone.utc)
DEFAULT_CORPUS = Path(
    os.environ.get("DIGEST_CORPUS_TARBALL")
    or ROOT.parent / "shared" / "corpus" / "aivibe-posts.tar.gz"
)

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


CATEGORIES = (
    "Work",
    "General AI",
    "Healthcare",
    "Ethics",
    "Tools",
    "Finance",
    "Technology",
    "Research",
    "Business",
    "Productivity",
    "Transportation",
    "Smart Home",
    "Education",
)
WEEK = "2026-W02"


def corpus_posts(tarball: Path, folder: Path) -> Path:
    """The corpus's posts folder (unpacked into ``folder`` when given the tarball)."""
    if tarball.is_dir():
        return tarball
    with tarfile.open(tarball) as archive:
        archive.extractall(folder, filter="data")
    return folder / "posts"


def make_site(
    folder: Path, posts: Path, cache: Path, n: int, provider: dict[str, Any], preferences: str
) -> Path:
    from digest.audience.subscribers import SubscriberStore

    config = yaml.safe_load((ROOT / "tests" / "data" / "corpus-config.yaml").read_text())
    config["content"].update({"posts_dir": str(posts), "cache_dir": str(cache)})
    config["limits"] = {"per_category": 3, "total": 1000}
    config["provider"] = provider
    config["subscribers"] = {"database": "data/subscribers.sqlite"}
    config["ledger"] = {"database": "data/ledger.sqlite"}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    rng = random.Random(14)
    with SubscriberStore(folder / "data/subscribers.sqlite") as store:
        store._db.execute("BEGIN")
        for i in range(n):
            cats: tuple[str, ...] = ()
            if preferences == "random":
                cats = tuple(rng.sample(CATEGORIES, rng.randint(1, 5)))
            store.add(f"reader{i:06d}@example.com", name=f"R{i}", categories=cats, now=NOW)
        store._db.execute("COMMIT")
    return folder / "config.yaml"


def child(config_path: str, naive: bool, trace: bool) -> None:
    """Runs in the child process: one send, figures as JSON on stdout."""
    from digest.config import load_config
    from digest.delivery.issue import BuildComposer
    from digest.delivery.send import send_issue

    class NaiveComposer(BuildComposer):
        wire_template = None  # type: ignore[assignment]  # no fast path: to_message each

    config = load_config(Path(config_path))
    composer = NaiveComposer() if naive else BuildComposer()
    if trace:
        import tracemalloc

        tracemalloc.start()
    started, cpu = time.perf_counter(), time.process_time()
    report = send_issue(config, now=NOW, week=WEEK, composer=composer)
    seconds, cpu_used = time.perf_counter() - started, time.process_time() - cpu
    figures = {
        "sent": report.sent,
        "skipped": report.skipped,  # readers whose sections have no posts this week
        "variants": len(report.variants),
        "seconds": seconds,
        "cpu": cpu_used,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if trace:
        figures["heap_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    print(json.dumps(figures))


def run(
    n: int,
    provider: dict[str, Any],
    posts: Path,
    cache: Path,
    *,
    preferences: str = "uniform",
    naive: bool = False,
    trace: bool = False,
    code: Path = ROOT,
) -> dict[str, float]:
    """One send in a child process, with the digest found in ``code`` (a checkout)."""
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        config = make_site(Path(tmp), posts, cache, n, provider, preferences)
        command = [sys.executable, str(code / "bench" / "bench_send.py"), "--child", str(config)]
        command += ["--naive-child"] if naive else []
        command += ["--tracemalloc"] if trace else []
        env = {**os.environ, "PYTHONPATH": str(code)}  # ahead of the editable install
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode:
            raise SystemExit(f"send failed:\n{done.stderr}")
        r: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    # Every reader is settled: sent, or skipped when none of their sections has posts.
    assert r["sent"] + r["skipped"] == n and r["sent"] > 0, r
    r["rate"] = r["sent"] / r["seconds"]
    r["n"] = n
    r["cpu_ms"] = r["cpu"] / n * 1000
    return r


def line(label: str, n: int, r: dict[str, float], extra: str = "") -> str:
    heap = f", heap {r['heap_mb']:.1f} MB" if "heap_mb" in r else ""
    return (
        f"{label:<22} n={n:>7}  {r['rate']:>7.0f} msg/s  {r['cpu_ms']:6.3f} ms CPU/msg  "
        f"{r['seconds']:7.1f} s  peak RSS {r['rss_mb']:4.0f} MB{heap}  "
        f"variants {int(r['variants']):>5}, {int(r['sent'])} sent{extra}"
    )


def fenced_row(
    providers: dict[str, dict[str, Any]], posts: Path, cache: Path, n: int, base: str, repeats: int
) -> None:
    """This send against the same send at ``base``, alternately, in one run."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", base], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-send-base-") as tmp:
        checkout = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(checkout), commit],
            cwd=ROOT,
            check=True,
        )
        try:
            for transport, provider in providers.items():
                best: dict[str, dict[str, float]] = {}
                for _ in range(repeats):
                    for label, code in (("before", checkout), ("fenced", ROOT)):
                        r = run(n, provider, posts, cache, code=code)
                        if label not in best or r["rate"] > best[label]["rate"]:
                            best[label] = r
                before, after = best["before"], best["fenced"]
                print(line(f"{transport} before {commit}", n, before), flush=True)
                print(
                    line(
                        f"{transport} fenced",
                        n,
                        after,
                        f"  rate x{after['rate'] / before['rate']:.3f} of before "
                        f"(cost {(1 - after['rate'] / before['rate']) * 100:+.1f}%), peak RSS "
                        f"x{after['rss_mb'] / before['rss_mb']:.2f}",
                    ),
                    flush=True,
                )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False
            )


def _merge_base() -> str:
    found = subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True
    )
    return found.stdout.strip() or "HEAD"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 10_000])
    parser.add_argument("--large", action="store_true", help="also send to 100,000")
    parser.add_argument("--transports", nargs="+", default=["outbox"])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument(
        "--naive", type=int, default=2000, help="subscribers for the naive baseline run"
    )
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the heap peak")
    parser.add_argument(
        "--base", help="the commit the fenced row compares with (default: merge-base with main)"
    )
    parser.add_argument("--fence-n", type=int, default=3000, help="subscribers in the fenced row")
    parser.add_argument("--fence-repeats", type=int, default=3, help="sends of each, alternately")
    parser.add_argument("--only-fence", action="store_true", help="only the fenced row")
    parser.add_argument("--fence-transports", nargs="+", default=["outbox", "smtp"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--naive-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Real transports sign links with the server secret that `digest serve` checks.
    os.environ.setdefault("DIGEST_SECRET", "bench-only-secret")
    if args.child:
        child(args.child, args.naive_child, args.tracemalloc)
        return
    sizes = sorted({*args.sizes, *([100_000] if args.large else [])})
    server = None
    providers: dict[str, dict[str, Any]] = {"outbox": {"name": "outbox"}}
    # the SMTP sink: for --transports smtp, and always for the fenced row
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
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {WEEK} of the corpus, 3 posts "
        f"in each of 13 sections; sizes {sizes}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-send-corpus-") as shared:
        posts = corpus_posts(args.corpus, Path(shared))
        cache = Path(shared) / "cache"  # one post cache for every run, warmed by the first
        try:
            for transport in [] if args.only_fence else args.transports:
                provider = providers[transport]
                run(100, provider, posts, cache)  # warms the post cache
                naive = run(args.naive, provider, posts, cache, naive=True, trace=args.tracemalloc)
                print(
                    line(f"{transport} naive", args.naive, naive, "  (baseline: to_message)"),
                    flush=True,
                )
                firsts: dict[str, dict[str, float]] = {}
                for n in sizes:
                    uniform: dict[str, float] = {}
                    for preferences in ("uniform", "random"):
                        r = run(
                            n,
                            provider,
                            posts,
                            cache,
                            preferences=preferences,
                            trace=args.tracemalloc,
                        )
                        extra = ""
                        if preferences == "uniform":
                            uniform = r
                            extra = f"  vs naive: rate x{r['rate'] / naive['rate']:.1f}"
                        else:
                            extra = f"  rate {r['rate'] / uniform['rate']:.2f} of uniform"
                        first = firsts.setdefault(preferences, r)
                        if first is not r:
                            extra += f"; peak RSS x{r['rss_mb'] / first['rss_mb']:.2f} "
                            extra += f"vs n={int(first['n'])}"
                            if "heap_mb" in r:
                                extra += f", heap x{r['heap_mb'] / first['heap_mb']:.2f}"
                        print(line(f"{transport} {preferences}", n, r, extra), flush=True)
            fenced_row(
                {t: providers[t] for t in args.fence_transports},
                posts,
                cache,
                args.fence_n,
                args.base or _merge_base(),
                args.fence_repeats,
            )
        finally:
            if server is not None:
                assert server.stdin is not None
                server.stdin.close()
                server.wait(timeout=30)


if __name__ == "__main__":
    main()
