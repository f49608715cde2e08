"""digest serve keeps consent records, welcomes confirmed subscribers, and respects erasure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from digest.audience import erasures, records
from digest.audience.lifecycle import erasure_key, forget
from digest.config import Config
from digest.schedule.scheduler import Schedule
from digest.serve.app import create_app

from .test_serve import (
    PUBLIC,
    Clock,
    confirm_path,
    csrf_of,
    outbox,
    read,
    status_of,
    store,
    write_config,
)
from .test_serve import env as serve_env

env = serve_env  # the same environment fixture as test_serve's


@pytest.fixture
def clock() -> Clock:
    return Clock()


LATER = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
CONSENT = "Send me Field Notes Weekly every Monday. I can unsubscribe at any time."


@pytest.fixture
def config(sample_site: Path, env: None) -> Config:
    return write_config(sample_site, subscribe_burst=50, consent_text=CONSENT, welcome=True)


@pytest.fixture
def client(config: Config, clock: Clock) -> Iterator[TestClient]:
    app = create_app(
        config,
        clock=clock,
        monotonic=clock.monotonic,
        next_issue=Schedule.from_config(config).next_after,
    )
    with TestClient(app, base_url="http://127.0.0.1:8025", client=("203.0.113.77", 5000)) as c:
        yield c


def welcomes(config: Config) -> list[Path]:
    return sorted((config.path(config.out_dir) / "welcome" / "outbox").glob("*.eml"))


def consent_of(config: Config, address: str) -> records.Record:
    with store(config) as s:
        found = records.get_record(s.connection, address)
    assert found is not None
    return found


def test_the_form_shows_the_consent_text_and_the_record_keeps_it(
    client: TestClient, config: Config, clock: Clock
) -> None:
    page = client.get("/subscribe")
    assert CONSENT in page.text
    response = client.post(
        "/subscribe",
        data={"email": "ann@example.com", "csrf": csrf_of(page.text)},
        headers={"Origin": "http://127.0.0.1:8025", "Referer": "http://127.0.0.1:8025/subscribe"},
    )
    assert response.status_code == 202
    pending = consent_of(config, "ann@example.com")
    assert pending.source == "serve"
    assert pending.confirmed_at is None
    assert pending.consent == records.Consent(
        at="2026-11-23T09:00:00Z",
        ip="203.0.113.0/24",
        origin="http://127.0.0.1:8025",
        text=CONSENT,
        method="form",
    )
    [eml] = outbox(config)
    clock.now = clock.now.replace(minute=17)
    # Opening the link (what a mail scanner does) confirms nothing and records nothing.
    assert client.get(confirm_path(eml)).status_code == 200
    assert consent_of(config, "ann@example.com").confirmed_at is None
    assert welcomes(config) == []
    assert client.post(confirm_path(eml)).status_code == 200
    confirmed = consent_of(config, "ann@example.com")
    assert confirmed.confirmed_at == "2026-11-23T09:17:00Z"
    assert confirmed.consent is not None and confirmed.consent.confirm_ip == "203.0.113.0/24"
    assert [(e["status"], e["at"]) for e in confirmed.history] == [
        ("pending", "2026-11-23T09:00:00Z"),
        ("active", "2026-11-23T09:17:00Z"),
    ]


def test_welcome_email_after_confirmation_names_the_next_issue(
    client: TestClient, config: Config
) -> None:
    client.post("/subscribe", json={"email": "bo@example.com", "name": "Bo"})
    [confirmation] = outbox(config)
    client.post(confirm_path(confirmation))
    [welcome] = welcomes(config)
    assert read(welcome)["Subject"] == "Welcome to Field Notes Weekly"
    text = read(welcome).get_body(("plain",)).get_content()
    # The sample site sends at 0 9 * * MON, Europe/Berlin; now is Monday 23 Nov, 10:00 there.
    assert "The next issue comes on Monday 30 November 2026 at 09:00 (Europe/Berlin)." in text
    assert f"{PUBLIC}/preferences/" in text
    assert "Hello Bo," in text
    # Confirming again is no new welcome.
    welcome.unlink()
    client.post(confirm_path(confirmation))
    assert welcomes(config) == []


def test_no_welcome_unless_configured(sample_site: Path, env: None, clock: Clock) -> None:
    config = write_config(sample_site, subscribe_burst=50)
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as c:
        c.post("/subscribe", json={"email": "cy@example.com"})
        [confirmation] = outbox(config)
        c.post(confirm_path(confirmation))
    assert [read(p)["Subject"] for p in outbox(config)] == [
        "Confirm your subscription to Field Notes Weekly"
    ]
    assert welcomes(config) == []
    assert status_of(config, "cy@example.com") == "active"


def test_hashed_client_addresses(sample_site: Path, env: None, clock: Clock) -> None:
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["subscribers"]["client_address"] = "hash"
    path.write_text(yaml.safe_dump(data))
    config = write_config(sample_site, subscribe_burst=50)
    assert config.subscribers.client_address == "hash"
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025", client=("198.51.100.9", 1)) as c:
        c.post("/subscribe", json={"email": "di@example.com"})
    consent = consent_of(config, "di@example.com").consent
    assert consent is not None and consent.ip is not None
    assert consent.ip.startswith("hmac-sha256:") and len(consent.ip) == len("hmac-sha256:") + 32
    assert "198.51.100" not in consent.ip


def test_an_erased_address_comes_back_only_by_confirming(
    client: TestClient, config: Config
) -> None:
    client.post("/subscribe", json={"email": "eve@example.com"})
    client.post(confirm_path(outbox(config)[0]))
    key = erasure_key(config)
    assert key is not None
    with store(config) as s:
        forget(s, "eve@example.com", now=LATER, erasure_key=key)
        assert erasures.forgotten_at(s.connection, "eve@example.com", key) is not None
    # A subscribe request makes a pending row with a new consent record, nothing more.
    client.post("/subscribe", json={"email": "eve@example.com"})
    assert status_of(config, "eve@example.com") == "pending"
    with store(config) as s:
        assert erasures.forgotten_at(s.connection, "eve@example.com", key) is not None
    newest = max(outbox(config), key=lambda p: p.stat().st_mtime_ns)
    client.post(confirm_path(newest))
    assert status_of(config, "eve@example.com") == "active"
    with store(config) as s:
        assert erasures.forgotten_at(s.connection, "eve@example.com", key) is None


def test_strangers_cannot_rewrite_a_pending_subscription(
    client: TestClient, config: Config, clock: Clock
) -> None:
    """A repeat subscribe for a pending address re-sends the confirmation and changes
    nothing stored: the owner's confirm keeps the owner's name, sections and consent."""
    owner = client.post(
        "/subscribe",
        json={"email": "ann@example.com", "name": "Ann", "categories": ["tools"]},
        headers={"Origin": "http://127.0.0.1:8025"},
    )
    assert owner.status_code == 202
    before = consent_of(config, "ann@example.com")
    clock.now = clock.now.replace(minute=5)
    stranger = client.post(
        "/subscribe",
        json={"email": "Ann@Example.com", "name": "Mallory", "categories": ["health"]},
        headers={"Origin": "https://evil.example"},
    )
    assert stranger.status_code == 202
    [eml] = outbox(config)  # the confirmation went again, to the same mailbox
    assert client.post(confirm_path(eml)).status_code == 200
    after = consent_of(config, "ann@example.com")
    assert (after.name, after.categories, after.status) == ("Ann", ("Tools",), "active")
    assert after.consent is not None and before.consent is not None
    assert after.consent.origin == "http://127.0.0.1:8025"
    assert after.consent.at == before.consent.at == "2026-11-23T09:00:00Z"
    with store(config) as s:
        assert s.connection.execute("SELECT COUNT(*) FROM service_mail").fetchone()[0] == 2


@pytest.mark.parametrize("left_by", ["unsubscribe", "complaint"])
def test_a_confirmation_link_does_not_reactivate_after_leaving(
    client: TestClient, config: Config, clock: Clock, left_by: str
) -> None:
    """A confirm only moves ``pending`` to ``active``: the confirmation link, still within
    its lifetime, does not bring back someone who unsubscribed or complained since."""
    assert client.post("/subscribe", json={"email": "ann@example.com"}).status_code == 202
    [eml] = outbox(config)
    assert client.post(confirm_path(eml)).status_code == 200
    left = "unsubscribed" if left_by == "unsubscribe" else "complained"
    with store(config) as s:
        cause = "serve_unsubscribe" if left_by == "unsubscribe" else "webhook_complaint"
        s.set_status("ann@example.com", left, cause=cause, now=clock.now)
    clock.now = clock.now.replace(hour=20)  # well within confirm_ttl
    client.post(confirm_path(eml))
    assert status_of(config, "ann@example.com") == left


def test_mail_bombing_a_gmail_inbox_suppressions_compare_mailboxes(
    client: TestClient, config: Config
) -> None:
    """A mailbox that complained under one spelling is not mailed under another (Gmail dots,
    googlemail.com, a +tag, case), and the per-mailbox limit counts every spelling."""
    with store(config) as s:
        s.add("ann.lee@gmail.com", now=LATER)
        s.set_status("ann.lee@gmail.com", "complained", cause="webhook_complaint", now=LATER)
    for spelling in ("annlee@gmail.com", "A.nnLee+x@googlemail.com", "ANN.LEE@GMAIL.COM"):
        assert client.post("/subscribe", json={"email": spelling}).status_code == 202
    assert outbox(config) == []
    assert status_of(config, "annlee@gmail.com") is None  # nothing stored for the stranger
    limit = config.serve.mail_per_address
    # the suppressed spellings are counted too (the same work for every status)
    with store(config) as s:
        before = s.connection.execute("SELECT COUNT(*) FROM service_mail").fetchone()[0]
    for n in range(limit + 5):
        spelling = "bob.x" if n % 2 else "b.o.b.x"
        client.post("/subscribe", json={"email": f"{spelling}+{n}@googlemail.com"})
    with store(config) as s:
        sent = s.connection.execute("SELECT COUNT(*) FROM service_mail").fetchone()[0]
    assert sent - before == limit
