"""Click tokens: the signed, opaque name of one post link in one issue.

A post link in an issue with ``analytics.clicks`` on goes to ``/c/<token>`` on
``digest serve``. The token names the issue, the post's place in the issue's manifest and
the preference variant the message was (and, in ``per_subscriber`` mode, the handle of a
reader who consented; see :mod:`digest.audience.tokens`), never an address. It is signed
with the link key (HMAC-SHA256 under :func:`~digest.audience.tokens.token_secret`), so a
token cannot be made or altered without the key, and it holds no URL: ``digest serve``
redirects only to the post the issue's manifest lists at that place.

Shape (exactly one spelling is accepted)::

    <base64url(issue \\0 post \\0 variant \\0 handle)>.<signature: 22 base64url characters>
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
_HANDLE = re.compile(r"[A-Za-z0-9_-]{16}")
_FIELD = re.compile(r"[^\x00-\x1f\x7f]{0,300}")


class ClickTokenError(TokenError):
    """A click token is malformed, forged or altered."""


@dataclass(frozen=True)
class Click:
    """What a click token names: one post link of one issue's variant (and, with consent,
    the reader's opaque handle)."""

    issue_id: str
    post: int  # the post's place in the issue's manifest, from 0
    variant: str
    handle: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_LABEL = b"digest-click-v1"


def _signature(payload: bytes, key: bytes, label: bytes = _LABEL) -> bytes:
    return hmac.new(key, label + b"\x00" + payload, hashlib.sha256).digest()[:16]


def signed_token(payload: bytes, key: bytes, label: bytes) -> str:
    """``payload`` and its signature under ``label`` (one kind of link token per label):
    the one spelling of a link token."""
    return f"{_b64(payload)}.{_b64(_signature(payload, key, label))}"


def signed_fields(token: str, keys: Sequence[bytes], label: bytes, count: int) -> list[str] | None:
    """The ``count`` NUL-separated fields ``token`` holds, when one of ``keys`` signed it
    under ``label``; None for anything else: another spelling of the same bytes, a
    signature no key made, another number of fields."""
    found = _SHAPE.fullmatch(token) if len(token) <= MAX_TOKEN else None
    if not found:
        return None
    encoded, signed = found.groups()
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        signature = base64.urlsafe_b64decode(signed + "==")
    except ValueError:
        return None
    if _b64(payload) != encoded or _b64(signature) != signed:
        return None  # stray bits: another spelling of the same bytes
    if not any(hmac.compare_digest(signature, _signature(payload, k, label)) for k in keys):
        return None
    try:
        fields = payload.decode("utf-8").split("\x00")
    except UnicodeDecodeError:
        return None
    return fields if len(fields) == count else None


def _payload(click: Click) -> bytes:
    return "\x00".join((click.issue_id, str(click.post), click.variant, click.handle or "")).encode(
        "utf-8"
    )


def make_click_token(click: Click, key: bytes) -> str:
    """The token of ``click``, signed with the link key ``key``."""
    if not _ISSUE.fullmatch(click.issue_id):
        raise ValueError(f"{click.issue_id!r} is not an issue id")
    if click.post < 0 or not _FIELD.fullmatch(click.variant):
        raise ValueError(f"no click token for post {click.post} of variant {click.variant!r}")
    if click.handle is not None and not _HANDLE.fullmatch(click.handle):
        raise ValueError(f"{click.handle!r} is not a subscriber handle")
    return signed_token(_payload(click), key, _LABEL)


def read_click_token(token: str, keys: Sequence[bytes]) -> Click:
    """What ``token`` names, or :class:`ClickTokenError` when it is not one of ours:
    another spelling, a signature no key in ``keys`` made, or fields out of shape."""
    refused = ClickTokenError("this link is damaged or is not a digest link")
    fields = signed_fields(token, keys, _LABEL, 4)
    if fields is None:
        raise refused
    issue_id, post, variant, handle = fields
    if not post.isdigit() or len(post) > 6 or (post != "0" and post.startswith("0")):
        raise refused
    return Click(issue_id, int(post), variant, handle or None)


# --------------------------------------------------------------------------- reader seals

_SEAL = re.compile(r"([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22})")


def _seal_signature(issue_id: str, handle: str, key: bytes) -> bytes:
    fields = b"\x00".join((b"digest-click-reader-v1", issue_id.encode(), handle.encode()))
    return hmac.new(key, fields, hashlib.sha256).digest()[:16]


def reader_seal(issue_id: str, handle: str, key: bytes) -> str:
    """What a consenting reader's post links carry after the link's token
    (``/c/<token>/<seal>``): their opaque handle, signed with the link key for this issue,
    so it can be neither made up nor moved to another issue. No address, no secret."""
    if not _ISSUE.fullmatch(issue_id) or not _HANDLE.fullmatch(handle):
        raise ValueError(f"no reader seal for {handle!r} in {issue_id!r}")
    return f"{handle}.{_b64(_seal_signature(issue_id, handle, key))}"


def read_reader_seal(seal: str, issue_id: str, keys: Sequence[bytes]) -> str:
    """The handle ``seal`` names for ``issue_id``, or :class:`ClickTokenError`."""
    found = _SEAL.fullmatch(seal)
    if not found:
        raise ClickTokenError("this link is damaged or is not a digest link")
    handle, signed = found.groups()
    for key in keys:
        if hmac.compare_digest(signed, _b64(_seal_signature(issue_id, handle, key))):
            return handle
    raise ClickTokenError("this link is damaged or is not a digest link")
