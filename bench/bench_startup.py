"""Start-up as users feel it: whole processes of light commands beside a bare baseline.

    python bench/bench_startup.py [--runs 15]

The baseline, measured in the same run, is a process that only imports click and PyYAML
(what any click tool reading YAML pays before doing anything). Each command runs as
``python -m digest ...`` on the bundled sample site, as a whole process; the table gives the
median wall time of ``--runs`` runs, its ratio to the baseline, the peak RSS, and how many
modules the process imported (``-X importtime`` lines).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 5):  # 5: nothing to send, for status on an empty ledger
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.decode()}")
    return seconds


def modules(command: list[str], cwd: Path, env: dict[str, str]) -> int:
    done = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return sum(1 for line in done.stderr.splitlines() if line.startswith("import time:")) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python = sys.executable
    commands = {
        "baseline: python -c 'import click, yaml'": [python, "-c", "import click, yaml"],
        "digest --help": [python, "-m", "digest", "--help"],
        "digest schedule next": [python, "-m", "digest", "schedule", "next"],
        "digest status --week 2026-W47": [python, "-m", "digest", "status", "--week", "2026-W47"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        shutil.copytree(ROOT / "content", site / "content")
        shutil.copy(ROOT / "config.yaml", site / "config.yaml")
        env = {**os.environ, "HOME": tmp, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        times: dict[str, list[float]] = {label: [] for label in commands}
        peaks: dict[str, float] = dict.fromkeys(commands, 0.0)
        for command in commands.values():
            one(command, site, env)  # warm the file system cache and .pyc files
        for _ in range(args.runs):  # interleaved, so that load on the machine hits all alike
            for label, command in commands.items():
                times[label].append(one(command, site, env))
        for label, command in commands.items():
            peaks[label] = peak_of(command, site, env)
        counts = {label: modules(command, site, env) for label, command in commands.items()}
    base = statistics.median(next(iter(times.values())))
    print(f"whole processes; median of {args.runs} runs; ratio = time / baseline")
    print(f"{'':42} {'time':>8} {'ratio':>6} {'peak RSS':>9} {'modules':>8}")
    for label in commands:
        seconds = statistics.median(times[label])
        print(
            f"{label:42} {seconds * 1000:6.0f}ms {seconds / base:6.2f} "
            f"{peaks[label]:7.0f}MB {counts[label]:8d}"
        )


def peak_of(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Peak RSS of one run, measured in a child that runs the command (RUSAGE_CHILDREN of
    this process only ever grows)."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip())


if __name__ == "__main__":
    main()
