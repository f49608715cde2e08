"""End to end on loopback: an issue sent to the outbox with per_subscriber clicks, its links
followed through a real `digest serve`: the consenting reader is counted per reader and in
aggregate, the other reader only in aggregate; unticking on the preferences page deletes
the reader's rows and stops recording them; `digest report --inactive` reads the result."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import yaml

from digest.audience.subscribers import SubscriberStore
from digest.config import Config, load_config
from digest.delivery.clicks import ClickStore
from digest.delivery.engagement import choose
from digest.delivery.send import send_issue
from tests.conftest import run_digest
from tests.helpers import free_port, start_serve, wait_for
from tests.test_clicks_browser import FIREFOX, SECRET, blog  # noqa: F401

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WEEK = "2026-W47"
ADA, BOB = "ada@example.com", "bob@example.com"


def _messages(config: Config) -> dict[str, EmailMessage]:
    found = {}
    for eml in (config.path(config.out_dir) / WEEK / "outbox").glob("*.eml"):
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        found[str(message["To"])] = message
    return found


def _links(message: EmailMessage, public: str) -> list[str]:
    html = message.get_body(("html",))
    assert html is not None
    content = html.get_content()
    return list(dict.fromkeys(re.findall(rf'href="({re.escape(public)}/c/[^"]+)"', content)))


def _preferences(message: EmailMessage, public: str) -> str:
    text = message.get_body(("plain",))
    assert text is not None
    found = re.search(rf"({re.escape(public)}/preferences/\S+)", text.get_content())
    assert found
    return found.group(1)


def _counts(config: Config) -> tuple[int, dict[str, set[str]]]:
    with ClickStore(config.path(config.analytics.database)) as store:
        return sum(c.kept for c in store.links(WEEK)), store.readers([WEEK])


def test_consenting_and_other_readers_through_a_real_serve(
    sample_site: Path,
    blog: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    site = sample_site
    data = yaml.safe_load((site / "config.yaml").read_text())
    data["site"]["base_url"] = blog
    data["serve"] = {"public_url": public, "port": port, "trusted_proxies": ["127.0.0.1"]}
    data["analytics"] = {"clicks": "per_subscriber", "flush_seconds": 0.2}
    (site / "config.yaml").write_text(yaml.safe_dump(data))
    config = load_config(site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        for address in (ADA, BOB):
            store.add(address, name="", now=NOW)
        choose(config, store, ADA, agree=True, now=NOW, origin="cli")
        ada = store.get(ADA)
    assert ada is not None
    assert send_issue(config, now=NOW, week=WEEK).sent == 2
    messages = _messages(config)
    ada_links, bob_links = _links(messages[ADA], public), _links(messages[BOB], public)
    assert all(link.count("/") == 5 for link in ada_links)  # .../c/<token>/<seal>
    assert all(link.count("/") == 4 for link in bob_links)  # .../c/<token>

    serve = start_serve(site, SECRET)
    try:
        browser = {"User-Agent": FIREFOX}
        with httpx.Client(follow_redirects=False, headers=browser) as http:
            first = http.get(ada_links[0])
            assert first.status_code == 302 and first.headers["location"].startswith(blog)
            assert http.get(bob_links[-1], headers={"X-Forwarded-For": "10.1.1.2"}).is_redirect
            wait_for(
                lambda: _counts(config)[0] == 2,
                "both clicks in the store",
                progress=lambda: _counts(config),
                cap=120,
            )
            assert _counts(config)[1] == {ada.handle: {WEEK}}

            inactive = run_digest("report", "--inactive", "1", "--json", cwd=site)
            assert inactive.returncode == 0, inactive.stderr
            assert json.loads(inactive.stdout) == {
                "issues": 1,
                "considered": 1,
                "not_consenting": 1,
                "too_few_issues": 0,
                "inactive": [],
            }

            page = http.get(_preferences(messages[ADA], public))
            assert re.search(r'name="engagement" value="yes"[^>]*checked', page.text)
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf
            saved = http.post(page.url, data={"csrf": csrf.group(1), "action": "save"})
            assert saved.status_code == 200
            assert _counts(config)[1] == {}  # deleted at once
            again = http.get(ada_links[1], headers={"X-Forwarded-For": "10.1.1.3"})
            assert again.status_code == 302
            wait_for(
                lambda: _counts(config)[0] == 3,
                "the third click in the store",
                progress=lambda: _counts(config),
                cap=120,
            )
            assert _counts(config)[1] == {}  # counted in aggregate only
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    assert serve.returncode in (0, -15)
