"""The open pixel (``analytics.opens``): one 1×1 image per sent variant of an issue.

With ``opens: true`` the sending stage hands each preference variant's email to
:func:`add_open_pixel` once, beside the counted links (:mod:`digest.email.clicklinks`): a
``<img>`` of ``<serve.public_url>/o/<token>`` goes last in the body, where it takes no room
(1×1, no border, ``display:block`` in a zero-height box) and screen readers skip it (empty
``alt``, ``role="presentation"``, ``aria-hidden``). The token names the issue, the variant
and the second the send began, never the reader (:mod:`digest.audience.opentokens`). With
``opens: false`` the email is returned as it is, the same object. The text part has no
pixel, and the web (archive) version none either: nobody is sent it.
"""

from __future__ import annotations

import html as html_lib
from dataclasses import replace
from datetime import datetime

from digest.audience.links import open_url
from digest.audience.opentokens import Opened, make_open_token
from digest.config import Config
from digest.email.message import ComposedEmail

PIXEL = (
    '<div style="height:0;line-height:0;font-size:0;overflow:hidden" aria-hidden="true">'
    '<img src="{src}" width="1" height="1" alt="" role="presentation" '
    'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0"></div>'
)


def counts_opens(config: Config) -> bool:
    return config.analytics.opens


def add_open_pixel(
    config: Config, composed: ComposedEmail, *, variant: str, sent: datetime, key: bytes
) -> ComposedEmail:
    """``composed`` with its pixel before ``</body>`` (at the end when there is none)."""
    if not counts_opens(config) or composed.web:
        return composed
    token = make_open_token(Opened(composed.issue_id, variant, int(sent.timestamp())), key)
    pixel = PIXEL.format(src=html_lib.escape(open_url(config, token), quote=True))
    body, found, rest = composed.html.rpartition("</body>")
    html = f"{body}{pixel}{found}{rest}" if found else composed.html + pixel
    return replace(composed, html=html)
