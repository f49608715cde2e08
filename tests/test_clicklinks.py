"""Counted post links (email/clicklinks.py): every post link of every variant goes
through /c/<token> when clicks are on, and nothing changes when they are off."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from digest.audience.clicktokens import Click, read_click_token
from digest.audience.subscribers import SubscriberStore
from digest.audience.tokens import token_secret, verifying_secrets
from digest.config import Config
from digest.content import pipeline
from digest.content.intro import load_intro
from digest.delivery.send import send_issue
from digest.email.clicklinks import count_clicks, manifest_links
from digest.email.compose import compose
from digest.email.message import fill, recipient_values
from tests.helpers import edit_config

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WEEK = "2026-W47"
READERS = {"all@example.com": (), "work@example.com": ("Work", "Tools")}


def _send(config: Config) -> dict[str, EmailMessage]:
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        for email, sections in READERS.items():
            store.add(email, name="", categories=sections, now=NOW)
    report = send_issue(config, now=NOW, week=WEEK)
    assert report.sent == len(READERS)
    found = {}
    for path in (config.path(config.out_dir) / WEEK / "outbox").glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        found[str(message["To"])] = message
    return found


def _part(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def test_with_clicks_off_the_email_is_exactly_as_composed(sample_site: Path) -> None:
    config = edit_config(sample_site, analytics={"clicks": "off"})
    sent = _send(config)
    selection = pipeline.load_and_select(config, NOW, week=WEEK).selection
    whole = compose(config, selection, now=NOW, intro=load_intro(config, WEEK))
    assert count_clicks(config, whole, variant="all", issue_posts=whole.posts, key=b"k") is whole
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        subscriber = store.get("all@example.com")
    assert subscriber is not None
    values = recipient_values(config, subscriber, token_secret(config))
    message = sent["all@example.com"]
    assert _part(message, "html") == fill(whole.html, values, html=True)
    assert _part(message, "plain") == fill(whole.text, values)
    assert "/c/" not in _part(message, "html")


def test_every_post_link_of_every_variant_is_counted_and_leads_to_its_post(
    sample_site: Path,
) -> None:
    config = edit_config(
        sample_site,
        analytics={"clicks": "aggregate"},
        serve={"public_url": "https://news.example.org"},
    )
    sent = _send(config)
    manifest = json.loads((config.path(config.out_dir) / WEEK / "manifest.json").read_text())
    links = manifest_links(manifest)
    assert len(links) == manifest["post_count"] > 3
    keys = verifying_secrets(config)
    for email, variant in (("all@example.com", "all"), ("work@example.com", "Work+Tools")):
        html, text = _part(sent[email], "html"), _part(sent[email], "plain")
        for url in links:  # no post link goes straight to the post any more
            assert f'href="{url.replace("&", "&amp;")}"' not in html
            assert not re.search(rf"(?<!\S){re.escape(url)}(?!\S)", text)
        counted = re.findall(r'href="https://news\.example\.org/c/([^"]+)"', html)
        in_text = re.findall(r"https://news\.example\.org/c/(\S+)", text)
        clicks = {read_click_token(token, keys) for token in counted}
        assert clicks == {read_click_token(token, keys) for token in in_text}
        assert {c.issue_id for c in clicks} == {WEEK}
        assert {c.variant for c in clicks} == {variant}
        shown = [(s["name"], p["url"]) for s in manifest["sections"] for p in s["posts"]]
        expected = {
            Click(WEEK, index, variant)
            for index, (section, _) in enumerate(shown)
            if variant == "all" or section in variant.split("+")
        }
        assert clicks == expected
