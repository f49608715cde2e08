"""Signed, URL-safe tokens for unsubscribe, preference and confirmation links.

A token names one subscriber and one purpose, and is signed with HMAC-SHA256 under a key
made from the subscriber's own secret (stored with the subscriber) and the link key (see
:mod:`digest.audience.keys`). So a token:

- holds no address: it names the subscriber by an opaque *handle* (derived from their
  secret, looked up in the store), so links in access logs and proxies say nothing about
  who clicked them;
- cannot be made without the subscriber's secret (forging needs the key),
- cannot be moved to another subscriber or purpose (both are inside the signature),
- stops working when the subscriber's secret is rotated, or when it expires.

Shape (exactly one spelling is accepted: no padding, no spaces, canonical base 36)::

    2.<handle: 16 base64url characters>.<expiry in base 36, or empty>.<signature: 43>

Links digest mailed before handles existed have the older shape
``<base64url(address)>.<expiry>.<signature>``; they are still accepted, signed as they
were, until they expire (see docs/subscribers.md, "Links and tokens").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from digest.audience.keys import SECRET_ENV, link_keys
from digest.config import Config
from digest.errors import DigestError

PURPOSES = ("unsubscribe", "preferences", "confirm", "keep")
__all__ = [
    "PURPOSES",
    "SECRET_ENV",
    "Subject",
    "TokenError",
    "handle_of",
    "make_token",
    "newsletter_seal",
    "parse_token",
    "token_secret",
    "verify_token",
]


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
    """Strict: only the canonical unpadded base64url spelling of some bytes."""
    if not _B64.fullmatch(text):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:  # stray bits in the last character: another spelling
        raise ValueError("not canonical base64url")
    return data


_B64 = re.compile(r"[A-Za-z0-9_-]*")
_V2 = re.compile(r"2\.([A-Za-z0-9_-]{16})\.([0-9a-z]{0,13})\.([A-Za-z0-9_-]{43})")
_V1 = re.compile(r"([A-Za-z0-9_-]{1,700})\.([0-9a-z]{0,13})\.([A-Za-z0-9_-]{43})")


def handle_of(subscriber_secret: bytes) -> str:
    """The opaque name of a subscriber in their links: 16 base64url characters derived
    from their secret (so it changes when the secret is rotated, like their links)."""
    digest = hmac.new(subscriber_secret, b"digest-handle-v1", hashlib.sha256).digest()
    return _b64(digest[:12])


@dataclass(frozen=True)
class Subject:
    """Whom a token names: a handle, or (a link in the older shape) an address."""

    handle: str | None = None
    email: str | None = None

    def __str__(self) -> str:
        return self.email or "this subscriber"


def _signature(purpose: str, subject: Subject, expiry: str, key: bytes) -> bytes:
    if subject.handle is not None:
        fields = (b"digest-token-v2", purpose.encode(), subject.handle.encode(), expiry.encode())
    else:
        assert subject.email is not None
        fields = (b"digest-token-v1", purpose.encode(), subject.email.encode(), expiry.encode())
    return hmac.new(key, b"\x00".join(fields), hashlib.sha256).digest()


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; expected one of {PURPOSES}")


def _expiry(expires_at: datetime | None) -> str:
    if expires_at is None:
        return ""
    return _base36(int(expires_at.astimezone(timezone.utc).timestamp()))


def make_token(purpose: str, handle: str, key: bytes, *, expires_at: datetime | None = None) -> str:
    """A token that proves the subscriber with ``handle`` (:func:`handle_of`) asked for
    ``purpose`` (unsubscribe, preferences, confirm)."""
    _check_purpose(purpose)
    if not re.fullmatch(r"[A-Za-z0-9_-]{16}", handle):
        raise ValueError(f"{handle!r} is not a subscriber handle")
    expiry = _expiry(expires_at)
    signature = _signature(purpose, Subject(handle=handle), expiry, key)
    return f"2.{handle}.{expiry}.{_b64(signature)}"


def make_legacy_token(
    purpose: str, email: str, key: bytes, *, expires_at: datetime | None = None
) -> str:
    """A token in the older shape, which held the address (digest no longer mails these;
    for tests of the links already mailed)."""
    _check_purpose(purpose)
    expiry = _expiry(expires_at)
    signature = _signature(purpose, Subject(email=email), expiry, key)
    return f"{_b64(email.encode())}.{expiry}.{_b64(signature)}"


def parse_token(token: str) -> tuple[Subject, str, bytes]:
    """(whom it names, its expiry text, its signature); TokenError for anything but the
    one canonical spelling of a token (no spaces, padding or other characters)."""
    damaged = TokenError("this link is damaged or is not a digest link")
    found = _V2.fullmatch(token)
    try:
        if found:
            subject = Subject(handle=found.group(1))
        else:
            found = _V1.fullmatch(token)
            if not found:
                raise damaged
            email = _unb64(found.group(1)).decode("utf-8")
            if "@" not in email:
                raise damaged
            subject = Subject(email=email)
        expiry, signature = found.group(2), _unb64(found.group(3))
    except (ValueError, UnicodeDecodeError):
        raise damaged from None
    if expiry and (expiry.startswith("0") or len(signature) != 32):
        raise damaged
    return subject, expiry, signature


KeyFor = Callable[[Subject], "bytes | Sequence[bytes] | None"]


def verify_token(token: str, purpose: str, key_for: KeyFor, *, now: datetime) -> Subject:
    """Whom the token names, or :class:`TokenError` saying why it is not valid.

    ``key_for(subject)`` returns that subscriber's signing key (or every key a link of
    theirs may be signed with: the current one and those still in a rotation's grace
    period), or None when there is no such subscriber. Signatures are compared in
    constant time.
    """
    _check_purpose(purpose)
    subject, expiry, signature = parse_token(token)
    found = key_for(subject)
    if found is None:
        raise TokenError("no such subscriber (the link may be for a removed address)")
    keys = [found] if isinstance(found, bytes) else list(found)
    matches = [
        hmac.compare_digest(signature, _signature(purpose, subject, expiry, key)) for key in keys
    ]
    if not any(matches):
        raise TokenError(
            f"this {purpose} link is not valid: it was altered, made for something else, "
            "or its key has changed"
        )
    if expiry and now.timestamp() >= int(expiry, 36):
        raise TokenError(f"this {purpose} link has expired; ask for a new one")
    return subject


def newsletter_seal(key: bytes, handle: str, newsletter: str) -> str:
    """What binds a newsletter's name to a subscriber's unsubscribe link (``?newsletter=
    weekly&seal=...``): signed with the subscriber's key like their tokens, so a link cannot
    be made to end another newsletter, or all of them."""
    fields = (b"digest-newsletter-v1", handle.encode(), newsletter.encode())
    return _b64(hmac.new(key, b"\x00".join(fields), hashlib.sha256).digest()[:16])


def seal_holds(seal: str, keys: Sequence[bytes], handle: str, newsletter: str) -> bool:
    """Whether ``seal`` was made by :func:`newsletter_seal` under one of ``keys``."""
    return any(
        hmac.compare_digest(seal.encode(), newsletter_seal(key, handle, newsletter).encode())
        for key in keys
    )


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if number <= 0:
        return "0"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out
