"""`digest preview` in headless Chromium: the page, widths, tabs, live reload, errors.

Each test starts the real command in its own process on a private copy of the sample site
(``--port 0``; the test reads the address it prints) and drives Debian's Chromium through
Playwright. No browser is downloaded. Screenshots at 375 and 600 px go to out/ as artifacts.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from .browser import CHROMIUM, CHROMIUM_ARGS, browser_marks

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "out"
WAIT_MS = 30_000  # how long a step may take before the test fails (a bound, not a measure)
STARTUP_SECONDS = 90.0

pytestmark = browser_marks

EDITED_POST = "the-quiet-power-of-good-defaults.md"
OLD_TITLE = "The Quiet Power of Good Defaults"

FRAME_TEXT = """(wanted) => {
  const frame = document.getElementById('email');
  const doc = frame && frame.contentDocument;
  return !!(doc && doc.body && doc.body.innerText.includes(wanted));
}"""


@dataclass
class Preview:
    url: str
    process: subprocess.Popen[str]
    site: Path
    output: list[str]


def start_preview(site: Path, *args: str) -> Preview:
    """Run `digest preview --port 0` and wait for the address it prints."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest",
            "--config",
            str(site / "config.yaml"),
            "preview",
            "--week",
            "2026-W47",
            "--port",
            "0",
            *args,
        ],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=STARTUP_SECONDS)
        except queue.Empty:
            process.kill()
            pytest.fail("digest preview printed no address:\n" + "".join(output))
        if line is None:
            pytest.fail(f"digest preview exited ({process.wait()}):\n" + "".join(output))
        found = re.match(r"Previewing 2026-W47 at (http://127\.0\.0\.1:\d+/)$", line.strip())
        if found:
            return Preview(found.group(1), process, site, output)


def stop_preview(preview: Preview) -> int:
    """Ctrl-C, as a person would; returns the exit code."""
    if preview.process.poll() is None:
        preview.process.send_signal(signal.SIGINT)
        try:
            return preview.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            preview.process.kill()
            preview.process.wait()
            pytest.fail("digest preview did not stop on Ctrl-C:\n" + "".join(preview.output))
    return preview.process.returncode


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def site(sample_site: Path) -> Path:
    """The sample site with its own templates folder, holding a copy of the card partial."""
    own = sample_site / "templates" / "partials"
    own.mkdir(parents=True)
    shutil.copy(ROOT / "templates" / "partials" / "post_card.mjml.j2", own / "post_card.mjml.j2")
    config = sample_site / "config.yaml"
    text = config.read_text(encoding="utf-8")
    text = text.replace(
        "  size_budget_kb: 100\n", "  size_budget_kb: 100\n  templates_dir: templates\n"
    )
    assert "  templates_dir: templates\n" in text, "config.yaml no longer has email.size_budget_kb"
    config.write_text(text, encoding="utf-8")
    return sample_site


@pytest.fixture
def preview(site: Path) -> Iterator[Preview]:
    running = start_preview(site)
    try:
        yield running
    finally:
        stop_preview(running)


@pytest.fixture
def page(browser: Browser, preview: Preview) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(WAIT_MS)
    tab.goto(preview.url)
    tab.wait_for_function("document.body.dataset.version")
    yield tab
    context.close()
    assert errors == []


def frame_has(page: Page, text: str) -> None:
    page.wait_for_function(FRAME_TEXT, arg=text)


def test_the_page_shows_the_email_and_its_parts(page: Page) -> None:
    frame_has(page, OLD_TITLE)
    slug = EDITED_POST.removesuffix(".md")
    assert page.frame_locator("#email").locator(f"a[href*='/posts/{slug}']").count() >= 1
    assert page.inner_text("#inbox-from") == "Field Notes Weekly <weekly@fieldnotes.example.com>"
    assert page.inner_text("#inbox-subject") != ""
    assert page.locator("#checks li").count() > 0
    assert page.is_hidden("#problem")
    options = page.locator("#week-picker option").all_inner_texts()
    assert any(o.startswith("2026-W47") for o in options)
    assert any(o.startswith("2026-W46") for o in options)


def test_mobile_width_has_no_horizontal_overflow(page: Page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (600, 375):
        page.click(f"button.width[data-width='{width}']")
        page.wait_for_function(
            "(w) => document.getElementById('email').getBoundingClientRect().width === w",
            arg=width,
        )
        overflow = page.evaluate(
            """() => {
              const doc = document.getElementById('email').contentDocument;
              return doc.documentElement.scrollWidth - doc.documentElement.clientWidth;
            }"""
        )
        assert overflow == 0, f"the email is {overflow}px wider than {width}px"
        # The toolbar stays on top while scrolling; keep it out of the artifact.
        page.add_style_tag(content=".toolbar { position: static; }")
        page.locator("#email").screenshot(path=str(ARTIFACTS / f"preview-{width}.png"))
        assert (ARTIFACTS / f"preview-{width}.png").stat().st_size > 0


def test_the_text_tab_shows_the_text_part(page: Page, site: Path) -> None:
    assert page.is_hidden("#panel-text")
    page.click("#tab-text")
    text = page.inner_text("#text-part")
    assert OLD_TITLE in text
    assert "[[digest:unsubscribe_url]]" in text
    page.click("#tab-headers")
    headers = page.inner_text("#headers")
    assert "List-Unsubscribe: " in headers
    assert "From: Field Notes Weekly <weekly@fieldnotes.example.com>" in headers


def test_saving_a_post_reloads_the_page_with_the_new_title(page: Page, site: Path) -> None:
    post = site / "content" / "posts" / EDITED_POST
    text = post.read_text(encoding="utf-8")
    post.write_text(
        text.replace(f"title: {OLD_TITLE}", "title: Defaults That Respect People"), encoding="utf-8"
    )
    frame_has(page, "Defaults That Respect People")
    assert OLD_TITLE not in page.frame_locator("#email").locator("body").inner_text()


def test_a_broken_template_shows_the_error_and_recovers(page: Page, site: Path) -> None:
    card = site / "templates" / "partials" / "post_card.mjml.j2"
    good = card.read_text(encoding="utf-8")
    lines = good.splitlines(keepends=True)
    card.write_text("".join([lines[0], "{% if %}\n", *lines[1:]]), encoding="utf-8")

    page.wait_for_selector("#problem:not([hidden])")
    where = page.inner_text("#problem-where")
    assert where == f"{card}:2" or where.endswith("post_card.mjml.j2:2"), where
    assert page.get_attribute("body", "data-problem") == "template"
    frame_has(page, OLD_TITLE)  # the last good email is still there

    card.write_text(good, encoding="utf-8")
    post = site / "content" / "posts" / EDITED_POST
    post.write_text(
        post.read_text(encoding="utf-8").replace(
            f"title: {OLD_TITLE}", "title: Good Defaults, Fixed"
        ),
        encoding="utf-8",
    )
    page.wait_for_selector("#problem", state="hidden")
    frame_has(page, "Good Defaults, Fixed")


def test_ctrl_c_stops_cleanly_with_a_page_connected(browser: Browser, site: Path) -> None:
    running = start_preview(site)
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(running.url)
        tab.wait_for_function("document.body.dataset.live === '1'", timeout=WAIT_MS)
        assert stop_preview(running) == 0
    finally:
        context.close()
        stop_preview(running)
    assert "Preview stopped." in "".join(running.output)
    assert "Traceback" not in "".join(running.output)


def test_dark_mode_and_the_week_picker(page: Page) -> None:
    page.select_option("#appearance", "invert")
    assert "invert" in (page.get_attribute("#frame-wrap", "class") or "")
    page.select_option("#appearance", "dark")
    assert "invert" not in (page.get_attribute("#frame-wrap", "class") or "")
    injected = page.evaluate(
        "() => !!document.getElementById('email').contentDocument"
        ".getElementById('digest-preview-dark')"
    )
    assert injected is True

    page.select_option("#week-picker", "2026-W46")
    page.wait_for_function("document.title.includes('2026-W46')")
    page.wait_for_function(
        "() => document.getElementById('email').getAttribute('src').startsWith('/email/2026-W46')"
    )
    page.wait_for_function("document.getElementById('inbox-subject').textContent !== ''")
    assert page.url.endswith("/?week=2026-W46")
