"""Resend drops a repeated Idempotency-Key for 24 hours only: an uncertain row whose
attempt is older than that (less an hour's margin) is never resent on the key's word,
even with ``--resend-uncertain``, unless the operator forces it (over httpx.MockTransport).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.config import load_config
from digest.delivery.ledger import SENT, UNCERTAIN, Ledger
from digest.delivery.providers import registry
from digest.delivery.send import send_issue
from digest.delivery.send_report import SendReport
from digest.errors import ProviderError
from digest.store.database import locate
from tests.sink.site import NOW, WEEK, configure
from tests.test_exactly_once_state import CachedComposer

pytestmark = pytest.mark.slow  # each file builds the sample issue once: seconds of work

COMPOSER = CachedComposer()


class Resend:
    """Resend's batch endpoint: a 500 while ``failing`` (which Resend does not document
    as "not taken", so the rows are uncertain), else accepted, a repeated key answered
    with the first answer and nothing accepted (as its idempotency document says)."""

    def __init__(self) -> None:
        self.failing = True
        self.accepted: Counter[str] = Counter()
        self.answers: dict[str, Any] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.failing:
            return httpx.Response(500, json={"name": "internal_server_error", "message": "x"})
        key = request.headers["Idempotency-Key"]
        if key not in self.answers:
            emails = json.loads(request.content)
            self.accepted.update(
                e["to"][0] if isinstance(e["to"], list) else e["to"] for e in emails
            )
            self.answers[key] = {"data": [{"id": f"re-{key}-{i}"} for i in range(len(emails))]}
        return httpx.Response(200, json=self.answers[key])


def send(site: Path, api: Resend, *, hours_later: float = 0.0, **options: Any) -> SendReport:
    config = load_config(site / "config.yaml")
    provider = registry.get_provider_class("resend").from_config(
        config, client=httpx.Client(transport=httpx.MockTransport(api))
    )
    later = timedelta(hours=hours_later)
    return send_issue(
        config,
        now=NOW,
        week=WEEK,
        provider=provider,
        composer=COMPOSER,
        clock=lambda: datetime.now(timezone.utc) + later,
        **options,
    )


def ledger_counts(site: Path) -> dict[str, int]:
    config = load_config(site / "config.yaml")
    with Ledger(locate(config, config.ledger.database)) as ledger:
        return ledger.counts(WEEK)


def uncertain_rows(site: Path, api: Resend) -> list[str]:
    """A first run whose only request got a 500: its rows uncertain, nothing accepted."""
    addresses = configure(site, "resend", url="https://api.test", n=3, batch=3, retries=0)
    try:
        send(site, api)
    except ProviderError as exc:
        assert exc.status == 500
    assert ledger_counts(site)[UNCERTAIN] == 3
    api.failing = False
    return addresses


def test_within_the_day_the_same_key_settles_them(sample_site: Path) -> None:
    api = Resend()
    addresses = uncertain_rows(sample_site, api)
    report = send(sample_site, api, hours_later=22.5)
    assert report.reconciled == {"resent-same-key": 3}
    assert api.accepted == Counter(addresses)
    assert ledger_counts(sample_site)[SENT] == 3


def test_past_23_hours_they_stay_uncertain_even_with_resend_uncertain(
    sample_site: Path, caplog: Any
) -> None:
    api = Resend()
    uncertain_rows(sample_site, api)
    report = send(sample_site, api, hours_later=23.5, resend_uncertain=True)
    assert api.accepted == Counter()
    assert ledger_counts(sample_site)[UNCERTAIN] == 3
    assert report.reconciled == {"held-key-expired": 3}
    assert report.exit_code == 0  # as for any uncertain row held for the operator
    assert not report.complete
    said = [r.getMessage() for r in caplog.records if "keeps idempotency keys" in r.message]
    assert said[0] == (
        "reader-0000@example.com: resend keeps idempotency keys 24 h and this message's "
        "attempt was 23.5 h ago: a resend could arrive as a second copy, so it stays "
        "uncertain; `digest send --resend-uncertain --force` sends it again anyway"
    )
    assert len(said) == 3


def test_the_operator_can_force_them_out(sample_site: Path) -> None:
    api = Resend()
    addresses = uncertain_rows(sample_site, api)
    report = send(sample_site, api, hours_later=30, resend_uncertain=True, force=True)
    assert report.reconciled == {"resent-same-key": 3}
    assert api.accepted == Counter(addresses)
    assert ledger_counts(sample_site)[SENT] == 3
