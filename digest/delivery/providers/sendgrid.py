"""SendGrid: ``POST /v3/mail/send`` with up to 1,000 personalizations a request.

The HTML and text go up once per request with ``-digest_<name>-`` placeholders; each
personalization carries one recipient and only their ``substitutions``. A request succeeds
or fails as a whole (202, one ``X-Message-Id``). A 400 naming
``personalizations.<i>.to.<j>.email`` fails those recipients permanently and the rest are
sent again at once; any other 400, 401 or 403 (an unverified sender) stops the send.
Rate limits come as ``X-RateLimit-*`` headers (reset as Unix time). No idempotency key.

Suppressions: ``/v3/suppression/bounces``, ``/spam_reports`` and ``/unsubscribes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, ClassVar

import httpx

from digest.config.providers import SendGridSettings
from digest.delivery.providers import domains, registry
from digest.delivery.providers.base import (
    Batch,
    Check,
    Event,
    ProviderSettings,
    Recipient,
    Result,
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
)


def placeholder(name: str) -> str:
    return f"-digest_{name}-"


SYNTAX = TemplateSyntax(re.compile(r"-(?=digest_)|<(?=%)", re.IGNORECASE))
"""SendGrid replaces each personalization's substitution keys (ours: ``-digest_<name>-``)
wherever they occur, and its subscription tags (``<%asm_group_unsubscribe_raw_url%>``, …)
with a recipient's unsubscribe links: the ``-`` and the ``<`` that open them are broken."""


def defuse(text: str, *, html: bool = False) -> str:
    """``text`` with SendGrid's substitution syntax broken (:mod:`.defuse`)."""
    return SYNTAX.defuse(text, html=html)


def prepare(envelope: Envelope, recipients: tuple[Recipient, ...]) -> Substitution:
    return envelope.substitute(recipients, placeholder, defuse)


def build_request(
    envelope: Envelope,
    sub: Substitution,
    recipients: tuple[Recipient, ...],
    *,
    issue_id: str,
    asm_group_id: int | None = None,
) -> dict[str, Any]:
    """One mail/send body: the content once, one personalization per recipient."""
    sender: dict[str, str] = {"email": envelope.from_email}
    if envelope.from_name:
        sender["name"] = envelope.from_name
    body: dict[str, Any] = {
        "personalizations": [
            {
                "to": [{"email": r.email}],
                "substitutions": {placeholder(k): v for k, v in sub.variables(r.values).items()},
                "custom_args": {"subscriber_id": str(r.subscriber_id)},
            }
            for r in recipients
        ],
        "from": sender,
        "subject": sub.subject,
        "content": [
            {"type": "text/plain", "value": sub.text},
            {"type": "text/html", "value": sub.html},
        ],
        "categories": [issue_id],
        "custom_args": {"issue_id": issue_id},
    }
    if sub.headers:
        body["headers"] = sub.headers
    if envelope.reply_to:
        body["reply_to"] = {"email": envelope.reply_to}
    if asm_group_id is not None:
        body["asm"] = {"group_id": asm_group_id}
    return body


_RECIPIENT_FIELD = re.compile(r"^personalizations\.(\d+)\.(?:to|cc|bcc)\.\d+\.email$")


def refused_recipients(body: Any) -> dict[int, str] | None:
    """Personalization index → reason, when every error of a 400 names a recipient."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return None
    refused: dict[int, str] = {}
    for error in errors:
        field = error.get("field") if isinstance(error, dict) else None
        match = _RECIPIENT_FIELD.match(field or "")
        if match is None:
            return None
        refused[int(match.group(1))] = str(error.get("message", "refused"))
    return refused


ANSWERS = AnswerTable(
    "sendgrid",
    "twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/responses",
    not_accepted_5xx=frozenset({503}),
)
"""503 is "the SendGrid v3 Web API is not available": nothing was taken. A 500 ("an error
occurred on a SendGrid server" while processing a valid request) is unknown."""


def _read(
    response: httpx.Response, recipients: tuple[Recipient, ...]
) -> tuple[list[Result], str | None]:
    message_id = response.headers.get("x-message-id")
    if not message_id:  # SendGrid's 202 names the message here; anything else is not its word
        raise ValueError(f"no X-Message-Id with body {response.text[:200]!r}")
    sent = [Result(r.subscriber_id, "sent", provider_message_id=message_id) for r in recipients]
    return sent, None


def _refused(response: httpx.Response, recipients: tuple[Recipient, ...]) -> dict[int, str] | None:
    """The recipients a 400 names (every one of its errors must name one)."""
    if response.status_code != 400:
        return None
    try:
        refused = refused_recipients(response.json())
    except ValueError:
        return None
    if refused is None:
        return None
    return {index: f"sendgrid 400: {reason}" for index, reason in refused.items()}


class SendGrid(HttpProvider):
    name = "sendgrid"
    Settings: ClassVar[type[ProviderSettings]] = SendGridSettings
    settings: SendGridSettings
    max_batch = 1000
    default_concurrency = 4
    answers = ANSWERS
    settles_uncertain = (
        "nothing digest can ask: SendGrid lists sent messages only in its Email Activity "
        "API, a paid add-on (search it for the issue's category and the subscriber); decide "
        "with send.uncertain (hold or resend) or digest send --resend-uncertain"
    )

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.settings.api_key.resolve()}",
            "Content-Type": "application/json",
        }

    def send(self, batch: Batch) -> Iterator[Event]:
        envelope = Envelope.of(batch)

        def post(recipients: tuple[Recipient, ...]) -> httpx.Response:
            sub = prepare(envelope, recipients)
            body = encode_json(
                build_request(
                    envelope,
                    sub,
                    recipients,
                    issue_id=batch.issue_id,
                    asm_group_id=self.settings.asm_group_id,
                )
            )
            return self.transport.send(
                "POST", self.url("/v3/mail/send"), content=body, headers=self._headers()
            )

        yield from self.post_batch(
            batch.recipients, post, _read, what="a send", ok=(200, 202), refused=_refused
        )

    # -- preflight

    def preflight(self) -> list[Check]:
        """``GET /v3/whitelabel/domains``: the key works, and whether the From domain is
        authenticated (a verified single sender also lets SendGrid send)."""
        response = self.get("/v3/whitelabel/domains", self._headers())
        domain = self.config.sender.from_email.rpartition("@")[2].lower()
        items = response.json()
        entries = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        match = [i for i in entries if str(i.get("domain", "")).lower() == domain]
        valid = bool(match and match[0].get("valid"))
        detail = (
            f"{domain} is authenticated"
            if valid
            else f"{domain} is {'not yet valid' if match else 'not authenticated'} in SendGrid "
            "(Settings → Sender Authentication)"
        )
        return [Check("credentials", True, "API key accepted"), Check("domain", valid, detail)]

    def domain_state(self, domain: str) -> list[DomainFinding]:
        """``GET /v3/whitelabel/domains``: the domain's validity and its DNS records'."""
        items = self.get("/v3/whitelabel/domains", self._headers()).json()
        return domains.sendgrid(domain, items if isinstance(items, list) else [])

    # -- suppressions

    def fetch_suppressions(self) -> Iterator[Suppression]:
        lists = (
            ("bounces", "bounced"),
            ("spam_reports", "complained"),
            ("unsubscribes", "unsubscribed"),
        )
        for path, kind in lists:
            offset, limit = 0, 500
            previous: list[Any] | None = None
            while True:
                response = self.get(
                    f"/v3/suppression/{path}?limit={limit}&offset={offset}", self._headers()
                )
                items = response.json()
                if not isinstance(items, list) or items == previous:
                    break  # the same page again: the offset is not honoured; stop, not loop
                previous = items
                for item in items:
                    created = item.get("created")
                    at = (
                        datetime.fromtimestamp(created, timezone.utc).isoformat()
                        if isinstance(created, (int, float))
                        else None
                    )
                    detail = item.get("reason") or path.replace("_", " ")
                    yield Suppression(str(item["email"]), kind, f"sendgrid: {detail}", at)
                if len(items) < limit:
                    break
                offset += len(items)


registry.register("sendgrid", SendGrid)
