"""Covers that keep their shape without ``<style>`` and leave no empty box when images
are off.

MJML writes a cover as ``<img width="552" height="276" style="...height:276px;width:100%">``:
in a client that strips ``<style>`` (and with it the mobile rule that resets the height)
a narrow screen shows it 311×276, stretched. :func:`shape_covers` rewrites each cover's
inline size to ``height:auto;width:100%;max-width:552px``: the ``width``/``height``
attributes stay for clients that lay out from them, and every client keeps the image's
own 2:1 shape.

With images blocked, clients such as Chromium keep the box the attributes describe.
``email.cover_fallback`` decides what fills it: ``color`` (the default) a block in the
cover's shape, not an empty frame; ``alt`` the cover's alt text (``coverAlt``), where the
client shows one.

The block's colour is the cover's own average colour when digest can read the image:
a cover on the site's own address (``site.base_url``) whose file is in
``email.cover_dir`` (:func:`cover_colors`). It is computed with Pillow at build time,
once per image file (cached by path, size and modification time). Composing never
fetches an image, so a remote cover, an unreadable file, or an install without Pillow
gives ``email.cover_color``.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from digest.config import Config

try:  # Pillow is the "images" extra: without it every block takes email.cover_color
    from PIL import Image, ImageStat
except ImportError:  # pragma: no cover - exercised only in an install without the extra
    Image = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_COVER = re.compile(r'class="cover"')
_SIZE = re.compile(r"height:(\d+)px;width:100%;")
_WIDTH = re.compile(r'\swidth="(\d+)"')
_SRC = re.compile(r'\ssrc="([^"]*)"')


def shape_covers(
    html: str,
    fallback: str = "color",
    color: str = "#d0d7de",
    colors: Mapping[str, str] | None = None,
) -> str:
    """``html`` with every cover's fixed inline height made proportional; with the
    ``color`` fallback, each cover's block takes its colour from ``colors`` (image URL ->
    ``#rrggbb``), else ``color``."""
    out: list[str] = []
    done = 0
    for found in _COVER.finditer(html):
        start = html.find("<img ", max(found.end(), done))
        if start < 0:
            break
        end = html.find(">", start)
        if end < 0:
            break
        tag = html[start : end + 1]
        size = _SIZE.search(tag)
        width = _WIDTH.search(tag)
        if size is None or width is None:
            continue
        height = size.group(1)
        style = f"height:auto;width:100%;max-width:{width.group(1)}px;"
        if fallback == "color":  # the block keeps the cover's shape when the image is off
            src = _SRC.search(tag)
            own = (colors or {}).get(html_lib.unescape(src.group(1))) if src else None
            style += f"aspect-ratio:{width.group(1)}/{height};background-color:{own or color};"
        out.append(html[done:start])
        out.append(tag[: size.start()] + style + tag[size.end() :])
        done = end + 1
    out.append(html[done:])
    return "".join(out)


def local_cover(config: Config, src: str) -> Path | None:
    """The file in ``email.cover_dir`` a cover on the site's own address is served from,
    or None (no folder configured, another host, a path outside the folder, no file)."""
    if config.email.cover_dir is None:
        return None
    site, image = urlsplit(config.site.base_url), urlsplit(src)
    if (image.scheme, image.netloc.casefold()) != (site.scheme, site.netloc.casefold()):
        return None
    prefix = site.path.rstrip("/") + "/"
    if not image.path.startswith(prefix):
        return None
    folder = config.path(config.email.cover_dir).resolve()
    candidate = (folder / unquote(image.path[len(prefix) :])).resolve()
    if not candidate.is_relative_to(folder) or not candidate.is_file():
        return None
    return candidate


def average_color(path: Path) -> str | None:
    """The image's average colour as ``#rrggbb`` (transparent parts count as white), or
    None when it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _average(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=1024)  # once per image file: keyed by its path, size and mtime
def _average(path: str, size: int, mtime_ns: int) -> str | None:
    if Image is None:
        return None
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))  # JPEG: decode at a fraction of the size
            rgba = image.convert("RGBA")
    except Exception as exc:  # Pillow raises many kinds for a file it cannot decode
        logger.warning("cover %s: cannot read its colour (%s)", path, exc)
        return None
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB")
    red, green, blue = (round(v) for v in ImageStat.Stat(flat).mean)
    return f"#{red:02x}{green:02x}{blue:02x}"


def cover_colors(config: Config, sources: Iterable[str]) -> dict[str, str]:
    """Each readable local cover's URL -> its average colour (see the module docstring)."""
    found: dict[str, str] = {}
    for src in sources:
        path = local_cover(config, src)
        color = average_color(path) if path is not None else None
        if color is not None:
            found[src] = color
    return found
