"""Covers that keep their shape without ``<style>`` and leave no empty box when images
are off.

MJML writes a cover as ``<img width="552" height="276" style="...height:276px;width:100%">``:
in a client that strips ``<style>`` (and with it the mobile rule that resets the height)
a narrow screen shows it 311×276, stretched. :func:`shape_covers` rewrites each cover's
inline size to ``height:auto;width:100%;max-width:552px``: the ``width``/``height``
attributes stay for clients that lay out from them, and every client keeps the image's
own 2:1 shape.

With images blocked, clients such as Chromium keep the box the attributes describe.
``email.cover_fallback`` decides what fills it: ``color`` (the default) a block of
``email.cover_color`` in the cover's shape, not an empty frame; ``alt`` the cover's alt
text (``coverAlt``), where the client shows one. The colour is a setting, not the
image's average: composing never fetches an image.
"""

from __future__ import annotations

import re

_COVER = re.compile(r'class="cover"')
_SIZE = re.compile(r"height:(\d+)px;width:100%;")
_WIDTH = re.compile(r'\swidth="(\d+)"')


def shape_covers(html: str, fallback: str = "color", color: str = "#d0d7de") -> str:
    """``html`` with every cover's fixed inline height made proportional."""
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
            style += f"aspect-ratio:{width.group(1)}/{height};background-color:{color};"
        out.append(html[done:start])
        out.append(tag[: size.start()] + style + tag[size.end() :])
        done = end + 1
    out.append(html[done:])
    return "".join(out)
