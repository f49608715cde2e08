"""`digest check` with ``analytics.clicks`` on: does ``digest serve`` answer where the
counted links point? A counted link whose serve is down is a broken link, so the operator
hears about it before an issue goes out."""

from __future__ import annotations

import httpx

from digest.audience.links import public_base
from digest.config import Config


def serve_unreachable(
    config: Config, *, transport: httpx.BaseTransport | None = None
) -> str | None:
    """Why counted links would not work (``<public_url>/healthz`` does not answer ``ok``),
    or None when they would, or when clicks are off."""
    on = [
        name
        for name, used in (
            ("clicks", config.analytics.clicks != "off"),
            ("opens", config.analytics.opens),
        )
        if used
    ]
    if not on:
        return None
    what = f"analytics.{' and analytics.'.join(on)} {'is' if len(on) == 1 else 'are'} on"
    broken = "post links would break" if "clicks" in on else "opens would not be counted"
    url = f"{public_base(config)}/healthz"
    try:
        with httpx.Client(transport=transport, timeout=5.0, follow_redirects=False) as client:
            answer = client.get(url)
    except httpx.HTTPError as exc:
        return f"{what}, but {url} does not answer ({type(exc).__name__}: {exc})"
    if answer.status_code != 200 or answer.text.strip() != "ok":
        return (
            f"{what}, but {url} answers {answer.status_code}, not digest "
            f"serve's ok: {broken} (check serve.public_url)"
        )
    return None
