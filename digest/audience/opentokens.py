"""Open tokens: the signed, opaque name of one issue's open pixel (``analytics.opens``).

The pixel of a message is ``/o/<token>``. The token names the issue, the preference
variant and the second the send that composed it began (so ``digest serve`` can tell the
fetches that come as the message is delivered, which are image proxies', from later ones);
all readers of one variant in one run get the same token, so it never names a reader. It
is signed with the link key like click tokens (:mod:`digest.audience.clicktokens`), under
its own label, so a click token is never an open token.

Shape (exactly one spelling is accepted)::

    <base64url(issue \\0 variant \\0 sent)>.<signature: 22 base64url characters>
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from digest.audience.tokens import TokenError

MAX_TOKEN = 600
_SHAPE = re.compile(r"([A-Za-z0-9_-]{4,560})\.([A-Za-z0-9_-]{22})")
_ISSUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_FIELD = re.compile(r"[^\x00-\x1f\x7f]{0,300}")


class OpenTokenError(TokenError):
    """An open token is malformed, forged or altered."""


@dataclass(frozen=True)
class Opened:
    """What an open token names: one issue's variant, sent from ``sent`` (Unix seconds)."""

    issue_id: str
    variant: str
    sent: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signature(payload: bytes, key: bytes) -> bytes:
    return hmac.new(key, b"digest-open-v1\x00" + payload, hashlib.sha256).digest()[:16]


def make_open_token(opened: Opened, key: bytes) -> str:
    """The token of ``opened``, signed with the link key ``key``."""
    if not _ISSUE.fullmatch(opened.issue_id):
        raise ValueError(f"{opened.issue_id!r} is not an issue id")
    if not _FIELD.fullmatch(opened.variant) or opened.sent < 0:
        raise ValueError(f"no open token for variant {opened.variant!r} sent {opened.sent}")
    payload = f"{opened.issue_id}\x00{opened.variant}\x00{opened.sent}".encode()
    return f"{_b64(payload)}.{_b64(_signature(payload, key))}"


def read_open_token(token: str, keys: Sequence[bytes]) -> Opened:
    """What ``token`` names, or :class:`OpenTokenError` when it is not one of ours."""
    refused = OpenTokenError("this image link is damaged or is not a digest link")
    found = _SHAPE.fullmatch(token) if len(token) <= MAX_TOKEN else None
    if not found:
        raise refused
    encoded, signed = found.groups()
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        signature = base64.urlsafe_b64decode(signed + "==")
    except ValueError:
        raise refused from None
    if _b64(payload) != encoded or _b64(signature) != signed:
        raise refused  # stray bits: another spelling of the same bytes
    if not any(hmac.compare_digest(signature, _signature(payload, key)) for key in keys):
        raise refused
    try:
        issue_id, variant, sent = payload.decode("utf-8").split("\x00")
    except (UnicodeDecodeError, ValueError):
        raise refused from None
    if not sent.isdigit() or len(sent) > 12 or (sent != "0" and sent.startswith("0")):
        raise refused
    return Opened(issue_id, variant, int(sent))
