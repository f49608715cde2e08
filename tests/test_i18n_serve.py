"""The subscriber's side in their language: the browser's Accept-Language on the subscribe
page, the confirmation in that language, and the preferences page's select."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from digest.config import Config
from digest.serve.app import create_app
from tests.helpers import recipient_of
from tests.test_serve import (
    SECRET,
    Clock,
    confirm_path,
    csrf_of,
    outbox,
    store,
    token_for,
    write_config,
)

GERMAN = {"Accept-Language": "fr-CH, de-CH;q=0.9, en;q=0.5"}


@pytest.fixture
def site(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    for name in ("PM_HOOK_PASSWORD", "RESEND_HOOK_SECRET", "SG_HOOK_KEY", "MG_HOOK_KEY"):
        monkeypatch.setenv(name, "x")
    return write_config(sample_site, subscribe_burst=50)


def language_of(config: Config, address: str) -> str:
    with store(config) as s:
        found = s.get(address)
        assert found is not None
        return found.language


def test_a_german_browser_subscribes_in_german(site: Config) -> None:
    clock = Clock()
    app = create_app(site, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        page = client.get("/subscribe", headers=GERMAN)
        assert '<html lang="de">' in page.text
        assert "<h1>Field Notes Weekly per E-Mail bekommen</h1>" in page.text
        assert '<input type="hidden" name="language" value="de">' in page.text
        english = client.get("/subscribe")
        assert '<html lang="en">' in english.text
        assert "<h1>Get Field Notes Weekly by email</h1>" in english.text

        answer = client.post(
            "/subscribe",
            data={"email": "ute@example.com", "csrf": csrf_of(page.text), "language": "de"},
        )
        assert answer.status_code == 202
        assert "Sehen Sie in Ihr Postfach" in answer.text
        # A JSON subscribe with no language field takes the browser's.
        client.post("/subscribe", json={"email": "max@example.com"}, headers=GERMAN)
        client.post("/subscribe", json={"email": "amy@example.com"})
        client.post("/subscribe", json={"email": "eve@example.com", "language": "xx-<b>"})
    assert language_of(site, "ute@example.com") == "de"
    assert language_of(site, "max@example.com") == "de"
    assert language_of(site, "amy@example.com") == ""
    assert language_of(site, "eve@example.com") == ""
    mails = {recipient_of(p) + ".eml": p for p in outbox(site)}
    ute = email.message_from_bytes(mails["ute@example.com.eml"].read_bytes(), policy=policy.default)
    assert ute["Subject"] == "Bestätigen Sie Ihr Abonnement von Field Notes Weekly"
    body = ute.get_body(("plain",))
    assert body is not None
    assert "Bitte bestätigen Sie, dass ute@example.com jede Woche Field Notes Weekly" in (
        body.get_content()
    )
    amy = email.message_from_bytes(mails["amy@example.com.eml"].read_bytes(), policy=policy.default)
    assert amy["Subject"] == "Confirm your subscription to Field Notes Weekly"

    app = create_app(site, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        # The subscriber's own pages follow their language, whatever the browser says.
        shown = client.get(
            confirm_path(mails["ute@example.com.eml"]), headers={"Accept-Language": "en"}
        )
        assert "Ja, ich möchte abonnieren" in shown.text
        path = f"/preferences/{token_for(site, 'ute@example.com', 'preferences')}"
        prefs = client.get(path)
        assert "<h1>Ihre Einstellungen</h1>" in prefs.text
        assert '<option value="de" selected>Deutsch</option>' in prefs.text
        assert '<option value="en">Englisch</option>' in prefs.text
        saved = client.post(
            path, data={"csrf": csrf_of(prefs.text), "action": "save", "language": "en"}
        )
        assert saved.status_code == 200
        assert "<h1>Your preferences</h1>" in saved.text and "Saved." in saved.text
        assert '<option value="en" selected>English</option>' in saved.text
    assert language_of(site, "ute@example.com") == ""


def test_the_welcome_names_the_next_issue_in_the_readers_language(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.schedule.scheduler import Schedule

    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    for name in ("PM_HOOK_PASSWORD", "RESEND_HOOK_SECRET", "SG_HOOK_KEY", "MG_HOOK_KEY"):
        monkeypatch.setenv(name, "x")
    config = write_config(sample_site, subscribe_burst=50, welcome=True)
    clock = Clock()
    app = create_app(
        config,
        clock=clock,
        monotonic=clock.monotonic,
        next_issue=Schedule.from_config(config).next_after,
    )
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        client.post("/subscribe", json={"email": "bo@example.com", "name": "Bo"}, headers=GERMAN)
        [confirmation] = outbox(config)
        client.post(confirm_path(confirmation))
    [welcome] = sorted((config.path(config.out_dir) / "welcome" / "outbox").glob("*.eml"))
    message = email.message_from_bytes(welcome.read_bytes(), policy=policy.default)
    assert message["Subject"] == "Willkommen bei Field Notes Weekly"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert text.startswith("Hallo Bo,\n\nWillkommen bei Field Notes Weekly: bo@example.com ist")
    assert (
        "Die nächste Ausgabe kommt am Montag, 30. November 2026 um 09:00 (Europe/Berlin)." in text
    )


def test_error_pages_speak_the_browsers_language(site: Config) -> None:
    clock = Clock()
    app = create_app(site, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        bad = client.get("/unsubscribe/2.not-a-token", headers=GERMAN)
        assert bad.status_code == 400
        assert "<h1>Dieser Link funktioniert nicht</h1>" in bad.text
        assert "Nehmen Sie den neuesten Link aus Ihrer E-Mail" in bad.text
        english = client.get("/unsubscribe/2.not-a-token")
        assert "<h1>This link does not work</h1>" in english.text
        missing = client.get("/nowhere", headers=GERMAN)
        assert missing.status_code == 404 and "<h1>Nicht gefunden</h1>" in missing.text
