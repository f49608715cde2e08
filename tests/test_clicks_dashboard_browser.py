"""The clicks on the preview's dashboard in Chromium: the numbers drawn equal the click
store's, Gmail's complaint line is drawn, no axis labels overlap; screenshots go to out/."""

from __future__ import annotations

import itertools
from pathlib import Path

from playwright.sync_api import sync_playwright

from digest.delivery.clicks import ClickStore

from .browser import CHROMIUM, CHROMIUM_ARGS, browser_marks
from .test_click_report import WEEK, _site
from .test_preview_browser import ARTIFACTS, WAIT_MS, start_preview, stop_preview

pytestmark = browser_marks


def test_the_clicks_dashboard_draws_the_click_store(sample_site: Path) -> None:
    config = _site(sample_site)  # one issue sent to 4, clicks stored, one complaint
    with ClickStore(config.path(config.analytics.database)) as store:
        links = store.links(WEEK)
    kept = sum(c.kept for c in links)
    filtered = sum(c.filtered for c in links)
    preview = start_preview(sample_site, "--no-watch")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(WAIT_MS)
            page.goto(preview.url + "dashboard")
            drawn = page.eval_on_selector_all(
                f'svg[data-chart="clicks"] g[data-group="{WEEK}"] rect',
                "els => Object.fromEntries(els.map(e => [e.dataset.key, Number(e.dataset.value)]))",
            )
            assert drawn == {"kept": kept, "filtered": filtered} == {"kept": 4, "filtered": 1}
            posts = page.eval_on_selector_all(
                'svg[data-chart="posts"] rect', "els => els.map(e => Number(e.dataset.value))"
            )
            by_place = {c.post: c.kept for c in links}
            assert posts == [by_place.get(i, 0) for i in range(len(posts))]
            assert sum(posts) == kept
            complaints = page.eval_on_selector_all(
                'svg[data-chart="complaints"] rect', "els => els.map(e => Number(e.dataset.value))"
            )
            assert complaints == [2500]  # 1 of 4 delivered: 25% is 2,500 per 10,000
            assert page.locator('svg[data-chart="complaints"] line[data-alarm="30"]').count() == 1
            for chart in ("clicks", "click-days", "complaints"):
                boxes = page.eval_on_selector_all(
                    f'svg[data-chart="{chart}"] text.tick[text-anchor="middle"]',
                    "els => els.map(e => { const b = e.getBBox(); return [b.x, b.x + b.width]; })",
                )
                for (_, right), (left, _) in itertools.pairwise(boxes):
                    assert left >= right, chart
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-clicks.png"), full_page=True)
            browser.close()
    finally:
        stop_preview(preview)
