"""Bounce, complaint and unsubscribe events from email providers, checked and normalised.

Each provider proves a webhook is its own in its own way; a request that does not carry that
proof is refused before its body is looked at:

=========  ==============================================================================
Postmark   no signature: the webhook URL carries HTTP basic-auth credentials
           (``https://user:password@news.example.com/webhooks/postmark``), compared here in
           constant time.
Resend     Svix-style: ``svix-id``, ``svix-timestamp`` and ``svix-signature`` headers;
           HMAC-SHA256 of ``id.timestamp.body`` under the base64 part of ``whsec_…``;
           the timestamp must be within ``serve.webhooks.tolerance`` of now.
SendGrid   Signed Event Webhook: ECDSA P-256 / SHA-256 over ``timestamp + body`` with the
           verification key (base64 DER) from the mail settings; headers
           ``X-Twilio-Email-Event-Webhook-Signature`` and ``-Timestamp``.
Mailgun    ``signature: {timestamp, token, signature}`` in the JSON body; the signature is
           hex HMAC-SHA256 of ``timestamp + token`` under the webhook signing key.
=========  ==============================================================================

A signed timestamp must be recent, so a captured request cannot be replayed later:
within ``serve.webhooks.tolerance`` (5 minutes) for Resend, whose Svix signature is made
afresh for each attempt; within ``serve.webhooks.max_age`` (24 hours) for SendGrid and
Mailgun, which deliver late and retry for hours (refusing a late bounce would keep mailing
a dead address). Every delivery has an id (:attr:`WebhookDelivery.delivery_id`): the Svix message
id (Resend), the signed ``timestamp + body`` (SendGrid: an ECDSA signature can be re-encoded,
what it signs cannot), the signed token (Mailgun, whose body is not signed), the body
(Postmark). The subscriber store records it before anything is applied, in the same
transaction, and a delivery it has seen is never applied again — across restarts and
between every ``digest serve`` process on the store (see
:meth:`~digest.audience.subscribers.SubscriberStore.claim_delivery`). That also answers a
provider's own retry of a delivery whose first answer was lost.

Only events that should stop mail are kept: hard bounces, complaints and unsubscribes.
Soft bounces, deliveries, opens and clicks are accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from digest.config import Secret, WebhooksConfig
from digest.errors import DigestError
from digest.serve.jsonbody import BadJson, loads_bounded

Kind = Literal["bounced", "complained", "unsubscribed"]
PROVIDERS = ("postmark", "resend", "sendgrid", "mailgun")


@dataclass(frozen=True)
class WebhookEvent:
    """One address that should get no more mail, and why."""

    provider: str
    email: str
    kind: Kind
    detail: str = ""
    event_id: str = ""  # the provider's id of the event, where it gives one (Mailgun)


class WebhookError(DigestError):
    """A webhook request was refused; ``status`` is the HTTP answer. ``spent`` is the
    delivery id when the request's proof verified before it was refused: that proof must
    not work again (a Mailgun signature does not cover the body, so it could carry another)."""

    status = 400

    def __init__(self, message: str, *, spent: str = "") -> None:
        super().__init__(message)
        self.spent = spent


class WebhookDisabled(WebhookError):
    status = 404


class WebhookUnauthorized(WebhookError):
    status = 401


Environ = Mapping[str, str] | None


def _secret(value: Secret | None, provider: str, key: str, environ: Environ) -> str:
    if value is None:
        raise WebhookDisabled(
            f"the {provider} webhook is off: set serve.webhooks.{key} in config.yaml"
        )
    return value.resolve(dict(environ) if environ is not None else None)


def _json(body: bytes, provider: str, max_depth: int) -> Any:
    try:
        return loads_bounded(body, max_depth=max_depth)
    except BadJson as exc:
        raise WebhookError(f"{provider} webhook: {exc}") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) or headers.get(name.lower())
    if not value:
        raise WebhookUnauthorized(f"missing header {name}")
    return value


# -- Postmark


def verify_postmark(
    headers: Mapping[str, str], settings: WebhooksConfig, environ: Environ = None
) -> None:
    password = _secret(settings.postmark_password, "postmark", "postmark_password", environ)
    username = settings.postmark_username or ""
    given = headers.get("authorization", "")
    scheme, _, encoded = given.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise WebhookUnauthorized("postmark webhook: no basic-auth credentials")
    try:
        user, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise WebhookUnauthorized("postmark webhook: unreadable credentials") from None
    user_ok = hmac.compare_digest(user.encode(), username.encode())
    secret_ok = hmac.compare_digest(secret.encode(), password.encode())
    if not (user_ok and secret_ok):
        raise WebhookUnauthorized("postmark webhook: wrong credentials")


def parse_postmark(data: Any) -> list[WebhookEvent]:
    records = data if isinstance(data, list) else [data]
    events: list[WebhookEvent] = []
    for record in records:
        if not isinstance(record, dict):
            continue
        kind = record.get("RecordType")
        if kind == "Bounce":
            hard = record.get("Type") in ("HardBounce", "BadEmailAddress") or record.get("Inactive")
            if hard and isinstance(record.get("Email"), str):
                events.append(
                    WebhookEvent("postmark", record["Email"], "bounced", str(record.get("Type")))
                )
        elif kind == "SpamComplaint" and isinstance(record.get("Email"), str):
            events.append(WebhookEvent("postmark", record["Email"], "complained", "SpamComplaint"))
        elif kind == "SubscriptionChange" and record.get("SuppressSending") is True:
            address = record.get("Recipient")
            reason = record.get("SuppressionReason")
            mapped: Kind = {"HardBounce": "bounced", "SpamComplaint": "complained"}.get(
                str(reason), "unsubscribed"
            )  # type: ignore[assignment]
            if isinstance(address, str):
                events.append(WebhookEvent("postmark", address, mapped, str(reason)))
    return events


def check_fresh(
    provider: str,
    name: str,
    timestamp: str,
    settings: WebhooksConfig,
    now: datetime,
    *,
    max_age: str = "max_age",
) -> None:
    """Refuse a signed Unix ``timestamp`` older than the setting named ``max_age``, or
    further than ``tolerance`` ahead (clock skew).

    Resend (Svix) signs every attempt afresh and passes ``max_age="tolerance"``; SendGrid
    and Mailgun may deliver late, so theirs may be up to ``max_age`` old.
    """
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookUnauthorized(f"{provider} webhook: {name} is not a number") from None
    age = now.timestamp() - sent_at
    limit: timedelta = getattr(settings, max_age)
    if age > limit.total_seconds() or -age > settings.tolerance.total_seconds():
        raise WebhookUnauthorized(
            f"{provider} webhook: the timestamp is too old or in the future "
            f"(serve.webhooks.{max_age} is {limit})"
        )


# -- Resend (Svix)


def verify_svix(
    headers: Mapping[str, str],
    body: bytes,
    settings: WebhooksConfig,
    *,
    now: datetime,
    environ: Environ = None,
) -> str:
    secret = _secret(settings.resend_secret, "resend", "resend_secret", environ)
    message_id = _header(headers, "svix-id")
    timestamp = _header(headers, "svix-timestamp")
    signatures = _header(headers, "svix-signature")
    check_fresh("resend", "svix-timestamp", timestamp, settings, now, max_age="tolerance")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except binascii.Error:
        raise WebhookUnauthorized("resend webhook: the configured secret is not base64") from None
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for entry in signatures.split():
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return message_id
    raise WebhookUnauthorized("resend webhook: no signature matches")


def parse_resend(data: Any) -> list[WebhookEvent]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise WebhookError("resend webhook: expected an object with 'type' and 'data'")
    kinds: dict[str, Kind] = {"email.bounced": "bounced", "email.complained": "complained"}
    kind = kinds.get(str(data.get("type")))
    if kind is None:
        return []
    payload = data["data"]
    bounce = payload.get("bounce")
    if kind == "bounced" and isinstance(bounce, dict) and bounce.get("type") == "Transient":
        return []
    to = payload.get("to")
    addresses = to if isinstance(to, list) else [to]
    return [
        WebhookEvent("resend", address, kind, str(data.get("type")))
        for address in addresses
        if isinstance(address, str)
    ]


# -- SendGrid

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


def verify_sendgrid(
    headers: Mapping[str, str],
    body: bytes,
    settings: WebhooksConfig,
    *,
    now: datetime,
    environ: Environ = None,
) -> str:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    encoded_key = _secret(settings.sendgrid_public_key, "sendgrid", "sendgrid_public_key", environ)
    signature_text = _header(headers, SENDGRID_SIGNATURE)
    timestamp = _header(headers, SENDGRID_TIMESTAMP)
    try:
        key = load_der_public_key(base64.b64decode(encoded_key))
    except (binascii.Error, ValueError):
        raise WebhookUnauthorized(
            "sendgrid webhook: serve.webhooks.sendgrid_public_key is not a base64 DER key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookUnauthorized("sendgrid webhook: the verification key is not an EC key")
    try:
        signature = base64.b64decode(signature_text)
        key.verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, InvalidSignature, ValueError):
        raise WebhookUnauthorized("sendgrid webhook: the signature does not verify") from None
    check_fresh("sendgrid", SENDGRID_TIMESTAMP, timestamp, settings, now)
    # Not the signature: (r, s) and (r, n - s) both verify, so a replay could re-encode it.
    return "sha256:" + hashlib.sha256(timestamp.encode() + b"." + body).hexdigest()


def parse_sendgrid(data: Any) -> list[WebhookEvent]:
    if not isinstance(data, list):
        raise WebhookError("sendgrid webhook: expected a JSON list of events")
    events: list[WebhookEvent] = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str):
            continue
        name = item.get("event")
        kind: Kind | None = None
        if name == "bounce" and item.get("type", "bounce") == "bounce":
            kind = "bounced"
        elif name == "spamreport":
            kind = "complained"
        elif name in ("unsubscribe", "group_unsubscribe"):
            kind = "unsubscribed"
        if kind is not None:
            events.append(WebhookEvent("sendgrid", item["email"], kind, str(name)))
    return events


# -- Mailgun


def verify_mailgun(
    data: Any, settings: WebhooksConfig, *, now: datetime, environ: Environ = None
) -> str:
    key = _secret(settings.mailgun_signing_key, "mailgun", "mailgun_signing_key", environ)
    signature = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(signature, dict):
        raise WebhookUnauthorized("mailgun webhook: no signature object in the body")
    parts = [signature.get(k) for k in ("timestamp", "token", "signature")]
    if not all(isinstance(p, str) and p for p in parts):
        raise WebhookUnauthorized("mailgun webhook: the signature object is incomplete")
    timestamp, token, given = (str(p) for p in parts)
    if not (timestamp + token + given).isascii():
        raise WebhookUnauthorized("mailgun webhook: the signature object is not ASCII")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookUnauthorized("mailgun webhook: the signature does not verify")
    check_fresh("mailgun", "signature.timestamp", timestamp, settings, now)
    return token


def parse_mailgun(data: Any) -> list[WebhookEvent]:
    event = data.get("event-data") if isinstance(data, dict) else None
    if not isinstance(event, dict):
        raise WebhookError("mailgun webhook: no event-data in the body")
    name = event.get("event")
    recipient = event.get("recipient")
    given_id = event.get("id")
    event_id = given_id if isinstance(given_id, str) else ""
    if not isinstance(recipient, str):
        return []
    if name == "failed" and event.get("severity") == "permanent":
        return [WebhookEvent("mailgun", recipient, "bounced", "failed", event_id)]
    if name == "complained":
        return [WebhookEvent("mailgun", recipient, "complained", "complained", event_id)]
    if name == "unsubscribed":
        return [WebhookEvent("mailgun", recipient, "unsubscribed", "unsubscribed", event_id)]
    return []


@dataclass(frozen=True)
class WebhookDelivery:
    """A checked webhook request: its events, and the id that names it (module docstring)."""

    provider: str
    events: list[WebhookEvent]
    delivery_id: str


def read_webhook(
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    settings: WebhooksConfig,
    *,
    now: datetime,
    environ: Environ = None,
    max_depth: int = 32,
) -> WebhookDelivery:
    """Check that ``body`` came from ``provider`` and return the events that stop mail.

    Raises :class:`WebhookDisabled` (no credentials configured, or an unknown provider),
    :class:`WebhookUnauthorized` (bad or missing proof, or a stale timestamp) or
    :class:`WebhookError` (bad body). ``headers`` must be looked up case-insensitively
    (Starlette's are).
    """
    parsers: dict[str, Callable[[Any], list[WebhookEvent]]] = {
        "postmark": parse_postmark,
        "resend": parse_resend,
        "sendgrid": parse_sendgrid,
        "mailgun": parse_mailgun,
    }
    if provider not in parsers:
        raise WebhookDisabled(f"no webhook for '{provider}' (known: {', '.join(PROVIDERS)})")
    delivery_id = ""
    if provider == "postmark":
        verify_postmark(headers, settings, environ)
    elif provider == "resend":
        delivery_id = verify_svix(headers, body, settings, now=now, environ=environ)
    elif provider == "sendgrid":
        delivery_id = verify_sendgrid(headers, body, settings, now=now, environ=environ)
    try:
        data = _json(body, provider, max_depth)
        if provider == "mailgun":
            delivery_id = verify_mailgun(data, settings, now=now, environ=environ)
        elif provider == "postmark":
            delivery_id = postmark_id(data, body)
        return WebhookDelivery(provider, parsers[provider](data), delivery_id)
    except (WebhookUnauthorized, WebhookDisabled):
        raise
    except WebhookError as exc:
        exc.spent = delivery_id  # the proof verified: the body is what was refused
        raise


def postmark_id(data: Any, body: bytes) -> str:
    """Postmark signs nothing, so a delivery is named by what it reports: each record's
    type and Postmark's ids for it (``ID``, ``MessageID``, ``ChangedAt``). A captured
    record sent again, with whatever body around it, is the same delivery; without ids,
    the body itself names it."""
    records = data if isinstance(data, list) else [data]
    parts: list[str] = []
    for record in records:
        if not isinstance(record, dict):
            continue
        ids = [record.get(k) for k in ("ID", "MessageID", "ChangedAt")]
        if not any(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
            return "sha256:" + hashlib.sha256(body).hexdigest()
        parts.append(json.dumps([record.get("RecordType"), *ids], default=str))
    if not parts:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    return "records:" + "|".join(sorted(parts))
