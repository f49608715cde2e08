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
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx

from digest.config.providers import BrevoSettings
from digest.delivery.providers import domains, registry
from digest.delivery.providers.base import (
    Batch,
    Check,
    Event,
    ProviderSettings,
    Recipient,
    Result,
    idempotency_key,
)
from digest.delivery.providers.classify import AnswerTable
from digest.delivery.providers.defuse import TemplateSyntax
from digest.delivery.providers.domains import DomainFinding
from digest.delivery.providers.http import (
    Envelope,
    HttpProvider,
    Substitution,
    Suppression,
    encode_json,
    error_message,
)
from digest.errors import ProviderError

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


SYNTAX = TemplateSyntax(re.compile(r"\{(?=[{%#])"))
"""Brevo's template language fills ``{{ params.<name> }}``, ``{{ contact.EMAIL }}`` and any
``{{ … }}``, runs ``{% … %}`` tags and drops ``{# … #}`` comments, in the subject, HTML and
text: the ``{`` that opens each is broken."""


def defuse(text: str, *, html: bool = False) -> str:
    """``text`` with Brevo's template syntax broken (:mod:`.defuse`)."""
    return SYNTAX.defuse(text, html=html)


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


def _read(
    response: httpx.Response, recipients: tuple[Recipient, ...]
) -> tuple[list[Result], str | None]:
    data = response.json()
    if not isinstance(data, dict) or not (data.get("messageIds") or data.get("messageId")):
        raise ValueError(f"no messageId in {response.text[:200]!r}")
    ids = data.get("messageIds") or [data.get("messageId")] * len(recipients)
    results = [
        Result(r.subscriber_id, "sent", provider_message_id=message_id)
        for r, message_id in zip(recipients, ids, strict=False)
    ]
    return results, None


def _refused(response: httpx.Response, recipients: tuple[Recipient, ...]) -> dict[int, str] | None:
    """The one recipient a 400 names as not valid (Brevo stops at the first)."""
    if response.status_code != 400:
        return None
    message = error_message(response)
    match = _REFUSED.search(message)
    if match is None or "not valid" not in message or int(match.group(1)) >= len(recipients):
        return None
    return {int(match.group(1)): f"brevo 400: {message}"}


class Brevo(HttpProvider):
    name = "brevo"
    Settings: ClassVar[type[ProviderSettings]] = BrevoSettings
    settings: BrevoSettings
    max_batch = 1000
    default_concurrency = 4
    supports_idempotency = True
    answers = AnswerTable("brevo", "developers.brevo.com/docs/how-it-works (error codes)")
    settles_uncertain = "resent automatically with the same idempotency key (Brevo drops a repeat)"

    def _headers(self) -> dict[str, str]:
        return {
            "api-key": self.settings.api_key.resolve(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def send(self, batch: Batch) -> Iterator[Event]:
        envelope = Envelope.of(batch)

        def post(recipients: tuple[Recipient, ...]) -> httpx.Response:
            # the batch's key; once a refused recipient is left out, the key of the rest
            key = (
                batch.idempotency_key
                if len(recipients) == len(batch.recipients)
                else idempotency_key(
                    batch.issue_id,
                    batch.variant,
                    [r.subscriber_id for r in recipients],
                    [r.email for r in recipients],
                )
            )
            sub = envelope.substitute(recipients, placeholder, defuse)
            body = encode_json(
                build_request(envelope, sub, recipients, issue_id=batch.issue_id, key=key)
            )
            return self.transport.send(
                "POST", self.url("/v3/smtp/email"), content=body, headers=self._headers()
            )

        yield from self.post_batch(
            batch.recipients,
            post,
            _read,
            what="a send",
            ok=(200, 201, 202),
            refused=_refused,
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

    def domain_state(self, domain: str) -> list[DomainFinding]:
        """``GET /v3/senders/domains/{domainName}``: verified, authenticated, records."""
        path = f"/v3/senders/domains/{urllib.parse.quote(domain)}"
        try:
            data = self.get(path, self._headers()).json()
        except ProviderError as exc:
            if exc.status != 404:
                raise
            return domains.not_found("brevo", domain, "Brevo (Senders, Domains & Dedicated IPs)")
        return domains.brevo(domain, data)

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
