"""Counted post links: each post link of a composed email through ``/c/<token>``.

With ``analytics.clicks`` on, the sending stage hands every preference variant's email to
:func:`count_clicks` once (:class:`digest.delivery.preferences.Variants`): each post link
in the HTML and text parts becomes ``<serve.public_url>/c/<token>``, the token naming the
issue, the post's place in the issue's manifest and the variant (see
:mod:`digest.audience.clicktokens`). With ``off`` the email is returned as it is, the same
object, so its bytes are exactly those of an issue composed without analytics.

``digest serve`` turns a token back into a post with :func:`manifest_links`: the URLs the
issue's manifest lists, in the same order, so a click only ever goes where the issue did.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from digest.audience.clicktokens import Click, make_click_token, reader_seal
from digest.audience.links import click_url
from digest.config import Config
from digest.email.message import ComposedEmail

READER_MARKER = "[[digest:click_reader]]"
"""Where a consenting reader's seal goes in each counted link (``/c/<token>/<seal>``):
empty for everyone else, so their links name no reader (``per_subscriber`` only)."""


def counts_clicks(config: Config) -> bool:
    return config.analytics.clicks != "off"


def counts_readers(config: Config) -> bool:
    return config.analytics.clicks == "per_subscriber"


def reader_value(config: Config, issue_id: str, handle: str | None, key: bytes) -> dict[str, str]:
    """The ``click_reader`` marker's value for one recipient: ``/<seal>`` for a reader who
    agreed to per-reader engagement (``handle``), empty for everyone else."""
    if not counts_readers(config):
        return {}
    return {"click_reader": "/" + reader_seal(issue_id, handle, key) if handle else ""}


def count_clicks(
    config: Config,
    composed: ComposedEmail,
    *,
    variant: str,
    issue_posts: Sequence[tuple[str, str, str]],
    key: bytes,
) -> ComposedEmail:
    """``composed`` with its post links counted; ``issue_posts`` is the whole issue's
    ``posts`` (the manifest's order), ``key`` the link key. Unchanged when clicks are off
    and for the web (archive) version, which nobody is sent."""
    if not counts_clicks(config) or composed.web:
        return composed
    place = {slug: index for index, (_, slug, _) in enumerate(issue_posts)}
    html, text = composed.html, composed.text
    for _section, slug, url in composed.posts:
        token = make_click_token(Click(composed.issue_id, place[slug], variant), key)
        counted = click_url(config, token) + (READER_MARKER if counts_readers(config) else "")
        html = html.replace(f'href="{html_lib.escape(url, quote=True)}"', f'href="{counted}"')
        # a URL in the text part stands alone (a line, or a word); never part of a longer one
        text = re.sub(rf"(?<!\S){re.escape(url)}(?!\S)", counted.replace("\\", "\\\\"), text)
    return replace(composed, html=html, text=text)


def manifest_links(manifest: Mapping[str, Any]) -> list[str]:
    """The post URLs of an issue's ``manifest.json`` in the order click tokens count them."""
    return [
        str(post["url"])
        for section in manifest.get("sections", [])
        for post in section.get("posts", [])
    ]
