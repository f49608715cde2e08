"""Throughput of each email API provider against its loopback emulator.

For every provider: messages/s, CPU seconds per message (this process: building, encoding,
parsing) and bytes uploaded per recipient, for digest's batched sender beside the naive
loop (one request per message, one at a time) measured in the same run; then, with the
emulator enforcing R requests/s, the messages/s reached as a fraction of R × batch size.

    python bench/bench_providers.py [--recipients 5000] [--naive 300] [--rate 20]

The email is the sample site's real issue (about 29 KB of HTML). Peak memory is the
process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.config import load_config  # noqa: E402
from digest.delivery.providers import registry  # noqa: E402
from digest.delivery.providers.base import Batch, Recipient, Result, idempotency_key  # noqa: E402
from digest.email.build import build_issue  # noqa: E402
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
HEADERLESS = {"postmark", "mailgun"}  # no rate-limit headers: the limit is configured


def composed_issue() -> Any:
    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder)
        shutil.copytree(ROOT / "content", site / "content")
        shutil.copy(ROOT / "config.yaml", site / "config.yaml")
        config = load_config(site / "config.yaml")
        return config, build_issue(config, now=NOW, write=False).composed


def recipients(n: int) -> list[Recipient]:
    out = []
    for i in range(n):
        email = f"b{i:06d}@example.com"
        values = {
            "name": f"Reader {i}",
            "email": email,
            "unsubscribe_url": f"https://fieldnotes.example.com/unsubscribe/{random.randbytes(24).hex()}",
            "preferences_url": f"https://fieldnotes.example.com/preferences/{random.randbytes(24).hex()}",
        }
        out.append(Recipient(i + 1, email, values, f"<{i}@bench>"))
    return out


def make(name: str, url: str, config: Any, **extra: Any) -> Any:
    cls = registry.get_provider_class(name)
    settings = cls.Settings.model_validate({"base_url": url, **OPTIONS[name], **extra})
    return cls(settings, config)


def run(
    provider: Any, composed: Any, people: list[Recipient], batch_size: int, concurrency: int
) -> dict[str, float]:
    batches = []
    for start in range(0, len(people), batch_size):
        part = tuple(people[start : start + batch_size])
        key = idempotency_key(
            composed.issue_id, f"bench{time.time_ns()}", [r.subscriber_id for r in part]
        )
        batches.append(Batch(composed.issue_id, "all", composed, part, key, lambda *a, **k: None))

    def one(batch: Batch) -> int:
        return sum(1 for e in provider.send(batch) if isinstance(e, Result) and e.state == "sent")

    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(concurrency) as pool:
        sent = sum(pool.map(one, batches))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = provider.stats
    return {
        "sent": sent,
        "seconds": wall,
        "rate": sent / wall,
        "cpu_ms": 1000 * cpu / sent,
        "bytes": stats.bytes_sent / max(1, stats.recipients),
        "requests": stats.requests,
    }


@contextlib.contextmanager
def emulator(name: str, **faults: Any) -> Iterator[str]:
    if name == "resend":
        from tests.emulators.node import run_resend_local

        with run_resend_local() as emu:
            yield emu.url
    elif name == "ses":
        from tests.emulators.node import run_ses_local

        with run_ses_local() as emu:
            yield emu.url
    else:
        with run_emulator(name, key=KEY, **faults) as emu:
            yield emu.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--naive", type=int, default=300, help="messages for the naive loop")
    parser.add_argument("--rate", type=float, default=10, help="R, requests/s, for the limit run")
    parser.add_argument("--providers", default="postmark,sendgrid,mailgun,brevo,resend,ses")
    args = parser.parse_args()
    os.environ["BENCH_KEY"] = KEY
    os.environ["BENCH_RESEND_KEY"] = "re_" + KEY
    config, composed = composed_issue()
    people = recipients(args.recipients)
    print(
        f"issue {composed.issue_id}: {len(composed.html)} bytes of HTML; "
        f"{args.recipients} recipients (naive loop: {args.naive})"
    )
    header = (
        f"{'provider':9} {'mode':8} {'msgs/s':>9} {'CPU ms/msg':>10} {'bytes/rcpt':>10} "
        f"{'requests':>8} {'speed-up':>8}"
    )
    print(header)
    for name in args.providers.split(","):
        cls = registry.get_provider_class(name)
        with emulator(name) as url:
            naive = run(make(name, url, config), composed, people[: args.naive], 1, 1)
            fast = run(
                make(name, url, config), composed, people, cls.max_batch, cls.default_concurrency
            )
        for mode, r in (("naive", naive), ("batched", fast)):
            ratio = r["rate"] / naive["rate"]
            print(
                f"{name:9} {mode:8} {r['rate']:9.0f} {r['cpu_ms']:10.3f} {r['bytes']:10.0f} "
                f"{r['requests']:8.0f} {ratio:7.1f}x"
            )
    print(f"\nrate limit: emulator allows R = {args.rate:g} requests/s; batch size 100")
    for name in args.providers.split(","):
        if name in ("resend", "ses"):
            continue  # the npm emulators cannot enforce a rate limit
        extra = {"max_requests_per_second": args.rate} if name in HEADERLESS else {}
        with emulator(name, rate_limit=args.rate) as url:
            provider = make(name, url, config, **extra)
            people_r = recipients(int(args.rate * 100 * 8))  # about 8 s at the limit
            r = run(provider, composed, people_r, 100, 4)
        target = args.rate * 100
        how = "configured" if name in HEADERLESS else "from headers"
        print(
            f"{name:9} {r['rate']:8.0f} msgs/s = {r['rate'] / target:6.1%} of R x 100 "
            f"({how}; {r['requests']:.0f} requests, {provider.stats.retries} retried)"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory (max RSS of this process): {peak:.0f} MB")


if __name__ == "__main__":
    main()
