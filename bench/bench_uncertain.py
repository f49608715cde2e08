"""Uncertain messages per 10,000 when the provider accepts a request and the answer is lost.

For each provider, ``digest send`` (the library's ``send_issue``, in this process) sends to
N subscribers while the emulator drops the connection after accepting a share of the
requests (``drop_after_rate``, seeded). Two runs per provider, in the same process:

* baseline, *without reconciliation*: the provider is not asked what it accepted, so each
  unanswered request leaves its messages ``uncertain`` (held: never counted as sent, never
  sent twice);
* *with reconciliation* (digest's default where the API allows it): Postmark's outbound
  message search and Mailgun's events log say which of them arrived; the rest are sent again
  in the same run. Brevo and Resend drop repeats by idempotency key, so both runs resend
  safely and leave none. SendGrid (the activity API is a paid add-on, 6 requests/minute) and
  SES (no such API) cannot be asked: both runs are the same.

Printed per provider: uncertain per 10,000 left at the end of the run, both ways, their
ratio, messages lost and duplicated (counted at the emulator), and the run's seconds.

    python bench/bench_uncertain.py [--recipients 10000] [--npm-recipients 2000] [--rate 0.05]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.audience.imports.importer import import_file  # noqa: E402
from digest.audience.subscribers import Categories, SubscriberStore  # noqa: E402
from digest.config import load_config  # noqa: E402
from digest.delivery.providers.registry import make_provider  # noqa: E402
from digest.delivery.send import send_issue  # noqa: E402
from tests.emulators.faultproxy import MatrixProxy  # noqa: E402
from tests.emulators.node import run_resend_local, run_ses_local  # noqa: E402
from tests.emulators.providers import run_emulator  # noqa: E402

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
KEY = "bench-key"
OPTIONS: dict[str, dict[str, Any]] = {
    "postmark": {"token": "${BENCH_KEY}"},
    "sendgrid": {"api_key": "${BENCH_KEY}"},
    "mailgun": {"api_key": "${BENCH_KEY}", "domain": "mg.example.com"},
    "brevo": {"api_key": "${BENCH_KEY}"},
    "resend": {"api_key": "${BENCH_RESEND_KEY}"},
    "ses": {"access_key_id": "${BENCH_KEY}", "secret_access_key": "${BENCH_KEY}"},
}


@contextlib.contextmanager
def server(provider: str, rate: float) -> Iterator[tuple[str, Any]]:
    """(url, received), ``received()`` counting each address the server accepted, with
    drop-after-acceptance at ``rate`` of the send requests."""
    if provider in ("resend", "ses"):
        runner = run_resend_local if provider == "resend" else run_ses_local
        with runner() as emu:
            proxy = MatrixProxy(provider, emu.url)
            proxy.set_faults(drop_after_rate=rate)
            try:
                if provider == "resend":
                    yield proxy.url, lambda: Counter(to for e in emu.sent() for to in e["to"])
                else:
                    yield (
                        proxy.url,
                        lambda: Counter(to for e in emu.sent() for to in e["destination"]["to"]),
                    )
            finally:
                proxy.close()
    else:
        with run_emulator(provider, key=KEY, drop_after_rate=rate, seed=11) as emu:
            emu.set_suppressions(bounced=[], spam=[], unsubscribed=[])
            yield emu.url, lambda: Counter(emu.counts())


def one_run(provider: str, n: int, rate: float, reconcile: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder, server(provider, rate) as (url, received):
        site = Path(folder)
        shutil.copytree(ROOT / "content", site / "content")
        (site / "content/posts/broken-front-matter.md").unlink(missing_ok=True)
        data = yaml.safe_load((ROOT / "config.yaml").read_text())
        data["provider"] = {
            "name": provider,
            "base_url": url,
            **OPTIONS[provider],
            "max_retries": 2,
            "retry_base_delay": 0.01,
            "reconcile_after": 0,
            **({"region": "eu-west-1"} if provider == "ses" else {}),
        }
        data["send"] = {"batch_size": 100}
        (site / "config.yaml").write_text(yaml.safe_dump(data))
        config = load_config(site / "config.yaml")
        addresses = [f"b{i:05d}@example.com" for i in range(n)]
        csv = site / "people.csv"
        csv.write_text("email,name\n" + "".join(f"{a},R {i}\n" for i, a in enumerate(addresses)))
        with SubscriberStore(config.path(config.subscribers.database)) as store:
            import_file(store, csv, Categories.from_config(config), now=NOW, erasure_key=None)
        transport = make_provider(config)
        if not reconcile:
            transport.can_look_up = False  # type: ignore[misc]
        started = time.perf_counter()
        report = send_issue(config, now=NOW, provider=transport, sleep=lambda _: None)
        seconds = time.perf_counter() - started
        with contextlib.closing(sqlite3.connect(config.path(config.ledger.database))) as db:
            uncertain = {
                row[0]
                for row in db.execute("SELECT email FROM deliveries WHERE state = 'uncertain'")
            }
        got = Counter({a: c for a, c in received().items() if a.startswith("b")})
        held = len(uncertain)
        return {
            "uncertain": held,
            "per_10k": held * 10_000 / n,
            # lost: neither arrived nor reported uncertain
            "lost": sum(1 for a in addresses if a not in got and a not in uncertain),
            "duplicates": sum(c - 1 for c in got.values() if c > 1),
            "sent": report.sent,
            "seconds": seconds,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--npm-recipients", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=0.05, help="share of requests dropped")
    parser.add_argument("providers", nargs="*", default=list(OPTIONS))
    args = parser.parse_args()
    os.environ["BENCH_KEY"] = KEY
    os.environ["BENCH_RESEND_KEY"] = "re_" + KEY
    print(
        f"drop after acceptance on {args.rate:.0%} of send requests, batches of 100; "
        "uncertain messages left per 10,000 at the end of one run"
    )
    print(
        f"{'provider':<9} {'n':>6} {'without':>8} {'with':>8} {'ratio':>6} "
        f"{'lost':>5} {'dupes':>6} {'s w/o':>6} {'s with':>7}"
    )
    for provider in args.providers:
        n = args.npm_recipients if provider in ("resend", "ses") else args.recipients
        without = one_run(provider, n, args.rate, reconcile=False)
        with_ = one_run(provider, n, args.rate, reconcile=True)
        ratio = with_["per_10k"] / without["per_10k"] if without["per_10k"] else 1.0
        print(
            f"{provider:<9} {n:>6} {without['per_10k']:>8.0f} {with_['per_10k']:>8.0f} "
            f"{ratio:>6.2f} {without['lost'] + with_['lost']:>5} "
            f"{without['duplicates'] + with_['duplicates']:>6} "
            f"{without['seconds']:>6.1f} {with_['seconds']:>7.1f}",
            flush=True,
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (this process): {peak:.0f} MB")


if __name__ == "__main__":
    main()
