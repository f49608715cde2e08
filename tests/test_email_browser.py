"""The email as Chromium renders it, at 375 and 600 px, in light and dark schemes.

Debian's Chromium through Playwright (no browser is downloaded, no network: every image
request is answered here with a PNG of the size the URL asks for). Each rendering must not
overflow the viewport, must show no image above its natural size at 2x density or out of
its proportions, and must be clean under axe-core's WCAG 2.x A and AA rules, colour
contrast included, in both schemes (tests/axe, installed by scripts/test).
Screenshots go to out/ as artifacts.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from digest.config import load_config, parse_config
from digest.content import pipeline
from digest.content.intro import load_intro
from digest.content.posts import Post
from digest.content.select import Section, Selection, week_window
from digest.email.compose import compose
from digest.email.message import fill, sample_values

from .browser import CHROMIUM, CHROMIUM_ARGS, browser_marks

pytestmark = browser_marks

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "out"
AXE = ROOT / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
NATURAL = (640, 480)  # what an image URL without a size gets


def png(width: int, height: int) -> bytes:
    """A solid grey PNG of the given size."""
    row = b"\x00" + b"\x88\x88\x88" * width
    raw = zlib.compress(row * height, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _size_of(url: str) -> tuple[int, int]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if "w" in query and "h" in query:
        return int(query["w"][0]), int(query["h"][0])
    named = re.search(r"-(\d+)x(\d+)\.png$", parts.path)
    if named:
        return int(named.group(1)), int(named.group(2))
    for segment in parts.path.split("/"):
        if segment.startswith("w_") and ",h_" in segment:
            values = dict(item.split("_", 1) for item in segment.split(","))
            return int(values["w"]), int(values["h"])
    return NATURAL


def _serve_images(route: Route) -> None:
    width, height = _size_of(route.request.url)
    route.fulfill(status=200, content_type="image/png", body=png(width, height))


def _post(slug: str, title: str, cover: str | None, **extra: Any) -> Post:
    return Post(
        path=Path(f"/posts/{slug}.md"),
        slug=slug,
        title=title,
        date=datetime(2026, 11, 17, 9, 0, tzinfo=timezone.utc),
        category="Work",
        excerpt="A short excerpt of the story that a reader sees below the title of the card.",
        cover_image=cover,
        author="A. Writer",
        extra=extra,
    )


def _image_issue() -> str:
    config = parse_config(
        {
            "site": {"name": "Test Site", "base_url": "https://test.example.com"},
            "sender": {"from_name": "Test", "from_email": "news@test.example.com"},
        }
    )
    posts = [
        _post("cdn", "A cover on an image CDN",
              "https://images.unsplash.com/photo-1?w=400&h=200&fit=crop"),
        _post("cloud", "A Cloudinary cover",
              "https://res.cloudinary.com/demo/image/upload/w_300,h_300/v1/a.jpg"),
        _post("small", "A small square cover", "https://img.example.com/s.png?w=300&h=300"),
        _post("known", "A wide cover whose size the front matter gives",
              "https://img.example.com/wide-1600x400.png", coverWidth=1600, coverHeight=400),
        _post("stock", "The stock cover again", "https://images.unsplash.com/photo-1?w=400&h=200"),
    ]  # fmt: skip
    window = week_window("2026-W47", timezone.utc)  # type: ignore[arg-type]
    selection = Selection(window, (Section("Work", "Work", tuple(posts)),), ())
    composed = compose(config, selection, now=NOW)
    return fill(composed.html, sample_values(config), html=True)


def _sample_issue(sample_site: Path) -> str:
    config = load_config(sample_site / "config.yaml")
    selection = pipeline.load_and_select(config, NOW, week="2026-W47").selection
    composed = compose(config, selection, now=NOW, intro=load_intro(config, "2026-W47"))
    return fill(composed.html, sample_values(config), html=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


IMAGES = """() => Array.from(document.images).filter(i => i.getBoundingClientRect().width > 0)
  .map(i => ({src: i.src, shownW: i.getBoundingClientRect().width,
              shownH: i.getBoundingClientRect().height,
              naturalW: i.naturalWidth, naturalH: i.naturalHeight, complete: i.complete}))"""


def _render(browser: Browser, html: str, width: int, scheme: str, name: str) -> Page:
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)  # type: ignore[arg-type]
    page.route("https://**/*", _serve_images)
    page.set_content(html, wait_until="load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"email-{name}-{width}-{scheme}.png"), full_page=True)
    return page


def _check(page: Page) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than the viewport"
    for image in page.evaluate(IMAGES):
        assert image["complete"] and image["naturalW"] > 0, image
        # Sharp at 2x density: never shown above half its natural size.
        assert image["shownW"] * 2 <= image["naturalW"] + 1, image
        assert image["shownH"] * 2 <= image["naturalH"] + 1, image
        # Never squashed: the shown shape is the natural one.
        shown = image["shownW"] / image["shownH"]
        natural = image["naturalW"] / image["naturalH"]
        assert abs(shown - natural) / natural < 0.02, image
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations'], runOnly: "
        "{type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}}))"
        ".violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))"
        ".slice(0, 5)}))"
    )
    assert result == [], result


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 600])
def test_the_sample_issue_renders_cleanly(
    browser: Browser, sample_site: Path, width: int, scheme: str
) -> None:
    page = _render(browser, _sample_issue(sample_site), width, scheme, "sample")
    try:
        _check(page)
        assert page.evaluate("() => document.images.length") == 0  # no broken covers
    finally:
        page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 600])
def test_covers_render_sharp_and_in_proportion(browser: Browser, width: int, scheme: str) -> None:
    page = _render(browser, _image_issue(), width, scheme, "covers")
    try:
        _check(page)
        assert len(page.evaluate(IMAGES)) == 4  # the stock cover is shown once
    finally:
        page.close()


def test_dark_scheme_changes_the_colours(browser: Browser, sample_site: Path) -> None:
    html = _sample_issue(sample_site)
    colours = {}
    for scheme in ("light", "dark"):
        page = _render(browser, html, 600, scheme, "scheme")
        colours[scheme] = page.evaluate(
            "() => [getComputedStyle(document.body).backgroundColor,"
            " getComputedStyle(document.querySelector('.sheet')).backgroundColor,"
            " getComputedStyle(document.querySelector('h3 a')).color]"
        )
        page.close()
    assert colours["light"] == ["rgb(244, 244, 242)", "rgb(255, 255, 255)", "rgb(31, 35, 40)"]
    assert colours["dark"] == ["rgb(13, 17, 23)", "rgb(22, 27, 34)", "rgb(230, 237, 243)"]
