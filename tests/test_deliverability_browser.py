"""The preview's deliverability panel in headless Chromium.

The real `digest preview` runs on a copy of the sample site whose links, images and
List-Unsubscribe page all point at an HTTP server on loopback (one post's address answers
404), so nothing is fetched from elsewhere. The panel is opened from the preview page's
link; the test reads what it shows and saves a screenshot to out/deliverability-panel.png.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Browser, sync_playwright

from .browser import CHROMIUM, CHROMIUM_ARGS, browser_marks
from .test_preview_browser import ARTIFACTS, WAIT_MS, Preview, start_preview, stop_preview

pytestmark = browser_marks

BROKEN = "/posts/a-shorter-to-do-list"


class _Site(BaseHTTPRequestHandler):
    """The blog and `digest serve` stand-in: 200 for every page but one post."""

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, body: bool) -> None:
        status = 404 if self.path.split("?")[0] == BROKEN else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        if body:
            self.wfile.write(b"ok")

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)


@pytest.fixture(scope="module")
def blog() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def preview(sample_site: Path, blog: str) -> Iterator[Preview]:
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["site"]["base_url"] = blog
    data["serve"]["public_url"] = blog
    path.write_text(yaml.safe_dump(data))
    for text in (sample_site / "content").rglob("*.md"):  # the intro links to the blog too
        text.write_text(text.read_text().replace("https://fieldnotes.example.com", blog))
    running = start_preview(sample_site, "--no-watch")
    try:
        yield running
    finally:
        stop_preview(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_the_panel_shows_every_group_and_what_blocks(
    browser: Browser, preview: Preview, blog: str
) -> None:
    context = browser.new_context(viewport={"width": 900, "height": 1400})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(WAIT_MS)
    page.goto(preview.url + "?week=2026-W47")
    page.click("#deliverability-link")
    page.wait_for_selector("#summary")
    assert page.title() == "Deliverability · 2026-W47 · Field Notes Weekly"
    cards = page.eval_on_selector_all(
        "#summary .card",
        "els => els.map(e => [e.dataset.card, e.querySelector('strong').innerText])",
    )
    failed = page.eval_on_selector_all(
        'li[data-status="fail"]', "els => els.map(e => e.dataset.name)"
    )
    assert failed == [
        "checked",
        f"link {blog}{BROKEN}?utm_source=digest&utm_medium=email&utm_campaign=2026-W47",
    ]
    assert cards[0] == ["Blocking a send", "2"]
    assert cards[2][0] == "Size as sent (Gmail clips at 102 KB)"
    assert cards[2][1].endswith(" KB")
    assert cards[3] == ["One-click List-Unsubscribe", "present"]
    groups = page.eval_on_selector_all(
        "section[data-group]", "els => els.map(e => e.dataset.group)"
    )
    assert groups == ["dns", "presend", "unsubscribe", "links"]  # outbox: DNS skipped, said so
    broken = page.locator('li[data-status="fail"]').nth(1)
    assert broken.is_visible()
    assert broken.inner_text().endswith(
        "HTTP 404 in a-shorter-to-do-list.md (A Shorter To-Do List)\n"
        "fix or remove the link in that post"
    )
    colour = broken.locator(".mark").evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(207, 34, 46)"  # the red of a finding that blocks
    reachable = page.locator('section[data-group="unsubscribe"] li')
    assert reachable.get_attribute("data-status") == "ok"
    assert reachable.inner_text() == f"✓reachable: {blog}/unsubscribe/preview: HTTP 200"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "deliverability-panel.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert errors == []
    context.close()
