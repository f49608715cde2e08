"""Importing and exporting a large list, as whole processes, beside a plain-script baseline.

    python bench/bench_imports.py [--rows 50000] [--profile]

Writes a Mailchimp "subscribed members" export of ``--rows`` rows (and an unsubscribed file
of a tenth of that), then times, each in its own process with its own peak memory:

- baseline import: the loop any script would write: ``csv.DictReader``, email-validator on
  each address, one INSERT per row into a fresh SQLite table, one transaction;
- ``digest subscribers import`` of both files into an empty store, then the same again
  (nothing changes: the idempotent re-run), and a ``--dry-run``;
- baseline export: SELECT every row and ``csv.writer`` it;
- ``digest subscribers export --format csv`` and ``--format json``.

With ``--profile``, where an import's time goes: the subscribed file imported again in
a fresh process, each stage timed in CPU seconds (start-up; reading the file; the
platform's columns; the address check, email-validator as the baseline runs it; the rest
of each row's checks; the store's lookups and inserts, with their triggers), beside the
baseline's own parts; then the same import under cProfile, the functions where its time
goes (own time, and time including callees).
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEADER = (
    "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,"
    "CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,"
    "NOTES,TAGS"
)
UNSUB_HEADER = (
    "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,"
    "CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,UNSUB_TIME,"
    "UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER,LEID,EUID,NOTES,TAGS"
)

BASELINE_IMPORT = """
import csv, sqlite3, sys
from email_validator import validate_email, EmailNotValidError
db = sqlite3.connect(sys.argv[2], isolation_level=None)
db.execute("CREATE TABLE s (email TEXT PRIMARY KEY, name TEXT, status TEXT, at TEXT)")
db.execute("BEGIN")
for path, status in ((sys.argv[1], "active"), (sys.argv[3], "unsubscribed")):
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            try:
                email = validate_email(row["Email Address"], check_deliverability=False)
            except EmailNotValidError:
                continue
            db.execute("INSERT OR REPLACE INTO s VALUES (?, ?, ?, ?)", (
                email.normalized.lower(), row["First Name"] + " " + row["Last Name"],
                status, row["OPTIN_TIME"]))
db.execute("COMMIT")
"""

BASELINE_EXPORT = """
import csv, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
w = csv.writer(sys.stdout)
for row in db.execute("SELECT * FROM s"):
    w.writerow(row)
"""


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    subscribed = folder / "subscribed_members_export.csv"
    with subscribed.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\n")
        for i in range(rows):
            out.write(
                f"reader{i:07d}@example.com,Reader,{i},2,2024-03-01 09:15:00,198.51.100.{i % 250},"
                f"2024-03-01 09:20:41,,,,,,,,,2024-03-01 09:20:41,{i},e{i},,\n"
            )
    unsubscribed = folder / "unsubscribed_members_export.csv"
    with unsubscribed.open("w", encoding="utf-8", newline="") as out:
        out.write(UNSUB_HEADER + "\n")
        for i in range(rows, rows + rows // 10):
            out.write(
                f"gone{i:07d}@example.com,Gone,{i},1,2023-02-12 10:54:27,,2023-02-12 10:54:27,"
                f",,,,,,,,2024-07-23 12:19:27,Week 30,c1,Too many,,{i},e{i},,\n"
            )
    return subscribed, unsubscribed


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float, int]:
    """(seconds, CPU seconds, peak MB, exit code) of one process."""
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=sink, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode:
        assert process.stderr is not None
        sys.stderr.write(process.stderr.read().decode(errors="replace")[-2000:])
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode


STAGES = """
import sys, time
clock = time.process_time
started = clock()
from datetime import datetime, timezone
from pathlib import Path
from digest.audience import records
from digest.audience.imports import importer
from digest.audience.imports.incoming import to_incoming
from digest.audience.imports.platforms import detect
from digest.audience.imports.table import fold, read_table
from digest.audience.subscribers import Categories, SubscriberStore, normalise_email
imported = clock() - started
path, store_path = Path(sys.argv[1]), Path(sys.argv[2])
spent = {}
def timed(name, work):
    began = clock()
    done = work()
    spent[name] = spent.get(name, 0.0) + clock() - began
    return done
table = timed("read the file (csv, cells made safe)", lambda: read_table(path))
platform = detect(table.headers, path=path)
kind = platform.kind({fold(h) for h in table.headers})
raw = timed("the platform's columns (dates, names)",
            lambda: [platform.convert(r, kind) for _, r, _ in table.rows])
timed("the address check (email-validator)", lambda: [normalise_email(r["email"]) for r in raw])
address = lambda ip: records.stored_address(ip, "truncate", None)
checked = timed("every row's checks, all told",
                lambda: [to_incoming(r, platform.name, Categories(), address) for r in raw])
store = SubscriberStore(store_path)
insert = SubscriberStore.insert_imported
def counted(self, rows, *, now):
    return timed("inserts (SQLite, arrival triggers)", lambda: insert(self, rows, now=now))
SubscriberStore.insert_imported = counted
total = timed("import_file, all told", lambda: importer.import_file(
    store, path, Categories(), now=datetime.now(timezone.utc), erasure_key=None))
import json
print(json.dumps({"modules the import loads": imported, **spent}))
"""


def stages(folder: Path, env: dict[str, str], subscribed: Path, startup: float) -> None:
    """Where the import's CPU time goes, stage by stage (each stage timed once, alone)."""
    args = [sys.executable, "-c", STAGES, str(subscribed), str(folder / "stages.sqlite")]
    done = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, check=True)
    spent: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    total = spent["import_file, all told"]
    validator = spent["the address check (email-validator)"]
    rows_all = spent["every row's checks, all told"]
    parts = {
        "start-up: a whole process importing an empty file": startup,
        "  of which the modules the import loads": spent["modules the import loads"],
        "read the file (csv, cells made safe)": spent["read the file (csv, cells made safe)"],
        "the platform's columns (dates, names)": spent["the platform's columns (dates, names)"],
        "the address check (email-validator, as the baseline)": validator,
        "the rest of each row's checks (consent, names, ...)": rows_all - validator,
        "inserts (SQLite, arrival triggers)": spent["inserts (SQLite, arrival triggers)"],
    }
    parts["the rest (lookups, records, report)"] = total - sum(
        v for k, v in parts.items() if not k.startswith(("start-up", "  of which"))
    )
    print(f"where an import of {subscribed.name} goes (CPU seconds, each stage alone):")
    for name, seconds in parts.items():
        print(f"  {name:<56} {seconds:6.2f} s")


def profile(folder: Path, env: dict[str, str], subscribed: Path) -> None:
    """The subscribed file imported into a fresh store under cProfile: where the time goes."""
    (folder / "profiled.yaml").write_text(
        (folder / "config.yaml").read_text().replace("subs.sqlite", "profiled.sqlite")
    )
    stats = folder / "import.prof"
    args = [sys.executable, "-m", "cProfile", "-o", str(stats), "-m", "digest"]
    args += ["--config", str(folder / "profiled.yaml"), "subscribers", "import", str(subscribed)]
    subprocess.run(args, cwd=folder, env=env, stdout=subprocess.DEVNULL, check=True)
    for order in ("tottime", "cumulative"):
        print(f"profile of the import, by {order} (cProfile slows every call alike):")
        pstats.Stats(str(stats), stream=sys.stdout).sort_stats(order).print_stats(18)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--profile", action="store_true", help="print where an import goes")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "config.yaml").write_text(
            "site: {name: Bench, base_url: 'https://bench.example.com'}\n"
            "sender: {from_name: Bench, from_email: bench@example.com, "
            "postal_address: '1 Bench Road'}\n"
            "subscribers: {database: subs.sqlite}\n"
        )
        subscribed, unsubscribed = write_files(folder, options.rows)
        total = options.rows + options.rows // 10
        env = {**os.environ, "DIGEST_SECRET": "bench-secret", "DIGEST_CONFIG": ""}
        digest = [sys.executable, "-m", "digest", "--config", str(folder / "config.yaml")]
        py = [sys.executable, "-c"]
        results: list[tuple[str, float, float, float, int]] = []
        cpu: dict[str, float] = {}

        def run(name: str, args: list[str]) -> float:
            seconds, used, peak, code = timed(args, folder, env)
            results.append((name, seconds, used, peak, code))
            cpu[name] = used
            return seconds

        base_import = run(
            "baseline import (csv + validate + INSERT)",
            [*py, BASELINE_IMPORT, str(subscribed), str(folder / "base.sqlite"), str(unsubscribed)],
        )
        first = run(
            "digest subscribers import (both files)",
            [*digest, "subscribers", "import", str(subscribed)],
        )
        first += run(
            "  … the unsubscribed file",
            [*digest, "subscribers", "import", str(unsubscribed)],
        )
        again = run(
            "digest subscribers import again (no change)",
            [*digest, "subscribers", "import", str(subscribed)],
        )
        dry = run(
            "digest subscribers import --dry-run",
            [*digest, "subscribers", "import", str(unsubscribed), "--dry-run"],
        )
        base_export = run(
            "baseline export (SELECT + csv.writer)", [*py, BASELINE_EXPORT, "base.sqlite"]
        )
        export_csv = run(
            "digest subscribers export --format csv",
            [*digest, "subscribers", "export", "--format", "csv"],
        )
        export_json = run("digest subscribers export (json)", [*digest, "subscribers", "export"])
        if options.profile:
            empty = folder / "empty.csv"
            empty.write_text(HEADER + "\n")
            (folder / "empty.yaml").write_text(
                (folder / "config.yaml").read_text().replace("subs.sqlite", "empty.sqlite")
            )
            startup = min(
                timed([*digest[:-1], str(folder / "empty.yaml"), "subscribers", "import",
                       str(empty)], folder, env)[1]
                for _ in range(3)
            )  # fmt: skip
            stages(folder, env, subscribed, startup)
            profile(folder, env, subscribed)
    print(f"{total} subscribers ({options.rows} subscribed + {options.rows // 10} unsubscribed)")
    for name, seconds, used, peak, code in results:
        flag = "" if code == 0 else f"  EXIT {code}"
        print(f"  {name:<46} {seconds:7.2f} s  CPU {used:6.2f} s  peak {peak:6.0f} MB{flag}")
    print(f"  import ratio (digest / baseline):            {first / base_import:5.2f}x")
    # CPU time is what a loaded machine does not change much: the ratio to trust there
    digest_cpu = cpu["digest subscribers import (both files)"] + cpu["  … the unsubscribed file"]
    base_cpu = cpu["baseline import (csv + validate + INSERT)"]
    print(f"  import CPU ratio (digest / baseline):        {digest_cpu / base_cpu:5.2f}x")
    print(f"  re-import ratio (digest / baseline import):  {again / base_import:5.2f}x")
    print(f"  dry run of the small file / its real import: {dry:.2f} s")
    print(f"  export csv ratio (digest / baseline):        {export_csv / base_export:5.2f}x")
    print(f"  export json ratio (digest / baseline):       {export_json / base_export:5.2f}x")
    print(f"  rows per second, digest import:              {total / first:,.0f}")
    return 1 if any(code for *_, code in results) else 0


if __name__ == "__main__":
    sys.exit(main())
