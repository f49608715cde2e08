"""Strangers rewrite a pending subscription: a repeat subscribe for a pending address, by
JSON or by form, in any spelling of the address, changes nothing its owner chose (name,
sections, newsletters, language, timezone, consent); it only mails the confirmation again,
within the mailbox's limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from digest.audience import newsletters, records
from digest.audience.rhythm import Rhythms
from digest.config import Config
from digest.serve.app import create_app
from tests.test_serve import SECRET, Clock, csrf_of, outbox, store, write_config


@pytest.fixture
def config(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    for name in ("PM_HOOK_PASSWORD", "RESEND_HOOK_SECRET", "SG_HOOK_KEY", "MG_HOOK_KEY"):
        monkeypatch.setenv(name, "unused")
    return write_config(sample_site, subscribe_burst=50, mail_per_address=10)


@pytest.fixture
def client(config: Config) -> Iterator[TestClient]:
    clock = Clock()
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as test_client:
        yield test_client


def _stored(config: Config, address: str) -> dict[str, Any]:
    with store(config) as s:
        found = s.get(address)
        assert found is not None
        record = records.get_record(s.connection, address)
        assert record is not None and record.consent is not None
        return {
            "status": found.status,
            "name": found.name,
            "categories": found.categories,
            "language": found.language,
            "zone": Rhythms(s).of(found).timezone,
            "newsletters": newsletters.receiving(s, address, config),
            "consent": (record.consent.at, record.consent.origin, record.consent.method),
        }


def test_strangers_cannot_rewrite_a_pending_subscription_in_any_field_or_spelling(
    client: TestClient, config: Config
) -> None:
    owner = client.post(
        "/subscribe",
        json={
            "email": "ann.lee@gmail.com",
            "name": "Ann",
            "categories": ["Tools"],
            "newsletters": ["weekly"],
            "language": "en",
            "timezone": "Europe/Berlin",
        },
        headers={"Origin": "http://127.0.0.1:8025"},
    )
    assert owner.status_code == 202
    before = _stored(config, "ann.lee@gmail.com")
    assert before["zone"] == "Europe/Berlin" and before["name"] == "Ann"
    stranger = {
        "name": "Mallory",
        "categories": ["Health"],
        "newsletters": ["links"],
        "language": "de",
        "timezone": "Asia/Tokyo",
    }
    for spelling in ("ann.lee@gmail.com", "ANN.LEE@gmail.com", " ann.lee@gmail.com "):
        answer = client.post(
            "/subscribe",
            json={"email": spelling, **stranger},
            headers={"Origin": "https://evil.example", "Accept-Language": "fr"},
        )
        assert answer.status_code == 202
    page = client.get("/subscribe", headers={"Accept-Language": "de"})
    form = {"email": "Ann.Lee@gmail.com", "csrf": csrf_of(page.text), **stranger}
    assert client.post("/subscribe", data=form).status_code == 202
    assert _stored(config, "ann.lee@gmail.com") == before
    # each request re-sent the confirmation (one outbox file, the owner's mailbox), each
    # counted against that one mailbox's limit
    assert len(outbox(config)) == 1
    with store(config) as s:
        assert s.connection.execute("SELECT COUNT(*) FROM service_mail").fetchone()[0] == 5
