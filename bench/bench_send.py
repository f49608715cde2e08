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

A last row, ``fencing``, sends the same issue to the same subscribers (uniform) with the
fencing and the per-batch status checks and without them (the same code, those checks
patched out in the child: :func:`without_fencing`), in ``--fence-repeats`` pairs whose order
alternates; it prints the median rate of each, their ratio and the spread of the per-pair
ratios, for the outbox, SMTP (every message fenced and its subscriber read again at the
hand-off) and Postmark's API on the test sink (``tests/sink``, in its own process; batches
from worker threads, each request fenced on its worker's ledger connection).

    python bench/bench_send.py                      # 5k and 10k, outbox; the fencing row
    python bench/bench_send.py --large              # and 100k
    python bench/bench_send.py --sizes 2000 --transports outbox smtp --naive 1000
    python bench/bench_send.py --only-fence --fence-n 3000 --fence-repeats 7
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
from collections.abc import Iterator
from contextlib import contextmanager
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
    if os.environ.get(UNFENCED):
        without_fencing()
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
    unfenced: bool = False,
) -> dict[str, float]:
    """One send in a child process, with the digest found in ``code`` (a checkout)."""
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        config = make_site(Path(tmp), posts, cache, n, provider, preferences)
        command = [sys.executable, str(code / "bench" / "bench_send.py"), "--child", str(config)]
        command += ["--naive-child"] if naive else []
        command += ["--tracemalloc"] if trace else []
        env = {**os.environ, "PYTHONPATH": str(code)}  # ahead of the editable install
        env.pop(UNFENCED, None)
        if unfenced:
            env[UNFENCED] = "1"
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


UNFENCED = "DIGEST_BENCH_UNFENCED"
"""Set in a child's environment: that send runs without the fence and the status checks."""


def without_fencing() -> None:
    """The send loop as it would be without fencing and the per-batch status checks, for
    the baseline of the fencing row (patched in the child process only): rows are claimed
    without comparing lease generations, a hand-off marks the rows handed off without the
    fenced transaction (the crash evidence an unfenced send still needs), and no batch or
    SMTP message reads its subscribers' statuses again before it leaves."""
    from digest.delivery import dispatch, send
    from digest.delivery.ledger import Ledger

    claim = Ledger.claim

    def unfenced_claim(self: Ledger, *args: Any, **kwargs: Any) -> None:
        kwargs["fence"] = None
        claim(self, *args, **kwargs)

    def unfenced_hand_off(self: Ledger, issue_id: str, ids: Any, **_: Any) -> None:
        for sid in ids:
            self.mark_handed_off(issue_id, sid)

    Ledger.claim = unfenced_claim  # type: ignore[method-assign]
    Ledger.hand_off = unfenced_hand_off  # type: ignore[method-assign]
    send.Sender.still_active = lambda self, part, recipient: part  # type: ignore[method-assign]
    dispatch.Dispatcher.left = lambda self, handoff, attempt: False  # type: ignore[method-assign]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def fencing_row(
    providers: dict[str, dict[str, Any]], posts: Path, cache: Path, n: int, repeats: int
) -> None:
    """Throughput with the fencing and per-batch status checks against the same send
    without them (:func:`without_fencing`), same code, same kind of child process, in
    pairs whose order alternates (AB BA AB ...) so that drift on a shared machine falls on
    both; the median rate of each, their ratio, and the spread of the per-pair ratios."""
    run(100, providers["outbox"], posts, cache)  # warms the post cache, measured by none
    for transport, provider in providers.items():
        rates: dict[str, list[float]] = {"unfenced": [], "fenced": []}
        ratios: list[float] = []
        rss: dict[str, float] = {}
        for i in range(repeats):
            order = ("unfenced", "fenced") if i % 2 == 0 else ("fenced", "unfenced")
            pair: dict[str, float] = {}
            for label in order:
                r = run(n, provider, posts, cache, unfenced=label == "unfenced")
                rates[label].append(r["rate"])
                rss[label] = max(rss.get(label, 0.0), r["rss_mb"])
                pair[label] = r["rate"]
            ratios.append(pair["fenced"] / pair["unfenced"])
        before, after = median(rates["unfenced"]), median(rates["fenced"])
        ratio = after / before
        print(
            f"{transport + ' fencing':<22} n={n:>7}  unfenced {before:>6.0f} msg/s  fenced "
            f"{after:>6.0f} msg/s (medians of {repeats}, interleaved)  rate x{ratio:.3f} "
            f"(cost {(1 - ratio) * 100:+.1f}%); per-pair ratios {min(ratios):.3f}..."
            f"{max(ratios):.3f}; peak RSS x{rss['fenced'] / rss['unfenced']:.2f}",
            flush=True,
        )


@contextmanager
def http_sink() -> Iterator[str]:
    """The test sink's HTTP half (tests/sink) in its own process: its address."""
    os.environ.setdefault("BENCH_TOKEN", "bench-only-token")
    sink = subprocess.Popen(
        [sys.executable, "-c", HTTP_SINK],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdin is not None
    try:
        yield sink.stdout.readline().strip()
    finally:
        sink.stdin.close()
        sink.wait(timeout=30)


HTTP_SINK = """
import sys
from tests.sink import HttpSink
sink = HttpSink()
print(sink.url, flush=True)
sys.stdin.read()
sink.close()
"""


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
    parser.add_argument("--fence-n", type=int, default=3000, help="subscribers in the fencing row")
    parser.add_argument("--fence-repeats", type=int, default=5, help="pairs of sends, alternated")
    parser.add_argument("--only-fence", action="store_true", help="only the fencing row")
    parser.add_argument("--fence-transports", nargs="+", default=["outbox", "smtp", "postmark"])
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
            with http_sink() as url:
                providers["postmark"] = {
                    "name": "postmark",
                    "base_url": url,
                    "token": "${BENCH_TOKEN}",
                    "message_stream": "broadcast",
                }
                fencing_row(
                    {t: providers[t] for t in args.fence_transports},
                    posts,
                    cache,
                    args.fence_n,
                    args.fence_repeats,
                )
        finally:
            if server is not None:
                assert server.stdin is not None
                server.stdin.close()
                server.wait(timeout=30)


if __name__ == "__main__":
    main()
