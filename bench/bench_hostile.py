"""Hostile input costs what ordinary input costs: alias bombs and bounded JSON.

    python bench/bench_hostile.py [--posts 1000]

1. Loading ``--posts`` files that each hold a nine-level "billion laughs" (as the title, the
   tags or an unused key), beside the baseline of loading as many ordinary posts of the
   same size, each in its own process (peak memory is its own max RSS).
2. Reading a subscribe body with :func:`digest.serve.jsonbody.loads_bounded`, beside plain
   ``json.loads`` (the baseline), and what a 7,000-level body costs each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--json-rounds", type=int, default=100_000)
    args = parser.parse_args()
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
