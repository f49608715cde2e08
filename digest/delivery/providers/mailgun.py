"""Mailgun: ``POST /v3/{domain}/messages`` in batch mode, up to 1,000 recipients a request.

The HTML and text go up once per request with ``%recipient.<name>%`` placeholders, and
``recipient-variables`` carries each recipient's values (its presence is also what makes
Mailgun send every ``to`` a message of their own). The body is ``multipart/form-data``:
no percent-encoding of the HTML. A request succeeds or fails as a whole; a 400 "not a valid
address" does not say which one, so the batch is split in halves until the refused addresses
are alone (each fails permanently, everyone else is sent). Any other 400, 401 or 403 stops
the send. 429 answers carry ``Retry-After`` only. No idempotency key.

Suppressions: ``/v3/{domain}/bounces``, ``/complaints`` and ``/unsubscribes``.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator, Sequence
from typing import ClassVar

from digest.config.providers import MailgunSettings
from digest.delivery.providers import registry
from digest.delivery.providers.base import Batch, Event, ProviderSettings, Recipient, Result
from digest.delivery.providers.http import (
    Envelope,
    HttpProvider,
    RequestFailed,
    Substitution,
    Suppression,
    error_message,
    retryable_for,
)


def placeholder(name: str) -> str:
    return f"%recipient.{name}%"


def build_fields(
    envelope: Envelope, sub: Substitution, recipients: Sequence[Recipient], *, issue_id: str
) -> list[tuple[str, str]]:
    """The form fields of one batch request, in order."""
    fields: list[tuple[str, str]] = [("from", envelope.from_address)]
    fields += [("to", r.email) for r in recipients]
    fields += [
        ("subject", sub.subject),
        ("text", sub.text),
        ("html", sub.html),
        (
            "recipient-variables",
            json.dumps(
                {r.email: sub.variables(r.values) for r in recipients},
                separators=(",", ":"),
                ensure_ascii=False,
            ),
        ),
        ("o:tag", issue_id),
        ("v:issue_id", issue_id),
    ]
    if envelope.reply_to:
        fields.append(("h:Reply-To", envelope.reply_to))
    fields += [(f"h:{name}", value) for name, value in sub.headers.items()]
    return fields


def encode_multipart(fields: Sequence[tuple[str, str]]) -> tuple[bytes, str]:
    """``multipart/form-data`` of text fields: (body, Content-Type)."""
    boundary = "digest-" + secrets.token_hex(12)
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _invalid_address(message: str) -> bool:
    return "not a valid address" in message.lower()


class Mailgun(HttpProvider):
    name = "mailgun"
    Settings: ClassVar[type[ProviderSettings]] = MailgunSettings
    settings: MailgunSettings
    max_batch = 1000
    default_concurrency = 4

    def _auth(self) -> str:
        token = base64.b64encode(f"api:{self.settings.api_key.resolve()}".encode()).decode()
        return f"Basic {token}"

    def send(self, batch: Batch) -> Iterator[Event]:
        envelope = Envelope.of(batch)
        self.stats.add(recipients=len(batch.recipients))
        # a stack of groups to send; a refused group is split in halves
        groups: list[tuple[Recipient, ...]] = [batch.recipients]
        while groups:
            recipients = groups.pop()
            sub = envelope.substitute(recipients, placeholder)
            body, content_type = encode_multipart(
                build_fields(envelope, sub, recipients, issue_id=batch.issue_id)
            )
            try:
                response = self.transport.send(
                    "POST",
                    self.url(f"/v3/{self.settings.domain}/messages"),
                    content=body,
                    headers={"Authorization": self._auth(), "Content-Type": content_type},
                )
            except RequestFailed as exc:
                yield from retryable_for(recipients, exc.reason)
                continue
            if response.status_code == 200:
                message_id = response.json().get("id")
                for r in recipients:
                    yield Result(r.subscriber_id, "sent", provider_message_id=message_id)
                continue
            message = error_message(response)
            if response.status_code != 400 or not _invalid_address(message):
                raise self.stop(response, message)
            if len(recipients) == 1:
                yield Result(
                    recipients[0].subscriber_id,
                    "failed-permanent",
                    reason=f"mailgun 400: {message}",
                )
                continue
            middle = len(recipients) // 2
            groups += [recipients[middle:], recipients[:middle]]

    # -- suppressions

    def fetch_suppressions(self) -> Iterator[Suppression]:
        headers = {"Authorization": self._auth()}
        lists = (
            ("bounces", "bounced"),
            ("complaints", "complained"),
            ("unsubscribes", "unsubscribed"),
        )
        for path, kind in lists:
            url: str | None = f"/v3/{self.settings.domain}/{path}?limit=1000"
            seen_pages = 0
            while url and seen_pages < 1000:
                data = self.get(url, headers).json()
                items = data.get("items", []) if isinstance(data, dict) else []
                for item in items:
                    detail = item.get("error") or path
                    yield Suppression(
                        str(item["address"]), kind, f"mailgun: {detail}", item.get("created_at")
                    )
                following = (data.get("paging") or {}).get("next") if items else None
                base = self.settings.base_url.rstrip("/")
                url = following[len(base) :] if following and following.startswith(base) else None
                seen_pages += 1


registry.register("mailgun", Mailgun)
