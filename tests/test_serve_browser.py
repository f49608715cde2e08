"""digest serve in headless Chromium: subscribe → confirm → preferences → unsubscribe.

The real `digest serve` runs in its own process (see test_serve_http.py); Debian's Chromium
is driven through Playwright (no browser download). The forms are filled and submitted the
way a person would, so the CSRF cookie and form token travel as a browser sends them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import CHROMIUM, CHROMIUM_ARGS, browser_marks
from .test_serve_http import ServeProcess, confirm_link, local, make_site, status, store

WAIT_MS = 30_000  # a bound on each step, not a measure

pytestmark = browser_marks


@pytest.fixture
def server(sample_site: Path) -> Iterator[ServeProcess]:
    make_site(sample_site)
    process = ServeProcess(sample_site, {"DIGEST_SECRET": "browser-secret", "MG_KEY": "k"})
    yield process
    assert process.stop(), process.stderr()


def test_subscribe_confirm_and_choose_sections(server: ServeProcess, sample_site: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 800})
            page.set_default_timeout(WAIT_MS)
            page.goto(server.url + "/")
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Get Field Notes Weekly by email"
            )
            # Mobile-friendly: nothing wider than the phone's screen.
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            page.get_by_label("Email address").fill("Ada@Example.com")
            page.get_by_label("Name").fill("Ada")
            page.get_by_label("Tools").check()
            page.get_by_role("button", name="Subscribe").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
            assert status(sample_site, "ada@example.com") == "pending"

            page.goto(local(server, confirm_link(sample_site, "ada@example.com")))
            # Opening the link (what a mail scanner does too) only shows a button.
            expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
            assert status(sample_site, "ada@example.com") == "pending"
            page.get_by_role("button", name="Yes, subscribe me").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You're subscribed")
            assert status(sample_site, "ada@example.com") == "active"

            page.get_by_role("link", name="Choose your sections").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Your preferences")
            expect(page.get_by_label("Tools")).to_be_checked()
            expect(page.get_by_label("Research")).not_to_be_checked()
            page.get_by_label("Research").check()
            page.get_by_label("Tools").uncheck()
            page.get_by_role("button", name="Save").click()
            expect(page.get_by_role("status")).to_have_text("Saved.")
            expect(page.get_by_label("Research")).to_be_checked()
            with store(sample_site) as s:
                ada = s.get("ada@example.com")
                assert ada is not None
                assert (ada.name, ada.categories) == ("Ada", ("Research",))

            page.get_by_role("button", name="Unsubscribe from everything").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You're unsubscribed")
            assert status(sample_site, "ada@example.com") == "unsubscribed"
        finally:
            browser.close()
