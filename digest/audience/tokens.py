"""Signed, URL-safe tokens for unsubscribe, preference and confirmation links.

A token names one address and one purpose, and is signed with HMAC-SHA256 under a key made
from the subscriber's own secret (stored with the subscriber) and, when it is set, the
server secret in ``$DIGEST_SECRET``. So a token:

- cannot be made without the subscriber's secret (forging needs the key),
- cannot be moved to another address or purpose (both are inside the signature),
- stops working when the subscriber's secret is rotated, or when it expires.

Shape: ``<base64url(email)>.<expiry in base 36, or empty>.<base64url(signature)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from digest.audience.keys import SECRET_ENV, link_keys
from digest.config import Config
from digest.errors import DigestError

PURPOSES = ("unsubscribe", "preferences", "confirm")
__all__ = ["PURPOSES", "SECRET_ENV", "TokenError", "make_token", "token_secret", "verify_token"]


class TokenError(DigestError):
    """A token is malformed, forged, tampered with, expired or for another purpose."""

    exit_code = 1


def server_secret(environ: dict[str, str] | None = None) -> bytes | None:
    """The server-wide secret from ``$DIGEST_SECRET``, or None when it is not set."""
    env = os.environ if environ is None else environ
    value = env.get(SECRET_ENV)
    return value.encode() if value else None


def token_secret(config: Config) -> bytes:
    """The link key that signs new links: ``serve.secret``, else ``$DIGEST_SECRET``, else the
    key file, created once (see :mod:`digest.audience.keys`)."""
    return link_keys(config).signing


def verifying_secrets(config: Config) -> tuple[bytes, ...]:
    """Every link key a link may be signed with (the current one first)."""
    return link_keys(config).verifying


def signing_key(subscriber_secret: bytes, server: bytes | None = None) -> bytes:
    """The key for one subscriber's tokens: their secret, bound to the server's if set."""
    if not server:
        return subscriber_secret
    return hmac.new(server, b"digest-token-key\x00" + subscriber_secret, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(purpose: str, email: str, expiry: str, key: bytes) -> bytes:
    message = b"\x00".join((b"digest-token-v1", purpose.encode(), email.encode(), expiry.encode()))
    return hmac.new(key, message, hashlib.sha256).digest()


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; expected one of {PURPOSES}")


def make_token(purpose: str, email: str, key: bytes, *, expires_at: datetime | None = None) -> str:
    """A token that proves ``email`` asked for ``purpose`` (unsubscribe, preferences, confirm)."""
    _check_purpose(purpose)
    expiry = ""
    if expires_at is not None:
        expiry = _base36(int(expires_at.astimezone(timezone.utc).timestamp()))
    return f"{_b64(email.encode())}.{expiry}.{_b64(_signature(purpose, email, expiry, key))}"


def email_of(token: str) -> str:
    """The address a token names, without checking its signature (for lookups only)."""
    parts = token.strip().split(".")
    if len(parts) != 3 or not parts[0]:
        raise TokenError("this link is not a digest token (it should have three parts)")
    try:
        return _unb64(parts[0]).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise TokenError("this link is damaged: its address part cannot be read") from None


def verify_token(
    token: str,
    purpose: str,
    key_for: Callable[[str], bytes | Sequence[bytes] | None],
    *,
    now: datetime,
) -> str:
    """The email the token was made for, or :class:`TokenError` saying why it is not valid.

    ``key_for(email)`` returns that subscriber's signing key (or every key a link of theirs
    may be signed with: the current one and those still in a rotation's grace period), or
    None when there is no such subscriber. Signatures are compared in constant time.
    """
    _check_purpose(purpose)
    email = email_of(token)
    _, expiry, signature_text = token.strip().split(".")
    try:
        signature = _unb64(signature_text)
    except (binascii.Error, ValueError):
        raise TokenError("this link is damaged: its signature cannot be read") from None
    found = key_for(email)
    if found is None:
        raise TokenError(f"no subscriber {email} (the link may be for a removed address)")
    keys = [found] if isinstance(found, bytes) else list(found)
    matches = [
        hmac.compare_digest(signature, _signature(purpose, email, expiry, key)) for key in keys
    ]
    if not any(matches):
        raise TokenError(
            f"this {purpose} link is not valid for {email}: it was altered, made for "
            "something else, or its key has changed"
        )
    if expiry:
        try:
            expires = int(expiry, 36)
        except ValueError:
            raise TokenError("this link is damaged: its expiry cannot be read") from None
        if now.timestamp() >= expires:
            raise TokenError(f"this {purpose} link has expired; ask for a new one")
    return email


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if number <= 0:
        return "0"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out
