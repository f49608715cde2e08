"""Brevo: ``POST /v3/smtp/email`` with up to 1,000 ``messageVersions`` a request.

The HTML and text go up once per request with ``{{params.<name>}}`` placeholders; each
message version carries one recipient and only their ``params``. Every request carries
Brevo's documented idempotency key (``headers.idempotencyKey`` in the JSON body, a UUID
derived from the issue and the recipients), so a request resent after a dropped connection
or a crash is not sent twice. A 400 "email is not valid in messageVersions[i].to" fails that
recipient permanently and the others are sent again at once (with the key of the smaller
set); any other 400 and 401 stop the send. Rate limits come as ``x-sib-ratelimit-*``.

Suppressions: ``GET /v3/smtp/blockedContacts`` (hard bounces, spam reports, unsubscribes).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

from digest.config.providers import BrevoSettings
from digest.delivery.providers import registry
from digest.delivery.providers.base import (
    Batch,
    Check,
    Event,
    ProviderSettings,
    Recipient,
    Result,
    idempotency_key,
)
from digest.delivery.providers.http import (
    Envelope,
    HttpProvider,
    RequestFailed,
    Substitution,
    Suppression,
    encode_json,
    error_message,
    unanswered,
)

_NAMESPACE = uuid.UUID("5d0c8a4e-3f52-4a3b-9d0e-6c1f2b7a9e10")

_KINDS = {
    "hardBounce": "bounced",
    "contactFlaggedAsSpam": "complained",
    "unsubscribedViaEmail": "unsubscribed",
    "unsubscribedViaApi": "unsubscribed",
    "unsubscribedViaMA": "unsubscribed",
    "adminBlocked": "unsubscribed",
}


def placeholder(name: str) -> str:
    return "{{params." + name + "}}"


def idempotency_uuid(key: str) -> str:
    """Brevo wants a UUID: the same batch key always gives the same one."""
    return str(uuid.uuid5(_NAMESPACE, key))


def build_request(
    envelope: Envelope,
    sub: Substitution,
    recipients: tuple[Recipient, ...],
    *,
    issue_id: str,
    key: str,
) -> dict[str, Any]:
    sender: dict[str, str] = {"email": envelope.from_email}
    if envelope.from_name:
        sender["name"] = envelope.from_name
    body: dict[str, Any] = {
        "sender": sender,
        "subject": sub.subject,
        "htmlContent": sub.html,
        "textContent": sub.text,
        "headers": {**sub.headers, "idempotencyKey": idempotency_uuid(key)},
        "tags": [issue_id],
        "messageVersions": [
            {"to": [{"email": r.email}], "params": sub.variables(r.values)} for r in recipients
        ],
    }
    if envelope.reply_to:
        body["replyTo"] = {"email": envelope.reply_to}
    return body


_REFUSED = re.compile(r"messageVersions\[(\d+)\]")


class Brevo(HttpProvider):
    name = "brevo"
    Settings: ClassVar[type[ProviderSettings]] = BrevoSettings
    settings: BrevoSettings
    max_batch = 1000
    default_concurrency = 4
    supports_idempotency = True

    def _headers(self) -> dict[str, str]:
        return {
            "api-key": self.settings.api_key.resolve(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def send(self, batch: Batch) -> Iterator[Event]:
        envelope = Envelope.of(batch)
        recipients = batch.recipients
        key = batch.idempotency_key
        self.stats.add(recipients=len(recipients))
        while recipients:
            sub = envelope.substitute(recipients, placeholder)
            body = encode_json(
                build_request(envelope, sub, recipients, issue_id=batch.issue_id, key=key)
            )
            try:
                response = self.transport.send(
                    "POST", self.url("/v3/smtp/email"), content=body, headers=self._headers()
                )
            except RequestFailed as exc:
                yield from unanswered(self.name, recipients, exc)
                return
            if response.status_code in (200, 201, 202):
                data = response.json()
                ids = data.get("messageIds") or [data.get("messageId")] * len(recipients)
                for r, message_id in zip(recipients, ids, strict=False):
                    yield Result(r.subscriber_id, "sent", provider_message_id=message_id)
                return
            message = error_message(response)
            match = _REFUSED.search(message) if response.status_code == 400 else None
            if (
                match is None
                or "not valid" not in message
                or int(match.group(1)) >= len(recipients)
            ):
                raise self.stop(response, message)
            index = int(match.group(1))
            yield Result(
                recipients[index].subscriber_id, "failed-permanent", reason=f"brevo 400: {message}"
            )
            recipients = recipients[:index] + recipients[index + 1 :]
            key = idempotency_key(
                batch.issue_id,
                batch.variant,
                [r.subscriber_id for r in recipients],
                [r.email for r in recipients],
            )

    # -- preflight

    def preflight(self) -> list[Check]:
        """``GET /v3/senders``: the key works, and the From address is an active sender."""
        response = self.get("/v3/senders", self._headers())
        address = self.config.sender.from_email.lower()
        senders = response.json().get("senders") or []
        match = [s for s in senders if str(s.get("email", "")).lower() == address]
        active = bool(match and match[0].get("active"))
        detail = (
            f"{address} is an active sender"
            if active
            else f"{address} is {'not active' if match else 'not a sender'} in Brevo "
            "(Senders, Domains & Dedicated IPs)"
        )
        return [Check("credentials", True, "API key accepted"), Check("sender", active, detail)]

    # -- suppressions

    def fetch_suppressions(self) -> Iterator[Suppression]:
        offset, limit = 0, 100
        while True:
            data = self.get(
                f"/v3/smtp/blockedContacts?limit={limit}&offset={offset}", self._headers()
            ).json()
            contacts = data.get("contacts", []) if isinstance(data, dict) else []
            for item in contacts:
                code = (item.get("reason") or {}).get("code", "")
                message = (item.get("reason") or {}).get("message", code)
                yield Suppression(
                    str(item["email"]),
                    _KINDS.get(code, "unsubscribed"),
                    f"brevo: {message}",
                    item.get("blockedAt"),
                )
            offset += len(contacts)
            if len(contacts) < limit or offset >= int(data.get("count", 0)):
                return


registry.register("brevo", Brevo)
