"""`digest serve` on two hosts (two processes) sharing one PostgreSQL database: the subscribe
load test split over both loses and doubles nothing; a client's subscribe allowance and the
webhook replay memory hold across both."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from .test_serve_http import (
    MAILGUN_KEY,
    SECRET,
    ServeProcess,
    _bench,
    mailgun,
    make_site,
    status,
    store,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("site_backend", ["postgresql"], indirect=True),
]

ENV = {"DIGEST_SECRET": SECRET, "MG_KEY": MAILGUN_KEY}


@pytest.fixture
def hosts(sample_site: Path, request: pytest.FixtureRequest) -> Iterator[list[ServeProcess]]:
    make_site(sample_site, **request.param)
    started = [ServeProcess(sample_site, ENV), ServeProcess(sample_site, ENV)]
    yield started
    for process in started:
        assert process.stop(), process.stderr()


def _drive(bench: Any, url: str, plan: list[tuple[str, str]], result: Any) -> None:
    asyncio.run(bench._drive(url, plan, 25, result))


@pytest.mark.parametrize("hosts", [{"subscribe_burst": 10_000_000}], indirect=True)
def test_subscribe_load_over_two_hosts_loses_and_doubles_nothing(
    hosts: list[ServeProcess], sample_site: Path
) -> None:
    bench = _bench()
    archive = sample_site / "out" / "archive"
    archive.mkdir(parents=True)
    (archive / "index.html").write_text("<h1>Past issues</h1>")
    n = 300
    before = bench.store_counts(sample_site)
    tokens = bench.seed(sample_site, n, SECRET)
    plans: list[list[tuple[str, str]]] = [[], []]
    for i in range(n):
        for plan in plans:  # every address subscribes on both hosts at about the same time
            plan.append(("subscribe", f"joiner{i}@example.com"))
        plans[i % 2].append(("unsubscribe", tokens[i]))  # each reader leaves through one
        plans[(i + 1) % 2].append(("archive", "/archive/"))
    results = [bench.LoadResult(requests=len(plan), seconds=0.0) for plan in plans]
    threads = [
        threading.Thread(target=_drive, args=(bench, host.url, plan, result))
        for host, plan, result in zip(hosts, plans, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.errors for r in results] == [[], []]
    counts = bench.store_counts(sample_site)
    assert counts == {
        **before,
        "active": before["active"],  # the seeded readers are all unsubscribed again
        "pending": before["pending"] + n,  # each joiner once, though they asked twice
        "unsubscribed": before["unsubscribed"] + n,
    }


@pytest.mark.parametrize(
    "hosts",
    [{"subscribe_burst": 3, "subscribe_per_minute": 1, "trusted_proxies": ["127.0.0.1"]}],
    indirect=True,
)
def test_limits_and_replay_memory_hold_across_hosts(
    hosts: list[ServeProcess], sample_site: Path
) -> None:
    first, second = (httpx.Client(base_url=h.url, timeout=30) for h in hosts)
    with first, second:

        def subscribe(http: httpx.Client, n: int, client: str) -> int:
            return http.post(
                "/subscribe",
                json={"email": f"c{n}@example.com"},
                headers={"X-Forwarded-For": client},
            ).status_code

        # one allowance for the client, wherever its requests land
        answers = [subscribe(h, n, "203.0.113.9") for n, h in enumerate([first, second, first])]
        assert answers == [202, 202, 202]
        refused = second.post(
            "/subscribe",
            json={"email": "c9@example.com"},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert subscribe(second, 10, "203.0.113.10") == 202  # another client is not affected

        with store(sample_site) as s:
            s.add("ann@example.com", now=datetime.now(timezone.utc))
        delivery = mailgun({"event": "complained", "recipient": "ann@example.com"}, MAILGUN_KEY)
        applied = first.post("/webhooks/mailgun", content=delivery)
        assert applied.status_code == 200 and applied.json() == {"events": 1, "changed": 1}
        repeat = second.post("/webhooks/mailgun", content=delivery)  # a retry to the other host
        assert repeat.status_code == 200 and repeat.json()["repeat"] is True
    assert status(sample_site, "ann@example.com") == "complained"
