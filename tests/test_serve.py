"""digest serve in process (Starlette's TestClient): routes, tokens, CSRF, limits, webhooks."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from digest.audience.subscribers import SubscriberStore
from digest.audience.tokens import make_legacy_token, make_token, signing_key
from digest.config import Config, load_config
from digest.errors import ConfigError
from digest.serve.app import create_app
from digest.serve.security import RateLimiter
from digest.store.database import locate

from .conftest import run_digest
from .helpers import recipient_of

pytestmark = pytest.mark.backends

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
SECRET = "test-server-secret"
PUBLIC = "http://127.0.0.1:8025"
SVIX_KEY = base64.b64encode(b"resend-signing-key-bytes").decode()
MAILGUN_KEY = "mailgun-signing-key"
ONE_CLICK_FORM: dict[str, Any] = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}
SG_PRIVATE = ec.generate_private_key(ec.SECP256R1())
SG_PUBLIC = base64.b64encode(
    SG_PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.seconds = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.seconds


def write_config(site: Path, **serve: Any) -> Config:
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["serve"] = {
        "public_url": PUBLIC,
        "webhooks": {
            "postmark_username": "hooks",
            "postmark_password": "${PM_HOOK_PASSWORD}",
            "resend_secret": "${RESEND_HOOK_SECRET}",
            "sendgrid_public_key": "${SG_HOOK_KEY}",
            "mailgun_signing_key": "${MG_HOOK_KEY}",
        },
        **serve,
    }
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    monkeypatch.setenv("PM_HOOK_PASSWORD", "pm-pass")
    monkeypatch.setenv("RESEND_HOOK_SECRET", "whsec_" + SVIX_KEY)
    monkeypatch.setenv("SG_HOOK_KEY", SG_PUBLIC)
    monkeypatch.setenv("MG_HOOK_KEY", MAILGUN_KEY)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(sample_site: Path, env: None) -> Config:
    return write_config(sample_site, subscribe_burst=50)


@pytest.fixture
def client(config: Config, clock: Clock) -> Iterator[TestClient]:
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as test_client:
        yield test_client


def store(config: Config) -> SubscriberStore:
    return SubscriberStore(locate(config, config.subscribers.database))


def status_of(config: Config, address: str) -> str | None:
    with store(config) as s:
        found = s.get(address)
        return None if found is None else found.status


def add(config: Config, address: str, status: str = "active") -> None:
    with store(config) as s:
        s.add(address, status=status, now=NOW)


def token_for(config: Config, address: str, purpose: str, **kw: Any) -> str:
    with store(config) as s:
        found = s.get(address)
        assert found is not None
        return make_token(purpose, found.handle, signing_key(found.secret, SECRET.encode()), **kw)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def outbox(config: Config) -> list[Path]:
    return sorted((config.path(config.out_dir) / "confirmations" / "outbox").glob("*.eml"))


def read(eml: Path) -> Any:
    return email.message_from_bytes(eml.read_bytes(), policy=policy.default)


def confirm_path(eml: Path) -> str:
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    body = message.get_body(("plain",))
    assert body is not None
    match = re.search(re.escape(PUBLIC) + r"(/confirm/\S+)", body.get_content())
    assert match, "no confirm link in the email"
    return match.group(1)


def subscribe_form(client: TestClient, address: str, **extra: Any) -> Any:
    page = client.get("/subscribe")
    return client.post("/subscribe", data={"email": address, "csrf": csrf_of(page.text), **extra})


# --------------------------------------------------------------------------- subscribe


def test_subscribe_sends_confirmation_and_confirm_activates(
    client: TestClient, config: Config
) -> None:
    response = subscribe_form(client, "Ann@Example.com", categories=["tools", "Health"])
    assert response.status_code == 202
    assert "Check your inbox" in response.text
    assert status_of(config, "ann@example.com") == "pending"
    [eml] = outbox(config)
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["To"] == "ann@example.com"
    assert message["Subject"] == "Confirm your subscription to Field Notes Weekly"
    assert message["From"] == "Field Notes Weekly <weekly@fieldnotes.example.com>"
    with store(config) as s:
        found = s.get("ann@example.com")
        assert found is not None and found.categories == ("Tools", "Healthcare")

    shown = client.get(confirm_path(eml))  # what a mail scanner does: nothing changes
    assert shown.status_code == 200
    assert '<form method="post" action="/confirm/' in shown.text
    assert "Yes, subscribe me" in shown.text
    assert status_of(config, "ann@example.com") == "pending"
    confirmed = client.post(confirm_path(eml))
    assert confirmed.status_code == 200
    assert "You're subscribed" in confirmed.text
    assert status_of(config, "ann@example.com") == "active"
    assert 'href="/preferences/' in confirmed.text


def test_resubscribing_is_idempotent_and_answers_the_same(
    client: TestClient, config: Config
) -> None:
    add(config, "active@example.com", "active")
    add(config, "gone@example.com", "unsubscribed")
    add(config, "bounce@example.com", "bounced")
    add(config, "spam@example.com", "complained")
    answers = set()
    for address in [
        "new@example.com",
        "new@example.com",
        "active@example.com",
        "gone@example.com",
        "bounce@example.com",
        "spam@example.com",
    ]:
        response = client.post("/subscribe", json={"email": address})
        answers.add((response.status_code, response.text))
    assert answers == {(202, '{"status":"ok","message":"Check your inbox to confirm."}')}
    with store(config) as s:
        # the one who left and the bounced one are pending again, to be confirmed
        assert s.counts() == {
            "active": 1,
            "pending": 3,
            "unsubscribed": 0,
            "bounced": 0,
            "complained": 1,
        }
    mailed = {recipient_of(p): read(p)["Subject"] for p in outbox(config)}
    # new (twice, same file), gone and bounced (to come back they must confirm) get a
    # confirmation, the active one a notice with its preferences link; the one who
    # complained gets nothing
    assert mailed == {
        "active@example.com": "You're already subscribed to Field Notes Weekly",
        "bounce@example.com": "Confirm your subscription to Field Notes Weekly",
        "gone@example.com": "Confirm your subscription to Field Notes Weekly",
        "new@example.com": "Confirm your subscription to Field Notes Weekly",
    }
    notice = next(p for p in outbox(config) if recipient_of(p) == "active@example.com")
    assert f"{PUBLIC}/preferences/" in read(notice).get_body(("plain",)).get_content()
    assert status_of(config, "gone@example.com") == "pending"
    gone = next(p for p in outbox(config) if recipient_of(p) == "gone@example.com")
    client.post(confirm_path(gone))
    assert status_of(config, "gone@example.com") == "active"


def test_subscribe_refuses_bad_address_and_missing_csrf(client: TestClient, config: Config) -> None:
    bad = subscribe_form(client, "not-an-address")
    assert bad.status_code == 400
    assert "does not look like an email address" in bad.text
    no_csrf = client.post("/subscribe", data={"email": "x@example.com"})
    assert no_csrf.status_code == 403
    wrong = client.post("/subscribe", data={"email": "x@example.com", "csrf": "0" * 64})
    assert wrong.status_code == 403
    assert status_of(config, "x@example.com") is None
    assert outbox(config) == []


def test_subscribe_is_rate_limited_per_client(sample_site: Path, env: None, clock: Clock) -> None:
    config = write_config(sample_site, subscribe_burst=2, subscribe_per_minute=1)
    with TestClient(create_app(config, clock=clock, monotonic=clock.monotonic)) as client:
        codes = [
            client.post("/subscribe", json={"email": f"r{i}@example.com"}).status_code
            for i in range(3)
        ]
        assert codes == [202, 202, 429]
        limited = client.post("/subscribe", json={"email": "r9@example.com"})
        assert limited.headers["Retry-After"] == "60"
        clock.seconds += 60
        assert client.post("/subscribe", json={"email": "r3@example.com"}).status_code == 202
    assert status_of(config, "r2@example.com") is None


def test_rate_limiter_forgets_oldest_keys() -> None:
    limiter = RateLimiter(60, 1, clock=lambda: 0.0, max_keys=2)
    assert [limiter.allow(k) for k in ("a", "b", "a", "c", "a")] == [True, True, False, True, False]
    assert limiter.allow("b") is True  # b was dropped when c came: a fresh bucket


# --------------------------------------------------------------------------- unsubscribe


def test_one_click_post_unsubscribes_with_empty_200(client: TestClient, config: Config) -> None:
    add(config, "ann@example.com")
    token = token_for(config, "ann@example.com", "unsubscribe")
    response = client.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.content == b""
    assert status_of(config, "ann@example.com") == "unsubscribed"
    with store(config) as s:
        assert [x.email for x in s.iter_active()] == []


def test_get_unsubscribe_only_shows_a_button(client: TestClient, config: Config) -> None:
    add(config, "ann@example.com")
    token = token_for(config, "ann@example.com", "unsubscribe")
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert '<button type="submit" class="danger">Unsubscribe</button>' in page.text
    assert status_of(config, "ann@example.com") == "active"
    done = client.post(f"/unsubscribe/{token}", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200
    assert "You're unsubscribed" in done.text
    assert status_of(config, "ann@example.com") == "unsubscribed"


def test_unsubscribe_form_without_csrf_is_refused(client: TestClient, config: Config) -> None:
    add(config, "ann@example.com")
    token = token_for(config, "ann@example.com", "unsubscribe")
    response = client.post(f"/unsubscribe/{token}", data={"confirm": "yes"})
    assert response.status_code == 403
    assert status_of(config, "ann@example.com") == "active"


@pytest.mark.parametrize("kind", ["forged", "tampered", "wrong-purpose", "other-server", "junk"])
def test_bad_tokens_are_refused(client: TestClient, config: Config, kind: str) -> None:
    add(config, "ann@example.com")
    add(config, "bob@example.com")
    good = token_for(config, "ann@example.com", "unsubscribe")
    version, handle, expiry, signature = good.split(".")
    with store(config) as s:
        ann, bob = s.get("ann@example.com"), s.get("bob@example.com")
    assert ann is not None and bob is not None and handle == ann.handle
    forged = base64.urlsafe_b64encode(b"x" * 32).rstrip(b"=").decode()
    token = {
        "forged": f"{version}.{handle}.{expiry}.{forged}",
        "tampered": f"{version}.{bob.handle}.{expiry}.{signature}",
        "wrong-purpose": token_for(config, "ann@example.com", "preferences"),
        "other-server": make_token(
            "unsubscribe", ann.handle, signing_key(b"k" * 32, b"another-server")
        ),
        "junk": "not-a-token",
    }[kind]
    one_click = client.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 400
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 400
    assert "This link does not work" in page.text
    assert status_of(config, "ann@example.com") == "active"
    assert status_of(config, "bob@example.com") == "active"


def test_expired_confirm_link_is_refused(client: TestClient, config: Config, clock: Clock) -> None:
    client.post("/subscribe", json={"email": "late@example.com"})
    [eml] = outbox(config)
    clock.now = NOW + timedelta(days=2, seconds=1)
    assert client.get(confirm_path(eml)).status_code == 400
    response = client.post(confirm_path(eml))
    assert response.status_code == 400
    assert status_of(config, "late@example.com") == "pending"


def test_tokens_carry_no_address(client: TestClient, config: Config) -> None:
    """No link digest serve mails names the address, in any spelling: a subscriber is
    named by an opaque handle looked up in the store."""
    client.post("/subscribe", json={"email": "ann.lee@example.com"})
    [eml] = outbox(config)
    mailed = read(eml).get_body(("plain",)).get_content()
    assert client.post(confirm_path(eml)).status_code == 200
    client.post("/subscribe", json={"email": "ann.lee@example.com"})  # the active notice
    [eml] = outbox(config)
    mailed += read(eml).get_body(("plain",)).get_content()
    links = re.findall(re.escape(PUBLIC) + r"/(?:confirm|preferences|unsubscribe)/\S+", mailed)
    assert len(links) == 2
    spellings = {"ann.lee@example.com", "ann.lee%40example.com"} | {
        base64.urlsafe_b64encode(b"ann.lee@example.com")[:n].decode() for n in (8, 12, 16)
    }
    assert [link for link in links if any(s in link for s in spellings)] == []
    assert all(link.rsplit("/", 1)[1].startswith("2.") for link in links)


def test_links_mailed_before_handles_keep_working_until_they_expire(
    client: TestClient, config: Config, clock: Clock
) -> None:
    add(config, "ann@example.com", "pending")
    add(config, "bob@example.com")
    with store(config) as s:
        ann, bob = s.get("ann@example.com"), s.get("bob@example.com")
    assert ann is not None and bob is not None
    old_confirm = make_legacy_token(
        "confirm",
        ann.email,
        signing_key(ann.secret, SECRET.encode()),
        expires_at=NOW + timedelta(days=2),
    )
    old_unsubscribe = make_legacy_token(
        "unsubscribe", bob.email, signing_key(bob.secret, SECRET.encode())
    )
    clock.now = NOW + timedelta(days=2, seconds=1)
    assert client.post(f"/confirm/{old_confirm}").status_code == 400  # expired
    clock.now = NOW + timedelta(days=1)
    assert client.post(f"/confirm/{old_confirm}").status_code == 200
    assert status_of(config, "ann@example.com") == "active"
    assert client.post(f"/unsubscribe/{old_unsubscribe}", **ONE_CLICK_FORM).status_code == 200
    assert status_of(config, "bob@example.com") == "unsubscribed"


@pytest.mark.parametrize("change", ["=", "==", "%3D", "%20", "%0A", "%09", "A", "upper"])
def test_tokens_with_a_trailing_equals_or_whitespace_are_refused(
    client: TestClient, config: Config, change: str
) -> None:
    """Token parsing is strict: exactly one spelling of a token is accepted."""
    add(config, "ann@example.com")
    add(config, "bob@example.com")
    good = token_for(config, "ann@example.com", "unsubscribe")
    with store(config) as s:
        bob = s.get("bob@example.com")
    assert bob is not None
    legacy = make_legacy_token("unsubscribe", bob.email, signing_key(bob.secret, SECRET.encode()))
    for token in (good, legacy):
        spelled = token.upper() if change == "upper" else token + change
        response = client.post(f"/unsubscribe/{spelled}", **ONE_CLICK_FORM)
        assert response.status_code in (400, 404), (token, change)
    assert status_of(config, "ann@example.com") == "active"
    assert status_of(config, "bob@example.com") == "active"
    assert client.post(f"/unsubscribe/{good}", **ONE_CLICK_FORM).status_code == 200


# --------------------------------------------------------------------------- preferences


def test_preferences_save_unsubscribe_and_come_back(client: TestClient, config: Config) -> None:
    add(config, "ann@example.com")
    path = f"/preferences/{token_for(config, 'ann@example.com', 'preferences')}"
    page = client.get(path)
    assert page.status_code == 200
    # No choice yet: every section (and the sample site's first newsletter, weekly).
    assert page.text.count(" checked>") == 6 + 1
    saved = client.post(
        path, data={"csrf": csrf_of(page.text), "categories": ["Tools", "Ethics"], "action": "save"}
    )
    assert "Saved." in saved.text
    assert saved.text.count(" checked>") == 2 + 1
    with store(config) as s:
        found = s.get("ann@example.com")
        assert found is not None and found.categories == ("Tools", "Ethics")
    left = client.post(path, data={"csrf": csrf_of(saved.text), "action": "unsubscribe"})
    assert "You're unsubscribed" in left.text
    assert status_of(config, "ann@example.com") == "unsubscribed"
    page = client.get(path)
    back = client.post(
        path, data={"csrf": csrf_of(page.text), "action": "resubscribe", "categories": ["Tools"]}
    )
    assert back.status_code == 200
    assert status_of(config, "ann@example.com") == "active"


def test_preferences_post_needs_csrf(client: TestClient, config: Config) -> None:
    add(config, "ann@example.com")
    path = f"/preferences/{token_for(config, 'ann@example.com', 'preferences')}"
    assert client.post(path, data={"action": "unsubscribe"}).status_code == 403
    assert status_of(config, "ann@example.com") == "active"


# --------------------------------------------------------------------------- webhooks


def svix_headers(
    body: bytes, when: datetime, key: str = SVIX_KEY, message_id: str = "msg_1"
) -> dict[str, str]:
    stamp = str(int(when.timestamp()))
    signed = f"{message_id}.{stamp}.".encode() + body
    signature = base64.b64encode(
        hmac.new(base64.b64decode(key), signed, hashlib.sha256).digest()
    ).decode()
    return {"svix-id": message_id, "svix-timestamp": stamp, "svix-signature": f"v1,{signature}"}


def sendgrid_headers(
    body: bytes, key: ec.EllipticCurvePrivateKey = SG_PRIVATE, when: datetime = NOW
) -> dict[str, str]:
    stamp = str(int(when.timestamp()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        "Content-Type": "application/json",
    }


def mailgun_body(event: dict[str, Any], key: str = MAILGUN_KEY, when: datetime = NOW) -> bytes:
    stamp, token = str(int(when.timestamp())), secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": stamp, "token": token, "signature": signature},
            "event-data": event,
        }
    ).encode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_webhooks_with_good_signatures_suppress(client: TestClient, config: Config) -> None:
    for name in ("pm", "rs", "sg", "mg", "soft"):
        add(config, f"{name}@example.com")
    postmark = json.dumps({"RecordType": "SpamComplaint", "Email": "PM@example.com"}).encode()
    r = client.post("/webhooks/postmark", content=postmark, headers=basic("hooks", "pm-pass"))
    assert r.json() == {"events": 1, "changed": 1}
    resend = json.dumps({"type": "email.bounced", "data": {"to": ["rs@example.com"]}}).encode()
    r = client.post("/webhooks/resend", content=resend, headers=svix_headers(resend, NOW))
    assert r.json() == {"events": 1, "changed": 1}
    sendgrid = json.dumps(
        [
            {"email": "sg@example.com", "event": "unsubscribe"},
            {"email": "soft@example.com", "event": "bounce", "type": "blocked"},
            {"email": "sg@example.com", "event": "open"},
        ]
    ).encode()
    # delivered three hours late (SendGrid and Mailgun retry for hours): still applied
    late = sendgrid_headers(sendgrid, when=NOW - timedelta(hours=3))
    r = client.post("/webhooks/sendgrid", content=sendgrid, headers=late)
    assert r.json() == {"events": 1, "changed": 1}
    mailgun = mailgun_body(
        {"event": "failed", "severity": "permanent", "recipient": "mg@example.com"}
    )
    r = client.post(
        "/webhooks/mailgun", content=mailgun, headers={"Content-Type": "application/json"}
    )
    assert r.json() == {"events": 1, "changed": 1}
    assert [status_of(config, f"{n}@example.com") for n in ("pm", "rs", "sg", "mg", "soft")] == [
        "complained",
        "bounced",
        "unsubscribed",
        "bounced",
        "active",
    ]
    # events only make a status stronger: an unsubscribe never undoes a complaint
    again = json.dumps([{"email": "pm@example.com", "event": "unsubscribe"}]).encode()
    r = client.post("/webhooks/sendgrid", content=again, headers=sendgrid_headers(again))
    assert r.json() == {"events": 1, "changed": 0}
    assert status_of(config, "pm@example.com") == "complained"


def test_webhooks_with_bad_signatures_are_refused(client: TestClient, config: Config) -> None:
    add(config, "ann@example.com")
    complaint = json.dumps({"RecordType": "SpamComplaint", "Email": "ann@example.com"}).encode()
    assert client.post("/webhooks/postmark", content=complaint).status_code == 401
    assert (
        client.post(
            "/webhooks/postmark", content=complaint, headers=basic("hooks", "wrong")
        ).status_code
        == 401
    )
    resend = json.dumps({"type": "email.complained", "data": {"to": ["ann@example.com"]}})
    body = resend.encode()
    wrong_key = base64.b64encode(b"another key").decode()
    assert (
        client.post(
            "/webhooks/resend", content=body, headers=svix_headers(body, NOW, wrong_key)
        ).status_code
        == 401
    )
    stale = svix_headers(body, NOW - timedelta(minutes=6))
    assert client.post("/webhooks/resend", content=body, headers=stale).status_code == 401
    sendgrid = json.dumps([{"email": "ann@example.com", "event": "spamreport"}]).encode()
    other = ec.generate_private_key(ec.SECP256R1())
    assert (
        client.post(
            "/webhooks/sendgrid", content=sendgrid, headers=sendgrid_headers(sendgrid, other)
        ).status_code
        == 401
    )
    signed = sendgrid_headers(sendgrid)
    tampered = sendgrid.replace(b"spamreport", b"unsubscribe")
    assert client.post("/webhooks/sendgrid", content=tampered, headers=signed).status_code == 401
    mailgun = mailgun_body({"event": "complained", "recipient": "ann@example.com"}, "wrong")
    assert client.post("/webhooks/mailgun", content=mailgun).status_code == 401
    # well signed, but captured long ago: refused by the timestamp
    day_ago = NOW - timedelta(hours=25)  # serve.webhooks.max_age is 24 hours
    stale_sg = client.post(
        "/webhooks/sendgrid", content=sendgrid, headers=sendgrid_headers(sendgrid, when=day_ago)
    )
    assert stale_sg.status_code == 401
    assert "too old" in stale_sg.json()["error"]
    complaint = {"event": "complained", "recipient": "ann@example.com"}
    stale_mg = client.post("/webhooks/mailgun", content=mailgun_body(complaint, when=day_ago))
    assert stale_mg.status_code == 401
    assert client.post("/webhooks/brevo", content=b"{}").status_code == 404
    assert status_of(config, "ann@example.com") == "active"


def test_a_repeated_delivery_is_acknowledged_not_applied_again(
    client: TestClient, config: Config
) -> None:
    add(config, "ann@example.com")
    body = json.dumps({"type": "email.bounced", "data": {"to": ["ann@example.com"]}}).encode()
    headers = svix_headers(body, NOW)
    first = client.post("/webhooks/resend", content=body, headers=headers)
    assert first.json() == {"events": 1, "changed": 1}
    # Ann is let back in by hand; the same delivery arriving again must not undo that
    with store(config) as s:
        s.set_status("ann@example.com", "active", cause="owner_force", now=NOW)
    again = client.post("/webhooks/resend", content=body, headers=headers)
    assert again.status_code == 200
    assert again.json() == {"events": 1, "changed": 0, "repeat": True}
    assert status_of(config, "ann@example.com") == "active"
    # a new delivery (another svix-id) about the same address is applied
    other = dict(svix_headers(body, NOW, message_id="msg_2"))
    assert client.post("/webhooks/resend", content=body, headers=other).json()["changed"] == 1


def test_webhook_without_credentials_is_off(sample_site: Path, env: None) -> None:
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["serve"] = {"public_url": PUBLIC}
    path.write_text(yaml.safe_dump(data))
    with TestClient(create_app(load_config(path))) as client:
        response = client.post("/webhooks/mailgun", content=b"{}")
    assert response.status_code == 404
    assert "mailgun_signing_key" in response.json()["error"]


# --------------------------------------------------------------------------- the rest


def test_archive_is_served_without_escaping_it(client: TestClient, config: Config) -> None:
    root = config.path(config.out_dir) / "archive"
    (root / "2026-W47").mkdir(parents=True)
    (root / "index.html").write_text("<h1>All issues</h1>")
    (root / "feed.xml").write_text("<feed/>")
    (root / "2026-W47" / "index.html").write_text("<h1>W47</h1>")
    assert client.get("/archive/").text == "<h1>All issues</h1>"
    assert client.get("/archive/2026-W47/").text == "<h1>W47</h1>"
    feed = client.get("/archive/feed.xml")
    assert feed.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert client.get("/archive/../config.yaml").status_code == 404
    assert client.get("/archive/%2e%2e/config.yaml").status_code == 404


def test_bodies_over_the_limit_get_413(client: TestClient) -> None:
    response = client.post(
        "/subscribe",
        content=b"{" + b" " * 17_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_every_page_sends_security_headers(client: TestClient) -> None:
    response = client.get("/subscribe")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie


class Records(logging.Handler):
    """Keeps every record it is handed, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class ExplodingMailer:
    def __init__(self) -> None:
        self.closed = False

    async def send_async(self, *args: Any) -> None:
        raise RuntimeError("database password is hunter2")

    def close(self) -> None:
        self.closed = True


def test_errors_show_no_stack_trace(config: Config, clock: Clock) -> None:
    app = create_app(config, clock=clock)

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database password is hunter2")

    app.state.handlers.subscriptions.subscribe = explode
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/subscribe", json={"email": "x@example.com"})
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "hunter2" not in response.text and "Traceback" not in response.text


def test_a_mail_that_fails_after_the_answer_is_logged_not_answered(
    config: Config, clock: Clock
) -> None:
    # the serve logger's own handler: what reaches it does not depend on the root logger's
    # handlers and level, which other tests in this process may have changed
    seen = Records()
    logger = logging.getLogger("digest.serve.app")
    assert not logger.disabled, "something in this process disabled digest.serve.app"
    logger.addHandler(seen)
    mailer = ExplodingMailer()
    try:
        app = create_app(config, clock=clock, mailer=mailer)  # type: ignore[arg-type]
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.post("/subscribe", json={"email": "x@example.com"})
    finally:
        logger.removeHandler(seen)
    assert response.status_code == 202  # the mail is sent after the answer
    assert response.json() == {"status": "ok", "message": "Check your inbox to confirm."}
    # (the INFO line that names the links' host is there when digest.serve logs at INFO)
    [failed] = [r for r in seen.records if r.levelno >= logging.WARNING]
    assert (failed.levelname, failed.getMessage()) == ("ERROR", "email to x@example.com not sent")
    assert mailer.closed


@pytest.mark.integration
def test_cli_help(sample_site: Path) -> None:
    help_text = run_digest("serve", "--help", cwd=sample_site)
    assert help_text.returncode == 0
    assert "Examples:" in help_text.stdout and "--port" in help_text.stdout


def test_postmark_subscription_change_and_resend_soft_bounce(
    client: TestClient, config: Config
) -> None:
    add(config, "left@example.com")
    add(config, "soft@example.com")
    change = {
        "RecordType": "SubscriptionChange",
        "Recipient": "left@example.com",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
    }
    r = client.post(
        "/webhooks/postmark", content=json.dumps(change).encode(), headers=basic("hooks", "pm-pass")
    )
    assert r.json() == {"events": 1, "changed": 1}
    soft = json.dumps(
        {
            "type": "email.bounced",
            "data": {"to": ["soft@example.com"], "bounce": {"type": "Transient"}},
        }
    ).encode()
    r = client.post("/webhooks/resend", content=soft, headers=svix_headers(soft, NOW))
    assert r.json() == {"events": 0, "changed": 0}
    assert status_of(config, "left@example.com") == "unsubscribed"
    assert status_of(config, "soft@example.com") == "active"


def test_a_page_template_can_be_overridden(sample_site: Path, env: None) -> None:
    mine = sample_site / "my-templates" / "serve"
    mine.mkdir(parents=True)
    (mine / "check_inbox.html.j2").write_text(
        '{% extends "base.html.j2" %}{% block content %}<h1>Look for our email</h1>{% endblock %}'
    )
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["email"]["templates_dir"] = "my-templates"
    path.write_text(yaml.safe_dump(data))
    config = write_config(sample_site)
    with TestClient(create_app(config)) as client:
        response = client.post("/subscribe", json={"email": "x@example.com"})
        assert response.status_code == 202
        page = client.get("/subscribe")
        csrf = csrf_of(page.text)
        answer = client.post("/subscribe", data={"email": "y@example.com", "csrf": csrf})
    assert "<h1>Look for our email</h1>" in answer.text
    assert "Field Notes Weekly" in answer.text  # the built-in base still wraps it


def test_streamed_bodies_over_the_limit_get_413(client: TestClient, config: Config) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"email": "big@example.com", "name": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    response = client.post(
        "/subscribe", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert status_of(config, "big@example.com") is None


def test_an_allowed_site_may_post_to_subscribe(sample_site: Path, env: None, clock: Clock) -> None:
    config = write_config(sample_site, allowed_origins=["https://fieldnotes.example.com/"])
    with TestClient(create_app(config, clock=clock)) as client:
        blog_form = client.post(
            "/subscribe",
            data={"email": "reader@example.com"},
            headers={"Origin": "https://fieldnotes.example.com"},
        )
        assert blog_form.status_code == 202
        elsewhere = client.post(
            "/subscribe",
            data={"email": "victim@example.com"},
            headers={"Origin": "https://evil.example.net"},
        )
        assert elsewhere.status_code == 403
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        ok = client.options(
            "/subscribe", headers={"Origin": "https://fieldnotes.example.com", **preflight}
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://fieldnotes.example.com"
        refused = client.options(
            "/subscribe", headers={"Origin": "https://evil.example.net", **preflight}
        )
        assert "access-control-allow-origin" not in refused.headers
        other_route = client.options(
            "/preferences/x", headers={"Origin": "https://fieldnotes.example.com", **preflight}
        )
        assert "access-control-allow-origin" not in other_route.headers
    assert status_of(config, "reader@example.com") == "pending"
    assert status_of(config, "victim@example.com") is None


def test_allowed_origins_must_be_origins(sample_site: Path, env: None) -> None:
    problem = r"serve\.allowed_origins: 'blog\.example\.com/path' is not an origin"
    with pytest.raises(ConfigError, match=problem):
        write_config(sample_site, allowed_origins=["blog.example.com/path"])


def test_csrf_cookie_is_host_prefixed_over_https(config: Config) -> None:
    with TestClient(create_app(config), base_url="https://news.example.com") as client:
        page = client.get("/subscribe")
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("__Host-digest_csrf=")
        assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
        answer = client.post(
            "/subscribe", data={"email": "tls@example.com", "csrf": csrf_of(page.text)}
        )
    assert answer.status_code == 202


def test_logs_never_hold_tokens(
    client: TestClient, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    add(config, "ann@example.com")
    token = token_for(config, "ann@example.com", "unsubscribe")
    caplog.set_level("DEBUG")
    client.post(f"/unsubscribe/{token}", data={"no": "csrf"})
    client.get(f"/preferences/{token}")  # wrong purpose
    client.post(f"/unsubscribe/{token}", **ONE_CLICK_FORM)
    ours = [r for r in caplog.records if r.name.startswith("digest")]
    text = "\n".join(r.getMessage() for r in ours)
    assert "refused a form post without a valid CSRF token: /unsubscribe/…" in text
    assert "refused a link on /preferences/…" in text
    assert "ann@example.com is now unsubscribed" in text
    assert token not in text
    assert token.split(".")[1] not in text and token.split(".")[-1] not in text
