"""Images in the email: which URLs may be shown (absolute https only), sizes asked of an
image CDN (email.image_cdns), and how a cover is shown: never above its natural size at
twice the density, never squashed."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from digest.config import Config
from digest.content.posts import Post

COVER_WIDTH = 552  # 600px body minus 24px padding each side
IMAGE_DENSITY = 2  # covers are asked for at twice their display size, for sharp screens
DEFAULT_COVER_RATIO = 0.5  # height / width when the image URL does not say


def safe_image_url(config: Config, url: str | None) -> tuple[str | None, str | None]:
    """(absolute https URL, None) or (None, why it was refused)."""
    if not url:
        return None, None
    candidate = url.strip()
    if candidate.startswith("//"):
        candidate = "https:" + candidate
    elif candidate.startswith("/"):
        candidate = urljoin(config.site.base_url + "/", candidate.lstrip("/"))
    parts = urlsplit(candidate)
    if parts.scheme.casefold() != "https" or not parts.netloc:
        scheme = parts.scheme or "relative"
        return None, f"{scheme}: image refused (only absolute https images are shown)"
    if any(c in candidate for c in "\"'<>\\ \t\n"):
        return None, "image URL has characters that are not allowed in a URL"
    return candidate, None


def _image_rewrite(config: Config, url: str) -> str | None:
    """The image CDN kind of ``url`` ("imgix" or "cloudinary"), from email.image_cdns."""
    host = urlsplit(url).hostname or ""
    for pattern, kind in config.email.image_cdns.items():
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return kind
    return None


def sized_image_url(kind: str, url: str, width: int, height: int) -> str:
    """``url`` asking the CDN for ``width`` × ``height`` pixels, cropped to that shape."""
    parts = urlsplit(url)
    if kind == "cloudinary":
        segments = parts.path.split("/")
        if "upload" in segments:
            at = segments.index("upload") + 1
            transform = f"w_{width},h_{height},c_fill"
            if at < len(segments) and re.fullmatch(r"[a-z]{1,3}_[^/]*", segments[at]):
                segments[at] = transform  # replace the size the URL already asked for
            else:
                segments.insert(at, transform)
            return urlunsplit(parts._replace(path="/".join(segments)))
        return url
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in {"w", "h", "fit", "crop", "dpr", "width", "height"}
    ]
    query += [("w", str(width)), ("h", str(height)), ("fit", "crop")]
    return urlunsplit(parts._replace(query=urlencode(query)))


def cover_image(config: Config, src: str, post: Post) -> dict[str, Any]:
    """How a cover is shown: never above its natural size at 2× density, never squashed.

    An image on a known CDN is asked for at twice the display size in the displayed shape.
    Otherwise a natural size from the front matter (coverWidth/coverHeight) or the URL's
    own w/h bounds the display size; with none, the height follows the image (auto).
    The alt text is empty (the linked title follows) unless the front matter describes
    the image (coverAlt).
    """
    alt = str(post.extra.get("coverAlt") or "")
    width, height = COVER_WIDTH, round(COVER_WIDTH * DEFAULT_COVER_RATIO)
    kind = _image_rewrite(config, src)
    if kind is not None:
        src = sized_image_url(kind, src, width * IMAGE_DENSITY, height * IMAGE_DENSITY)
        return {"src": src, "width": width, "height": f"{height}px", "alt": alt}
    natural = _natural_size(post, src)
    if natural is None:
        return {"src": src, "width": width, "height": "auto", "alt": alt}
    natural_w, natural_h = natural
    shown_w = max(1, min(width, natural_w // IMAGE_DENSITY))
    shown_h = max(1, round(shown_w * natural_h / natural_w))
    return {"src": src, "width": shown_w, "height": f"{shown_h}px", "alt": alt}


def _natural_size(post: Post, url: str) -> tuple[int, int] | None:
    for w, h in (
        (post.extra.get("coverWidth"), post.extra.get("coverHeight")),
        (parse_qs(urlsplit(url).query).get("w", [None])[0],
         parse_qs(urlsplit(url).query).get("h", [None])[0]),
    ):  # fmt: skip
        try:
            width, height = int(str(w)), int(str(h))
        except (TypeError, ValueError):
            continue
        if width > 0 and height > 0:
            return width, height
    return None


# --------------------------------------------------------------------------- templates
