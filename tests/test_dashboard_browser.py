"""The audience dashboard of `digest preview` in headless Chromium, against seeded stores.

The real command runs in its own process on a copy of the sample site whose subscriber
store and send ledger hold a known history (tests/audience_seed.py). The test reads the
numbers the charts draw and compares them with the stores; screenshots go to out/.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from digest.audience.subscribers import SubscriberStore
from digest.preview.dashboard import CSS, WIDTH, line_chart

from .audience_seed import Seeded, seed
from .browser import CHROMIUM, CHROMIUM_ARGS, browser_marks
from .test_preview_browser import ARTIFACTS, WAIT_MS, Preview, start_preview, stop_preview

pytestmark = browser_marks

CHARTS = ["timeline", "arrivals", "sources", "preferences", "deliveries", "followed"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def seeded(sample_site: Path) -> Seeded:
    return seed(sample_site / "data" / "subscribers.sqlite", sample_site / "data" / "ledger.sqlite")


@pytest.fixture
def preview(sample_site: Path, seeded: Seeded) -> Iterator[Preview]:
    running = start_preview(sample_site, "--no-watch")
    try:
        yield running
    finally:
        stop_preview(running)


def open_dashboard(browser: Browser, preview: Preview, width: int) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
    page.set_default_timeout(WAIT_MS)
    page.goto(preview.url + "dashboard")
    return page, errors


def values(page: Page, chart: str, group: str) -> dict[str, int]:
    found: dict[str, int] = page.evaluate(
        """([chart, group]) => Object.fromEntries(
            [...document.querySelectorAll(
                `svg[data-chart="${chart}"] g[data-group="${group}"] rect`)]
            .map(r => [r.dataset.key, Number(r.dataset.value)]))""",
        [chart, group],
    )
    return found


def test_the_dashboard_draws_the_stores(
    browser: Browser, preview: Preview, seeded: Seeded, sample_site: Path
) -> None:
    page, errors = open_dashboard(browser, preview, 1100)
    drawn = page.eval_on_selector_all("svg[data-chart]", "els => els.map(e => e.dataset.chart)")
    assert drawn == CHARTS
    for chart in CHARTS:  # each chart is on screen with a size, not an empty element
        box = page.locator(f'svg[data-chart="{chart}"]').bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 30, chart
    with SubscriberStore(sample_site / "data" / "subscribers.sqlite") as store:
        counts = store.counts()
    assert counts == seeded.counts
    for status, number in counts.items():
        assert page.inner_text(f'[data-testid="count-{status}"] strong') == str(number)
    assert page.inner_text('[data-testid="count-total"] strong') == str(sum(counts.values()))
    last = page.eval_on_selector_all(
        'svg[data-chart="timeline"] polyline',
        "els => Object.fromEntries(els.map(e => [e.dataset.series, Number(e.dataset.last)]))",
    )
    assert last == counts
    for issue, states in seeded.deliveries.items():
        assert values(page, "deliveries", issue) == states
        assert values(page, "followed", issue) == {
            k: v for k, v in seeded.followed[issue].items() if v
        }
    for source, by_status in seeded.sources.items():
        assert values(page, "sources", source) == by_status
    preferences = page.eval_on_selector_all(
        'svg[data-chart="preferences"] rect',
        "els => Object.fromEntries(els.map(e => [e.dataset.key, Number(e.dataset.value)]))",
    )
    assert preferences == {"every section": 3, "Work": 2}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.context.close()
    narrow, narrow_errors = open_dashboard(browser, preview, 375)
    width = narrow.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, "the dashboard scrolls sideways on a phone"
    narrow.screenshot(path=str(ARTIFACTS / "dashboard-375.png"), full_page=True)
    narrow.context.close()
    assert errors == [] and narrow_errors == []


def test_the_preview_links_to_the_dashboard(browser: Browser, preview: Preview) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(preview.url)
    page.click("#dashboard-link")
    page.wait_for_selector('svg[data-chart="timeline"]')
    assert page.url == preview.url + "dashboard"
    context.close()


def test_date_labels_on_the_x_axis_never_overlap(browser: Browser) -> None:
    """Chromium measures each drawn label (its real font); no two of them overlap, however
    many days the chart covers, and every label stays inside the chart."""
    page = browser.new_page(viewport={"width": 1100, "height": 400})
    for days in (1, 2, 7, 12, 31, 49, 50, 61, 90, 119, 120):
        points = [
            {"at": f"2026-{1 + i // 28:02d}-{1 + i % 28:02d}T00:00:00Z", "active": i}
            for i in range(days)
        ]
        page.set_content(
            f"<!doctype html><style>{CSS}</style>"
            + line_chart("t", "t", points, {"active": "#1a7f37"})
        )
        boxes = page.eval_on_selector_all(
            'svg text.tick[text-anchor="middle"]',
            "els => els.map(e => { const b = e.getBBox(); return [b.x, b.x + b.width]; })",
        )
        assert boxes, days
        assert boxes[0][0] >= 0 and boxes[-1][1] <= WIDTH, days
        for (_, right), (left, _) in itertools.pairwise(boxes):
            assert left >= right, f"{days} days: labels overlap ({right:.1f} > {left:.1f})"
        shown = page.eval_on_selector_all(
            'svg text.tick[text-anchor="middle"]', "els => els.map(e => e.textContent)"
        )
        assert shown[0] == points[0]["at"][:10] and shown[-1] == points[-1]["at"][:10]
    page.close()
