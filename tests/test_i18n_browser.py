"""The preferences page and an email in English and German, in Chromium: each shows its
own words (and the posts as written); screenshots go to out/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from starlette.testclient import TestClient

from digest.config import Config
from digest.content import pipeline
from digest.email.compose import compose
from digest.email.message import fill, sample_values
from digest.serve.app import create_app
from digest.serve.pages import Pages

from .browser import CHROMIUM, CHROMIUM_ARGS, browser_marks
from .test_i18n import german
from .test_serve import SECRET, Clock, add, token_for, write_config

pytestmark = browser_marks
ARTIFACTS = Path(__file__).resolve().parent.parent / "out"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    for name in ("PM_HOOK_PASSWORD", "RESEND_HOOK_SECRET", "SG_HOOK_KEY", "MG_HOOK_KEY"):
        monkeypatch.setenv(name, "x")
    return write_config(sample_site, subscribe_burst=50)


@pytest.mark.parametrize(
    ("language", "heading", "button"),
    [("en", "Your preferences", "Save"), ("de", "Ihre Einstellungen", "Speichern")],
)
def test_the_preferences_page_in_each_language(
    browser: Browser, site: Config, language: str, heading: str, button: str
) -> None:
    add(site, "reader@example.com")
    clock = Clock()
    app = create_app(site, clock=clock, monotonic=clock.monotonic)
    path = f"/preferences/{token_for(site, 'reader@example.com', 'preferences')}"
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        html = client.get(path, headers={"Accept-Language": "en"}).text
        if language == "de":  # the reader chose German on the page
            from .test_serve import csrf_of

            html = client.post(
                path, data={"csrf": csrf_of(html), "action": "save", "language": "de"}
            ).text
    css = Pages(site).stylesheet().decode()
    html = html.replace('<link rel="stylesheet" href="/assets/serve.css">', f"<style>{css}</style>")
    page = browser.new_page(viewport={"width": 600, "height": 900})
    page.set_content(html)
    assert page.inner_text("h1") == heading
    assert page.locator("button[value=save]").inner_text() == button
    assert page.locator("select#language option:checked").get_attribute("value") == language
    # the time zone list, the schedule's zone chosen for a reader without one
    zone = page.locator("select#timezone option:checked")
    assert (zone.get_attribute("value"), zone.inner_text()) == ("Europe/Berlin", "Berlin")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"preferences-{language}.png"), full_page=True)
    page.close()


@pytest.mark.parametrize(
    ("language", "footer", "count"),
    [("en", "Unsubscribe", "posts"), ("de", "Abbestellen", "Beiträge")],
)
def test_an_email_in_each_language(
    browser: Browser, site: Config, language: str, footer: str, count: str
) -> None:
    selection = pipeline.load_and_select(site, NOW, week="2026-W47").selection
    config = german(site) if language == "de" else site
    html = fill(compose(config, selection, now=NOW).html, sample_values(config), html=True)
    page = browser.new_page(viewport={"width": 600, "height": 900})
    page.set_content(html)
    assert page.locator(f".footer a:text-is('{footer}')").count() == 1
    assert page.inner_text(".issue-dates").endswith(f"{selection.count} {count}")
    first = selection.posts[0].title
    assert page.locator(f"h3 a:text-is('{first}')").count() == 1  # the post as written
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"email-{language}.png"), full_page=True)
    page.close()
