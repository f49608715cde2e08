"""Local-time waves on PostgreSQL, sent by `digest run --workers 4` and SIGKILLed 10 times:
0 lost, 0 duplicated.

20,000 readers spread evenly over 50 timezones get one weekly issue at 09:00 on their own
clock: every wave of it is sent by `digest run --newsletter weekly --workers 4 --now
WAVE+1min` as its own process tree (one run, four worker processes), on a throwaway
PostgreSQL cluster (tests/pg.py, the server's default durability) with the outbox as the
provider. In 10 waves picked at random the whole tree is SIGKILLed once the outbox has
taken a random part of that wave (counted as the messages are renamed into the outbox, so
every kill lands mid-send), and the same command is run again to completion, as the next
cron call would. The bench prints the messages in the outbox against the readers and the
ledger (lost: a reader without one; duplicated: a message beyond one per reader) and the
time, beside the same waves sent without kills in the same run (the baseline; skipped
with --no-baseline). The routine is tests/wavekills.py, which the CI-sized test
(tests/test_waves_kills.py: 2,000 readers, 10 zones, 3 kills) runs too.

    python bench/bench_waves_kill.py                       # 20,000 readers, 50 zones
    python bench/bench_waves_kill.py --readers 2000 --zones 10 --kills 3
    python bench/run_all.py waves_kill                     # not run by run_all otherwise

A run on this project's 2-core machine, shared with other work (without the baseline)::

    $ python bench/bench_waves_kill.py --no-baseline
    python 3.11.7, 2 CPUs; 20,000 readers over 50 zones; PostgreSQL; `digest run --workers 4`
    with kills:
      wave 2/32 (400 readers): SIGKILL after 300 messages
      ... (eight more)
      wave 26/32 (400 readers): SIGKILL after 100 messages
    with kills 20,000 readers, 32 waves, 42 runs (0 resumed after a safe stop), 10 SIGKILLs:
    20,000 messages in the outbox, lost 0, duplicated 0, ledger {'sent': 20000}, sent
    without a file 0; 396.4 s
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.config import load_config  # noqa: E402
from tests.pg import Cluster  # noqa: E402
from tests.wavekills import ZONES, Outcome, add_readers, send_waves_through_kills  # noqa: E402


def one_run(
    folder: Path, cluster: Cluster, *, readers: int, zones: int, kills: int, workers: int
) -> Outcome:
    site = folder / f"site-{kills}"
    site.mkdir()
    shutil.copytree(ROOT / "content", site / "content")
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["database"] = cluster.database()
    data["schedule"] = {"cron": "0 9 * * MON", "grace": "6h", "local_time": "09:00"}
    data["send"] = {"batch_size": 50, "lease": "5s"}
    (site / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(site / "config.yaml")
    add_readers(config, readers, ZONES[:zones])
    return send_waves_through_kills(
        site,
        config,
        readers=readers,
        workers=workers,
        kills=kills,
        seed=26,
        env={"HOME": str(folder), "DIGEST_SECRET": secrets.token_hex(16)},
        say=lambda line: print(f"  {line}", flush=True),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--zones", type=int, default=50, choices=range(1, len(ZONES) + 1))
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--no-baseline", action="store_true", help="Only the run with kills.")
    parser.add_argument("--dir", default=None, help="Where the site and cluster go (tmp).")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.readers:,} readers "
        f"over {args.zones} zones; PostgreSQL; `digest run --workers {args.workers}`",
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        folder = Path(name)
        cluster = Cluster(durable=True)
        try:
            runs = [("with kills", args.kills)]
            if not args.no_baseline:
                runs.insert(0, ("no kills", 0))
            results: dict[str, Outcome] = {}
            for label, kills in runs:
                print(f"{label}:", flush=True)
                result = one_run(
                    folder,
                    cluster,
                    readers=args.readers,
                    zones=args.zones,
                    kills=kills,
                    workers=args.workers,
                )
                results[label] = result
                base = results.get("no kills")
                ratio = f" (x{result.seconds / base.seconds:.2f})" if base else ""
                print(f"{label:<10} {result.line()}{ratio}", flush=True)
        finally:
            cluster.stop()
    bad = [r for r in results.values() if r.lost or r.duplicated or r.sent_without_file]
    short = results["with kills"].kills < args.kills
    if short:
        print(f"only {results['with kills'].kills} of {args.kills} kills landed mid-wave")
    return 1 if bad or short else 0


if __name__ == "__main__":
    sys.exit(main())
