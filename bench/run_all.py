"""Run every benchmark in this folder, one after another: ``python bench/run_all.py``.

Each benchmark prints its figures beside a baseline measured in the same run, with the ratio
and peak memory. Pass names to run only some: ``python bench/run_all.py load compose``;
``--large`` adds the 100,000-subscriber sends to bench_send.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    large = "--large" in argv
    names = [a for a in argv if not a.startswith("--")]
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem.removeprefix('bench_')} ({script.name})", flush=True)
        started = time.perf_counter()
        extra = ["--large"] if large and script.stem == "bench_send" else []
        code = subprocess.call([sys.executable, str(script), *extra], cwd=HERE.parent)
        print(f"--- {script.name}: exit {code}, {time.perf_counter() - started:.0f}s", flush=True)
        if code:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
