"""Load + select one week of the real corpus: cold cache, warm cache, and a baseline.

    python bench/bench_load.py [--corpus PATH_TO_TARBALL_OR_FOLDER] [--week 2026-W30] [--runs 3]

The baseline, measured in the same run on the same files, is the plain loop any script would
write: ``frontmatter.load()`` on every file, then keep the posts dated in the week. Each
measurement runs in its own process so that its peak memory (max RSS) is its own.

Two tables: the work alone, timed inside each process (``in-process``), and whole processes
as a user runs them (``whole process``: start-up, imports, config, output): the baseline
loop as a script, and ``digest select --week ...``, ``digest build --week ...`` and
``digest check`` against a config file, each cold (no post cache) and warm (run again,
nothing changed: the post cache answers for every file). Each whole process's CPU time
(its own and its workers') is printed beside its wall time: on a loaded machine the wall
time says more about the neighbours than about digest.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = Path(
    os.environ.get("DIGEST_CORPUS_TARBALL")
    or ROOT.parent / "shared" / "corpus" / "aivibe-posts.tar.gz"
)


def measure_baseline(posts: str, week: str) -> dict[str, float]:
    import datetime as dt

    import frontmatter

    year, number = (int(x) for x in week.split("-W"))
    start = time.perf_counter()
    kept = 0
    for path in sorted(Path(posts).glob("*.md")):
        post = frontmatter.load(path)
        value = post.get("date")
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
        if day.isocalendar()[:2] == (year, number):
            kept += 1
    return {"seconds": time.perf_counter() - start, "posts": kept}


def measure_digest(posts: str, week: str, cache: str, serial: bool) -> dict[str, float]:
    from datetime import datetime, timezone

    import digest.content.posts
    from digest.content import pipeline

    if serial:
        digest.content.posts.PARALLEL_THRESHOLD = 10**12
    from digest.config import parse_config

    config = parse_config(
        {
            "site": {"name": "Bench", "base_url": "https://bench.example.com"},
            "sender": {"from_name": "Bench", "from_email": "bench@example.com"},
            "timezone": "UTC",
            "content": {"posts_dir": posts, "cache_dir": cache},
            "limits": {"per_category": None, "total": None},
        }
    )
    start = time.perf_counter()
    loaded = pipeline.load_and_select(config, datetime.now(timezone.utc), week=week)
    seconds = time.perf_counter() - start
    in_window = len(loaded.selection.in_window)
    return {"seconds": seconds, "posts": in_window, "parsed": loaded.posts.parsed}


def child(kind: str, posts: str, week: str, cache: str) -> None:
    if kind == "baseline":
        result = measure_baseline(posts, week)
    else:
        result = measure_digest(posts, week, cache, serial=kind == "serial")
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["workers_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


def run(kind: str, posts: Path, week: str, cache: Path) -> dict[str, float]:
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--posts",
            str(posts),
            "--week",
            week,
            "--cache",
            str(cache),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


BASELINE_SCRIPT = """
import datetime as dt, sys
from pathlib import Path
import frontmatter
year, number = (int(x) for x in sys.argv[2].split("-W"))
kept = 0
for path in sorted(Path(sys.argv[1]).glob("*.md")):
    post = frontmatter.load(path)
    value = post.get("date")
    day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    if day.isocalendar()[:2] == (year, number):
        kept += 1
print(kept)
"""


def whole(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """One whole process: wall time, CPU time (with its workers'), and its peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "seconds": seconds,
        "cpu": cpu,
        "peak_mb": max(peak, before) / 1024,
        "out": len(done.stdout),
        "answer": hash(done.stdout),
    }


def whole_processes(posts: Path, week: str, runs: int, tmp: Path) -> None:
    site = tmp / "site"
    site.mkdir()
    (site / "config.yaml").write_text(
        "site: {name: Bench, base_url: 'https://bench.example.com'}\n"
        "sender: {from_name: Bench, from_email: bench@example.com, "
        "postal_address: '1 Bench Road'}\n"
        "timezone: UTC\n"
        f"content: {{posts_dir: '{posts}', cache_dir: cache}}\n"
        "limits: {per_category: null, total: null}\n"
    )
    digest = [sys.executable, "-m", "digest"]
    commands = {
        "select": [*digest, "select", "--week", week],
        "build": [*digest, "build", "--week", week],
        "check": [*digest, "check"],
    }
    env = dict(os.environ)
    rows: dict[str, list[dict[str, float]]] = {"baseline": []}
    outputs: set[int] = set()
    for _ in range(runs):
        rows["baseline"].append(
            whole([sys.executable, "-c", BASELINE_SCRIPT, str(posts), week], site, env)
        )
        for name, command in commands.items():
            shutil.rmtree(site / "cache", ignore_errors=True)
            for state in ("cold", "warm"):
                rows.setdefault(f"{name} {state}", []).append(whole(command, site, env))
            if name == "select":
                outputs.update(int(rows[f"select {s}"][-1]["answer"]) for s in ("cold", "warm"))
    if len(outputs) != 1:  # both ways must print the same answer
        raise SystemExit("digest select printed different answers cold and warm")
    base = statistics.median(r["seconds"] for r in rows["baseline"])
    print(f"\nwhole processes, as a user runs them; median of {runs} runs")
    print(f"{'':50} {'time':>9} {'speed-up':>9} {'CPU':>9}")
    for kind, found in rows.items():
        label = "baseline: python script, frontmatter.load() loop"
        if kind != "baseline":
            name, state = kind.split()
            label = f"{' '.join(commands[name][3:])}, {state}"
        seconds = statistics.median(r["seconds"] for r in found)
        cpu = statistics.median(r["cpu"] for r in found)
        print(f"{label:50} {seconds:8.3f}s {base / seconds:8.1f}× {cpu:8.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--week", default="2026-W30")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only-whole", action="store_true", help="only the whole processes")
    parser.add_argument("--child")
    parser.add_argument("--posts")
    parser.add_argument("--cache")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.posts, args.week, args.cache)
        return

    if not args.only_whole:
        in_process(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus.is_dir():
            posts = args.corpus
        else:
            with tarfile.open(args.corpus) as archive:
                archive.extractall(tmp, filter="data")
            posts = Path(tmp) / "posts"
        whole_processes(posts.resolve(), args.week, args.runs, Path(tmp))


def in_process(args: argparse.Namespace) -> None:
    """The in-process table: load + select alone, against the baseline loop."""
    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus.is_dir():
            posts = args.corpus
        else:
            with tarfile.open(args.corpus) as archive:
                archive.extractall(tmp, filter="data")
            posts = Path(tmp) / "posts"
        count = sum(1 for _ in posts.glob("*.md"))
        rows: dict[str, list[dict[str, float]]] = {
            "baseline": [],
            "serial": [],
            "cold": [],
            "warm": [],
        }
        for i in range(args.runs):
            rows["baseline"].append(run("baseline", posts, args.week, Path(tmp) / "unused"))
            rows["serial"].append(run("serial", posts, args.week, Path(tmp) / f"serial-{i}"))
            cache = Path(tmp) / f"cache-{i}"
            rows["cold"].append(run("digest", posts, args.week, cache))
            rows["warm"].append(run("digest", posts, args.week, cache))

    base = statistics.median(r["seconds"] for r in rows["baseline"])
    print(
        f"load + select {args.week} over {count:,} posts; median of {args.runs} runs, "
        "each in its own process;"
        " speed-up = baseline time / time; peak RSS of the process and of its workers"
    )
    print(f"{'':40} {'time':>9} {'speed-up':>9} {'peak RSS':>9} {'workers':>8} {'in week':>8}")
    labels = {
        "baseline": "baseline: frontmatter.load() every file",
        "serial": "digest, cold, one process",
        "cold": "digest, cold (parses on every core)",
        "warm": "digest, warm (cache)",
    }
    for kind, label in labels.items():
        seconds = statistics.median(r["seconds"] for r in rows[kind])
        peak = max(r["peak_mb"] for r in rows[kind])
        posts_in_week = int(rows[kind][0]["posts"])
        ratio = base / seconds
        workers = max(r["workers_peak_mb"] for r in rows[kind])
        print(
            f"{label:40} {seconds:8.3f}s {ratio:8.1f}× {peak:7.0f}MB {workers:6.0f}MB "
            f"{posts_in_week:8d}"
        )
    parsed = {int(r.get("parsed", -1)) for r in rows["warm"]}
    print(f"files parsed on warm runs: {sorted(parsed)}")


if __name__ == "__main__":
    main()
