"""Load + select one week of the real corpus: cold cache, warm cache, and a baseline.

    python bench/bench_load.py [--corpus PATH_TO_TARBALL_OR_FOLDER] [--week 2026-W30] [--runs 3]

The baseline, measured in the same run on the same files, is the plain loop any script would
write: ``frontmatter.load()`` on every file, then keep the posts dated in the week. Each
measurement runs in its own process so that its peak memory (max RSS) is its own.

Two tables: the work alone, timed inside each process (``in-process``), and whole processes
as a user runs them (``whole process``: start-up, imports, config, output): the baseline
loop as a script, once in one process and once on every core (``multiprocessing.Pool``),
and ``digest build --week ...``, ``digest check`` and ``digest select --week ...`` against
a config file, each cold (no post cache) and warm (run again, nothing changed: the post
cache answers for every file). Each whole process's CPU time (its own and its workers') is
printed beside its wall time: on a loaded machine the wall time says more about the
neighbours than about digest. The ``progress`` column counts the progress lines a command
wrote on stderr (a cold check must show it is alive), and the last line sets the cold
check against the loop on every core.
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

def day(path):
    value = frontmatter.load(path).get("date")
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])

if __name__ == "__main__":
    year, number = (int(x) for x in sys.argv[2].split("-W"))
    paths = sorted(Path(sys.argv[1]).glob("*.md"))
    if sys.argv[3:] == ["pool"]:  # the same loop on every core
        from multiprocessing import Pool
        with Pool() as pool:
            days = pool.map(day, paths, chunksize=256)
    else:
        days = map(day, paths)
    print(sum(1 for d in days if d.isocalendar()[:2] == (year, number)))
"""


def whole(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """One whole process: wall time, CPU time (with its workers'), its peak RSS, and how
    many progress lines it wrote on stderr."""
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
        "progress": sum(1 for line in done.stderr.splitlines() if " posts: " in line),
    }


def print_table(title: str, rows: dict[str, list[dict[str, float]]], columns: str) -> None:
    """Medians of each row's runs, with the speed-up against the first row (the baseline):
    ``columns`` names what follows time and speed-up (cpu, peak, workers, week, progress)."""
    median = statistics.median
    base = median(r["seconds"] for r in next(iter(rows.values())))
    shown = {
        "cpu": ("CPU", lambda found: f"{median(r['cpu'] for r in found):8.2f}s"),
        "peak": ("peak RSS", lambda found: f"{max(r['peak_mb'] for r in found):7.0f}MB"),
        "workers": ("workers", lambda f: f"{max(r['workers_peak_mb'] for r in f):6.0f}MB"),
        "week": ("in week", lambda found: f"{int(found[0]['posts']):8d}"),
        "progress": ("progress", lambda found: f"{int(found[0]['progress']):8d}"),
    }
    wanted = [shown[c] for c in columns.split()]
    print(title)
    print(f"{'':52} {'time':>9} {'speed-up':>9} " + " ".join(f"{h:>9}" for h, _ in wanted))
    for label, found in rows.items():
        seconds = median(r["seconds"] for r in found)
        cells = " ".join(f"{cell(found):>9}" for _, cell in wanted)
        print(f"{label:52} {seconds:8.3f}s {base / seconds:8.1f}× {cells}")


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
        "build --week": [*digest, "build", "--week", week],
        "check": [*digest, "check"],
        "select --week": [*digest, "select", "--week", week],
    }
    loop = [sys.executable, "-c", BASELINE_SCRIPT, str(posts), week]
    env = dict(os.environ)
    rows: dict[str, list[dict[str, float]]] = {
        "baseline: python script, frontmatter.load() loop": [],
        "baseline: the same loop on every core (Pool.map)": [],
    }
    outputs: set[int] = set()
    for _ in range(runs):
        for label, command in zip(rows, (loop, [*loop, "pool"]), strict=False):
            rows[label].append(whole(command, site, env))
        for name, command in commands.items():
            shutil.rmtree(site / "cache", ignore_errors=True)
            for state in ("cold", "warm"):
                rows.setdefault(f"digest {name}, {state}", []).append(whole(command, site, env))
        outputs.update(
            int(rows[f"digest select --week, {s}"][-1]["answer"]) for s in ("cold", "warm")
        )
    if len(outputs) != 1:  # both ways must print the same answer
        raise SystemExit("digest select printed different answers cold and warm")
    print_table(
        f"\nwhole processes, as a user runs them; median of {runs} runs; speed-up against the "
        "plain loop; progress: lines on stderr",
        rows,
        "cpu progress",
    )
    pooled = statistics.median(
        r["seconds"] for r in rows["baseline: the same loop on every core (Pool.map)"]
    )
    cold = statistics.median(r["seconds"] for r in rows["digest check, cold"])
    print(f"cold check against the loop on every core: {pooled / cold:.2f}× (≥ 1: as fast)")


def unpacked(corpus: Path, tmp: Path) -> Path:
    """The posts folder: the corpus itself, or its tarball unpacked into ``tmp``."""
    if corpus.is_dir():
        return corpus.resolve()
    with tarfile.open(corpus) as archive:
        archive.extractall(tmp, filter="data")
    return (tmp / "posts").resolve()


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
    with tempfile.TemporaryDirectory() as tmp:
        posts = unpacked(args.corpus, Path(tmp))
        if not args.only_whole:
            in_process(args, posts, Path(tmp))
        whole_processes(posts, args.week, args.runs, Path(tmp))


def in_process(args: argparse.Namespace, posts: Path, tmp: Path) -> None:
    """The in-process table: load + select alone, against the baseline loop."""
    count = sum(1 for _ in posts.glob("*.md"))
    rows: dict[str, list[dict[str, float]]] = {
        "baseline: frontmatter.load() every file": [],
        "digest, cold, one process": [],
        "digest, cold (parses on every core)": [],
        "digest, warm (cache)": [],
    }
    baseline, serial, cold, warm = rows.values()
    for i in range(args.runs):
        baseline.append(run("baseline", posts, args.week, tmp / "unused"))
        serial.append(run("serial", posts, args.week, tmp / f"serial-{i}"))
        cold.append(run("digest", posts, args.week, tmp / f"cache-{i}"))
        warm.append(run("digest", posts, args.week, tmp / f"cache-{i}"))
    print_table(
        f"load + select {args.week} over {count:,} posts; median of {args.runs} runs, "
        "each in its own process; speed-up = baseline time / time; peak RSS of the process "
        "and of its workers",
        rows,
        "peak workers week",
    )
    parsed = {int(r.get("parsed", -1)) for r in warm}
    print(f"files parsed on warm runs: {sorted(parsed)}")


if __name__ == "__main__":
    main()
