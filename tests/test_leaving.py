"""One newsletter's unsubscribe ends that newsletter: the sealed link in its mail, the
one-click POST, the page's two buttons, and what is sent afterwards."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from digest.audience.newsletters import NewsletterChoices
from digest.cli import main
from digest.config import Config
from digest.serve.app import create_app
from tests.test_serve import (
    ONE_CLICK_FORM,
    PUBLIC,
    SECRET,
    Clock,
    add,
    csrf_of,
    status_of,
    store,
    token_for,
    write_config,
)

WEEK = "2026-W47"


@pytest.fixture
def site(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    for name in ("PM_HOOK_PASSWORD", "RESEND_HOOK_SECRET", "SG_HOOK_KEY", "MG_HOOK_KEY"):
        monkeypatch.setenv(name, "x")
    return write_config(sample_site, subscribe_burst=50)


def receives(config: Config, address: str) -> tuple[str, ...]:
    with store(config) as s, NewsletterChoices(s) as choices:
        found = s.get(address)
        assert found is not None
        return choices.receives(found, config)


def choose(config: Config, address: str, *names: str) -> None:
    with store(config) as s, NewsletterChoices(s) as choices:
        found = s.get(address)
        assert found is not None
        choices.choose(found, names)


def send(config: Config, newsletter: str, week: str = WEEK) -> None:
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(config.source),
            "--newsletter",
            newsletter,
            "send",
            "--week",
            week,
        ],
    )
    assert result.exit_code == 0, result.output


def mails(config: Config, issue: str) -> dict[str, email.message.EmailMessage]:
    """recipient -> the message the outbox holds for the issue."""
    found = {}
    for path in sorted((config.root / "out").glob(f"{issue}/outbox/*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found[str(message["To"])] = message
    return found  # type: ignore[return-value]


def one_click_path(message: email.message.EmailMessage) -> str:
    header = str(message["List-Unsubscribe"])
    url = header.split(",")[0].strip().strip("<>")
    assert url.startswith(PUBLIC)
    return url[len(PUBLIC) :]


def test_one_click_in_the_weekly_mail_ends_the_weekly_only(site: Config) -> None:
    config, clock = site, Clock()
    add(config, "both@example.com")
    add(config, "weekly@example.com")
    choose(config, "both@example.com", "weekly", "links")
    send(config, "weekly")
    sent = mails(config, WEEK)
    assert sorted(sent) == ["both@example.com", "weekly@example.com"]
    path = one_click_path(sent["both@example.com"])
    assert "?newsletter=weekly&seal=" in path
    assert str(sent["both@example.com"]["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"

    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url=PUBLIC) as client:
        # The seal binds the name: the same link naming the other newsletter is refused.
        forged = path.replace("newsletter=weekly", "newsletter=links")
        assert client.post(forged, **ONE_CLICK_FORM).status_code == 400
        assert receives(config, "both@example.com") == ("weekly", "links")
        page = client.get(path)
        assert "Stop sending Field Notes Weekly to <strong>both@example.com</strong>." in page.text
        assert (
            'value="newsletter" class="danger">Stop sending Field Notes Weekly</button>'
            in page.text
        )
        assert 'value="all" class="danger">Unsubscribe from all newsletters</button>' in page.text
        assert client.post(path, **ONE_CLICK_FORM).status_code == 200

    assert status_of(config, "both@example.com") == "active"
    assert receives(config, "both@example.com") == ("links",)
    shown = CliRunner().invoke(
        main,
        [
            "--config",
            str(config.source),
            "subscribers",
            "newsletters",
            "both@example.com",
        ],
    )
    assert shown.output == "both@example.com: links\n"
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url=PUBLIC) as client:
        prefs = client.get(f"/preferences/{token_for(config, 'both@example.com', 'preferences')}")
        assert 'value="weekly"> Field Notes Weekly' in prefs.text
        assert 'value="links" checked> Field Notes Links' in prefs.text

    # What is sent next agrees: the links issue reaches them, the weekly one does not.
    send(config, "links")
    send(config, "weekly", "2026-W46")
    assert sorted(mails(config, "links-" + WEEK)) == ["both@example.com"]
    assert sorted(mails(config, "2026-W46")) == ["weekly@example.com"]
    links_path = one_click_path(mails(config, "links-" + WEEK)["both@example.com"])
    assert "?newsletter=links&seal=" in links_path

    # Leaving the last newsletter they receive is unsubscribing; the choice stays.
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url=PUBLIC) as client:
        page = client.get(links_path)
        left = client.post(links_path, data={"csrf": csrf_of(page.text), "scope": "newsletter"})
        assert left.status_code == 200
        assert "<h1>You're unsubscribed</h1>" in left.text
    assert status_of(config, "both@example.com") == "unsubscribed"
    assert receives(config, "both@example.com") == ("links",)


def test_the_page_can_end_one_newsletter_or_all(site: Config) -> None:
    config, clock = site, Clock()
    for address in ("one@example.com", "all@example.com"):
        add(config, address)
        choose(config, address, "weekly", "links")
    send(config, "links")
    sent = mails(config, "links-" + WEEK)
    app = create_app(config, clock=clock, monotonic=clock.monotonic)
    with TestClient(app, base_url=PUBLIC) as client:
        path = one_click_path(sent["one@example.com"])
        page = client.get(path)
        done = client.post(path, data={"csrf": csrf_of(page.text), "scope": "newsletter"})
        assert "<h1>You're unsubscribed from Field Notes Links</h1>" in done.text
        assert "<p>You still get: Field Notes Weekly.</p>" in done.text
        path = one_click_path(sent["all@example.com"])
        page = client.get(path)
        done = client.post(path, data={"csrf": csrf_of(page.text), "scope": "all"})
        assert "<h1>You're unsubscribed</h1>" in done.text
    assert (status_of(config, "one@example.com"), receives(config, "one@example.com")) == (
        "active",
        ("weekly",),
    )
    assert status_of(config, "all@example.com") == "unsubscribed"
