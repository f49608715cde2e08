"""A cover's own average colour for the block it leaves when images are off
(email/covers.py): read from the site's image folder once per file, never fetched."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from PIL import Image

from digest.config import Config, parse_config
from digest.email import covers
from digest.email.covers import average_color, cover_colors, local_cover, shape_covers


def _config(folder: Path | None, base_url: str = "https://blog.example.com/site") -> Config:
    email = {"cover_dir": str(folder)} if folder is not None else {}
    return parse_config(
        {
            "site": {"name": "T", "base_url": base_url},
            "sender": {"from_name": "T", "from_email": "t@example.com"},
            "email": email,
        }
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    two = Image.new("RGB", (40, 20), (200, 40, 0))
    two.paste((0, 120, 200), (20, 0, 40, 20))
    two.save(tmp_path / "img" / "two tone.png")
    half = Image.new("RGBA", (10, 10), (0, 0, 0, 255))
    half.paste((0, 0, 0, 0), (5, 0, 10, 10))  # the transparent half counts as white
    half.save(tmp_path / "img" / "half.png")
    Image.new("RGB", (16, 8), (10, 20, 30)).save(tmp_path / "img" / "flat.jpg", quality=100)
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / "img" / "half.png").read_bytes())
    return tmp_path


def test_the_average_colour_of_a_local_cover(folder: Path) -> None:
    assert average_color(folder / "img" / "two tone.png") == "#645064"
    assert average_color(folder / "img" / "half.png") == "#808080"
    jpeg = average_color(folder / "img" / "flat.jpg")
    assert jpeg is not None
    red, green, blue = (int(jpeg[i : i + 2], 16) for i in (1, 3, 5))
    assert max(abs(red - 10), abs(green - 20), abs(blue - 30)) <= 2  # JPEG rounds a little


def test_an_unreadable_or_missing_file_has_no_colour(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "digest.email.covers"):
        assert average_color(folder / "img" / "broken.png") is None
    assert "broken.png: cannot read its colour" in caplog.text
    assert average_color(folder / "img" / "missing.png") is None


def test_only_a_cover_on_the_sites_address_inside_the_folder_is_read(folder: Path) -> None:
    config = _config(folder)
    base = "https://blog.example.com/site"
    assert local_cover(config, f"{base}/img/two%20tone.png") == folder / "img" / "two tone.png"
    for src in (
        "https://cdn.example.net/site/img/half.png",  # another host: never fetched
        "http://blog.example.com/site/img/half.png",  # another scheme
        "https://blog.example.com/img/half.png",  # outside the site's path
        f"{base}/img/../../outside.png",  # outside the folder
        f"{base}/img/missing.png",
    ):
        assert local_cover(config, src) is None, src
    assert local_cover(_config(None), f"{base}/img/half.png") is None


def test_colours_per_url_and_once_per_file(folder: Path) -> None:
    config = _config(folder)
    base = "https://blog.example.com/site/img"
    sources = [f"{base}/half.png", f"{base}/broken.png", "https://x.example.org/a.png"]
    covers._average.cache_clear()
    assert cover_colors(config, sources) == {f"{base}/half.png": "#808080"}
    cover_colors(config, sources)
    assert covers._average.cache_info().misses == 2  # half.png and broken.png, once each
    path = folder / "img" / "half.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(path)  # a changed file is read again
    os.utime(path, ns=(1, 1))
    assert cover_colors(config, sources) == {f"{base}/half.png": "#ff0000"}


def test_each_block_takes_its_own_colour_else_the_configured_one() -> None:
    tag = (
        '<td class="cover"><img src="https://b.example.com/a.png?x=1&amp;y=2" height="276" '
        'width="552" style="height:276px;width:100%;"></td>'
    )
    html = tag + tag.replace("a.png", "b.png")
    shaped = shape_covers(
        html, "color", "#d0d7de", {"https://b.example.com/a.png?x=1&y=2": "#645064"}
    )
    assert shaped.count("background-color:#645064;") == 1
    assert shaped.count("background-color:#d0d7de;") == 1
    assert "background-color" not in shape_covers(html, "alt", "#d0d7de", {})
