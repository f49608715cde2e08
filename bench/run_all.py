"""Run every benchmark in this folder, one after another: ``python bench/run_all.py``.

Each benchmark prints its figures beside a baseline measured in the same run, with the ratio
and peak memory. Pass names to run only some: ``python bench/run_all.py load compose``.
The store benchmark (1,000,000 subscribers, SQLite vs PostgreSQL, 1 and 4 senders; about an
hour on 2 cores, with the outbox drained as it is written) runs only when asked:
``python bench/run_all.py --db`` (or by name, ``db``).
``--large`` adds the 100,000-subscriber sends to bench_send.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


HEAVY = {"db", "waves_kill"}  # run only when named, or with --db


def main(argv: list[str]) -> int:
    with_db = "--db" in argv
    large = "--large" in argv
    argv = [a for a in argv if a not in ("--db", "--large")]
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    else:
        scripts = [s for s in scripts if with_db or s.stem.removeprefix("bench_") not in HEAVY]
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
