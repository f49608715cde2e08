"""Covers in Chromium at 375 and 600 px with every ``<style>`` removed (a client that
strips them) and with images blocked (email/covers.py): a cover whose file digest can read
(in ``email.cover_dir``) leaves a block of its own average colour, the others one of
``email.cover_color``. Screenshots go to out/."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from digest.config import parse_config
from digest.content.select import Section, Selection, week_window
from digest.email.compose import compose
from digest.email.covers import shape_covers
from digest.email.message import fill, sample_values

from .browser import CHROMIUM, CHROMIUM_ARGS, browser_marks
from .test_email_browser import NOW, _post, _serve_images

pytestmark = browser_marks
ARTIFACTS = Path(__file__).resolve().parent.parent / "out"
STYLE = re.compile(r"<style[^>]*>.*?</style>", re.DOTALL)


LOCAL = "https://test.example.com/images/two-tone-1104x552.png"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site's image folder: one cover, half (200, 40, 0) and half (0, 120, 200), whose
    average is (100, 80, 100), #645064."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "images").mkdir()
    image = Image.new("RGB", (1104, 552), (200, 40, 0))
    image.paste((0, 120, 200), (552, 0, 1104, 552))
    image.save(folder / "images" / "two-tone-1104x552.png")
    return folder


def _issue(fallback: str, images: Path) -> str:
    config = parse_config(
        {
            "site": {"name": "Test Site", "base_url": "https://test.example.com"},
            "sender": {"from_name": "Test", "from_email": "news@test.example.com"},
            "email": {
                "cover_fallback": fallback,
                "cover_color": "#336699",
                "cover_dir": str(images),
            },
        }
    )
    posts = [
        _post(f"cdn-{n}", f"A cover on an image CDN, number {n}",
              f"https://images.unsplash.com/photo-{n}?w=400&h=200&fit=crop")
        for n in range(3)
    ] + [
        _post("known", "A wide cover whose size the front matter gives",
              "https://img.example.com/wide-1600x400.png", coverWidth=1600, coverHeight=400),
        _post("local", "A cover in the site's own image folder", LOCAL,
              coverWidth=1104, coverHeight=552),
    ]  # fmt: skip
    window = week_window("2026-W47", timezone.utc)  # type: ignore[arg-type]
    selection = Selection(window, (Section("Work", "Work", tuple(posts)),), ())
    html = fill(compose(config, selection, now=NOW).html, sample_values(config), html=True)
    return STYLE.sub("", html)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


COVERS = """() => Array.from(document.querySelectorAll('.cover img')).map(i => {
  const box = i.getBoundingClientRect();
  return {w: box.width, h: box.height, nw: i.naturalWidth, nh: i.naturalHeight,
          bg: getComputedStyle(i).backgroundColor};
})"""


def _open(browser: Browser, html: str, width: int, images: bool, name: str) -> Page:
    page = browser.new_page(viewport={"width": width, "height": 900})
    if images:
        page.route("https://**/*", _serve_images)
    else:
        page.route("https://**/*", lambda route: route.abort())
    page.set_content(html, wait_until="load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"covers-{name}-{width}.png"), full_page=True)
    return page


def test_the_shaping_touches_covers_only() -> None:
    html = (
        '<td class="cover"><img height="276" width="552" style="border:0;height:276px;'
        'width:100%;font-size:13px;"></td><img class="logo" style="height:40px;width:100%;">'
    )
    assert shape_covers(html, "alt") == (
        '<td class="cover"><img height="276" width="552" style="border:0;height:auto;'
        'width:100%;max-width:552px;font-size:13px;"></td>'
        '<img class="logo" style="height:40px;width:100%;">'
    )
    assert "max-width:552px;aspect-ratio:552/276;background-color:#d0d7de;font-size" in (
        shape_covers(html)
    )


@pytest.mark.parametrize("width", [375, 600])
def test_without_style_covers_keep_their_shape(browser: Browser, width: int, images: Path) -> None:
    page = _open(browser, _issue("color", images), width, True, "no-style")
    covers = page.evaluate(COVERS)
    assert len(covers) == 5
    for cover in covers:
        assert cover["w"] <= width
        assert abs(cover["w"] / cover["h"] - cover["nw"] / cover["nh"]) < 0.03, cover
    assert [round(c["w"] / c["h"], 1) for c in covers] == [2.0, 2.0, 2.0, 4.0, 2.0]
    page.close()


@pytest.mark.parametrize("width", [375, 600])
def test_with_images_off_each_cover_is_a_block_of_the_covers_colour(
    browser: Browser, width: int, images: Path
) -> None:
    """The local cover's block is its average colour; remote covers, never fetched, keep
    the configured one."""
    page = _open(browser, _issue("color", images), width, False, "images-off-color")
    blocks = page.evaluate(COVERS)
    assert [b["bg"] for b in blocks] == ["rgb(51, 102, 153)"] * 4 + ["rgb(100, 80, 100)"]
    assert [round(b["w"] / b["h"], 1) for b in blocks] == [2.0, 2.0, 2.0, 4.0, 2.0]
    shot = Image.open(io.BytesIO(page.locator(".cover img").nth(4).screenshot()))
    assert shot.convert("RGB").getpixel((shot.width // 2, shot.height // 2)) == (100, 80, 100)
    page.close()
