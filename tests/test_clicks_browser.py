"""End to end: an issue sent to the outbox, a counted link taken from the .eml and followed
in Chromium through a real `digest serve`, landing on the post (a page on loopback); the
count shows in `digest report --json`, and a HEAD, a scanner's fetch and a burst of every
link of one message are counted apart."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import sync_playwright

from digest.audience.subscribers import SubscriberStore
from digest.config import load_config
from digest.delivery.send import send_issue
from tests.browser import CHROMIUM, CHROMIUM_ARGS, browser_marks
from tests.conftest import run_digest
from tests.helpers import free_port, start_serve

pytestmark = [*browser_marks, pytest.mark.integration]

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WEEK = "2026-W47"
SECRET = "clicks-browser-secret"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


class _Post(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"<!doctype html><title>post</title><h1>{self.path.split('?')[0]}</h1>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def blog() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Post)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_link_from_the_outbox_followed_in_chromium_is_counted_once(
    sample_site: Path, blog: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    site = sample_site
    data = yaml.safe_load((site / "config.yaml").read_text())
    data["site"]["base_url"] = blog  # the posts are pages on loopback
    data["serve"] = {"public_url": public, "port": port, "trusted_proxies": ["127.0.0.1"]}
    data["analytics"] = {"clicks": "aggregate", "flush_seconds": 0.2}
    (site / "config.yaml").write_text(yaml.safe_dump(data))
    config = load_config(site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.add("reader@example.com", name="Reader", now=NOW)
    assert send_issue(config, now=NOW, week=WEEK).sent == 1
    (eml,) = (config.path(config.out_dir) / WEEK / "outbox").glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    html = message.get_body(("html",))
    assert html is not None
    links = list(
        dict.fromkeys(re.findall(rf'href="({re.escape(public)}/c/[^"]+)"', html.get_content()))
    )
    manifest = json.loads((config.path(config.out_dir) / WEEK / "manifest.json").read_text())
    posts = [p for s in manifest["sections"] for p in s["posts"]]
    assert len(links) == len(posts) >= 3

    serve = start_serve(site, SECRET)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:  # headless Chromium names itself HeadlessChrome, a scanner's mark: a person's
                page = browser.new_page(user_agent=FIREFOX)
                page.goto(links[0])
                assert page.url == posts[0]["url"]
                assert page.locator("h1").inner_text() == f"/posts/{posts[0]['id']}"
            finally:
                browser.close()
        with httpx.Client(follow_redirects=False) as http:
            head = http.head(links[1], headers={"User-Agent": FIREFOX})
            assert (head.status_code, head.headers["location"]) == (302, posts[1]["url"])
            scanner = http.get(links[1], headers={"User-Agent": "Barracuda Sentinel (EE)"})
            assert scanner.status_code == 302
            gateway = {"User-Agent": FIREFOX, "X-Forwarded-For": "10.9.9.9"}
            for link in links[:3]:  # every link at once, from one gateway
                assert http.get(link, headers=gateway).status_code == 302
            forged = http.get(links[0][:-3] + "AAA", headers={"User-Agent": FIREFOX})
            assert forged.status_code == 400 and "location" not in forged.headers
    finally:
        serve.terminate()
        serve.wait(timeout=60)  # it writes what it holds before it ends
    assert serve.returncode in (0, -15)

    result = run_digest("report", "--issue", WEEK, "--json", cwd=site)
    assert result.returncode == 0, result.stderr
    (issue,) = json.loads(result.stdout)["issues"]
    assert (issue["delivered"], issue["kept"], issue["filtered"], issue["click_rate"]) == (
        1,
        1,
        5,
        1.0,
    )
    assert [(p["post_id"], p["kept"], p["filtered"]) for p in issue["posts"][:3]] == [
        (posts[0]["id"], 1, 1),
        (posts[1]["id"], 0, 3),
        (posts[2]["id"], 0, 1),
    ]
