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

import re
from collections.abc import Sequence
from dataclasses import dataclass

from digest.audience.clicktokens import signed_fields, signed_token
from digest.audience.tokens import TokenError

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


_LABEL = b"digest-open-v1"


def make_open_token(opened: Opened, key: bytes) -> str:
    """The token of ``opened``, signed with the link key ``key``."""
    if not _ISSUE.fullmatch(opened.issue_id):
        raise ValueError(f"{opened.issue_id!r} is not an issue id")
    if not _FIELD.fullmatch(opened.variant) or opened.sent < 0:
        raise ValueError(f"no open token for variant {opened.variant!r} sent {opened.sent}")
    payload = f"{opened.issue_id}\x00{opened.variant}\x00{opened.sent}".encode()
    return signed_token(payload, key, _LABEL)


def read_open_token(token: str, keys: Sequence[bytes]) -> Opened:
    """What ``token`` names, or :class:`OpenTokenError` when it is not one of ours."""
    refused = OpenTokenError("this image link is damaged or is not a digest link")
    fields = signed_fields(token, keys, _LABEL, 3)
    if fields is None:
        raise refused
    issue_id, variant, sent = fields
    if not sent.isdigit() or len(sent) > 12 or (sent != "0" and sent.startswith("0")):
        raise refused
    return Opened(issue_id, variant, int(sent))
