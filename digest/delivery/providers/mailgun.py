"""Mailgun: ``POST /v3/{domain}/messages`` in batch mode, up to 1,000 recipients a request.

The HTML and text go up once per request with ``%recipient.<name>%`` placeholders, and
``recipient-variables`` carries each recipient's values (its presence is also what makes
Mailgun send every ``to`` a message of their own). The body is ``multipart/form-data``:
no percent-encoding of the HTML. A request succeeds or fails as a whole; a 400 "not a valid
address" does not say which one, so the batch is split in halves until the refused addresses
are alone (each fails permanently, everyone else is sent). Any other 400, 401 or 403 stops
the send. 429 answers carry ``Retry-After`` only. No idempotency key.

Suppressions: ``/v3/{domain}/bounces``, ``/complaints`` and ``/unsubscribes``.

Events: ``/v3/{domain}/events`` (:meth:`Mailgun.has_event`), which ``digest serve`` asks
before it applies a Mailgun webhook when ``serve.webhooks.mailgun_confirm`` is on: Mailgun
signs a webhook's timestamp and token but not its body, so only Mailgun's own record of the
event proves what the body says.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import urllib.parse
from collections.abc import Iterator, Sequence
from datetime import timedelta, timezone
from email.utils import format_datetime
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlencode

import httpx

from digest.config.providers import MailgunSettings
from digest.delivery.providers import domains, registry
from digest.delivery.providers.base import (
    Batch,
    Check,
    Event,
    Handoff,
    ProviderSettings,
    Recipient,
    Result,
    attempted_since,
)
from digest.delivery.providers.classify import (
    AnswerTable,
    RequestFailed,
    unanswered,
    unreadable_answer,
)
from digest.delivery.providers.defuse import TemplateSyntax
from digest.delivery.providers.domains import DomainFinding
from digest.delivery.providers.http import (
    Envelope,
    HttpProvider,
    Substitution,
    Suppression,
    error_message,
)
from digest.errors import ProviderError

if TYPE_CHECKING:
    from digest.delivery.providers.base import Delivery


def placeholder(name: str) -> str:
    return f"%recipient.{name}%"


SYNTAX = TemplateSyntax(
    re.compile(r"%(?=recipient|(?:tag_|mailing_list_)?unsubscribe_url%)", re.IGNORECASE)
)
"""Mailgun fills ``%recipient.<key>%`` from ``recipient-variables`` and its unsubscribe
variables (``%unsubscribe_url%``, ``%tag_unsubscribe_url%``,
``%mailing_list_unsubscribe_url%``) in the subject, text and HTML: their ``%`` is broken."""


def defuse(text: str, *, html: bool = False) -> str:
    """``text`` with Mailgun's substitution syntax broken (:mod:`.defuse`)."""
    return SYNTAX.defuse(text, html=html)


def build_fields(
    envelope: Envelope,
    sub: Substitution,
    recipients: Sequence[Recipient],
    *,
    issue_id: str,
    batch_id: str | None = None,
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
    if batch_id:
        fields.append(("v:batch_id", batch_id))  # reconciliation matches events on it
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


SOURCE = "documentation.mailgun.com/docs/mailgun/quickstart-guide/responses"

ANSWERS = AnswerTable("mailgun", SOURCE)
"""Mailgun documents 429 (retry as the answer says) and 500 ("internal error"; it
recommends retrying, but not that nothing was taken): a 5xx is unknown, and settled by the
events API, which records every accepted message."""


MAX_EVENT_PAGES = 10_000
"""A bound on one lookup's pages of events, should ``paging.next`` never end."""


def queued_id(response: httpx.Response) -> str:
    """The id of the queued message from ``{"id": "<…>", "message": "Queued. …"}``; a 200
    without one does not say the recipients were taken (``ValueError``)."""
    body = response.json()  # json.JSONDecodeError is a ValueError
    message_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(message_id, str) or not message_id:
        raise ValueError(f"no message id in {response.text[:200]!r}")
    return message_id


def _invalid_address(message: str) -> bool:
    return "not a valid address" in message.lower()


class Mailgun(HttpProvider):
    name = "mailgun"
    Settings: ClassVar[type[ProviderSettings]] = MailgunSettings
    settings: MailgunSettings
    max_batch = 1000
    default_concurrency = 4
    answers = ANSWERS
    indexing_delay = 1800.0
    """Mailgun's event-polling guidance: events reach the log out of order, and a page is
    trustworthy once its events are older than a threshold (half an hour in its example)."""
    settles_uncertain = (
        "asked automatically: Mailgun's events API (event=accepted, the issue's tag, from the "
        "original attempt); a message missing half an hour after it is sent again"
    )

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
            sub = envelope.substitute(recipients, placeholder, defuse)
            body, content_type = encode_multipart(
                build_fields(
                    envelope,
                    sub,
                    recipients,
                    issue_id=batch.issue_id,
                    batch_id=batch.idempotency_key,
                )
            )
            yield Handoff.of(recipients)  # the send loop's fence check, before the request
            try:
                response = self.transport.send(
                    "POST",
                    self.url(f"/v3/{self.settings.domain}/messages"),
                    content=body,
                    headers={"Authorization": self._auth(), "Content-Type": content_type},
                )
            except RequestFailed as exc:
                yield from unanswered(self.name, recipients, exc)
                continue
            if response.status_code == 200:
                try:
                    message_id = queued_id(response)
                except ValueError as exc:
                    yield from unreadable_answer(self.name, response, recipients, "a send", exc)
                    continue
                for r in recipients:
                    yield Result(r.subscriber_id, "sent", provider_message_id=message_id)
                continue
            message = error_message(response)
            if response.status_code != 400 or not _invalid_address(message):
                raise self.stop(response)
            if len(recipients) == 1:
                yield Result(
                    recipients[0].subscriber_id,
                    "failed-permanent",
                    reason=f"mailgun 400: {message}",
                )
                continue
            middle = len(recipients) // 2
            groups += [recipients[middle:], recipients[:middle]]

    # -- reconciliation and preflight

    can_look_up = True

    def lookup(self, issue_id: str, deliveries: Sequence[Delivery]) -> dict[int, str | None]:
        """The events log: ``GET /v3/{domain}/events`` with ``event=accepted``, the issue's
        tag and ``begin`` a minute before the oldest row's original attempt (stored in the
        ledger, however long ago the run stopped), following ``paging.next`` to the end; an
        event matches a row by recipient and ``v:batch_id``."""
        wanted = {(d.email.lower(), d.batch_key) for d in deliveries}
        begin = attempted_since(deliveries, margin=timedelta(minutes=1))
        query = urlencode(
            {
                "event": "accepted",
                "tags": issue_id,
                "begin": format_datetime(begin.astimezone(timezone.utc), usegmt=True),
                "ascending": "yes",
                "limit": 300,
            }
        )
        url: str | None = f"/v3/{self.settings.domain}/events?{query}"
        headers = {"Authorization": self._auth()}
        found: dict[tuple[str, str | None], str] = {}
        base = self.settings.base_url.rstrip("/")
        pages = 0
        while url and pages < MAX_EVENT_PAGES:
            data = self.get(url, headers).json()
            items = data.get("items", []) if isinstance(data, dict) else []
            for item in items:
                variables = item.get("user-variables") or {}
                pair = (str(item.get("recipient", "")).lower(), variables.get("batch_id"))
                if pair in wanted:
                    message = item.get("message") or {}
                    found[pair] = str((message.get("headers") or {}).get("message-id", "?"))
            following = (data.get("paging") or {}).get("next") if items else None
            url = following[len(base) :] if following and following.startswith(base) else None
            pages += 1
        if url:  # not read to the end: nothing here proves a message missing
            raise ProviderError(self.name, f"the events of {issue_id} did not end in {pages} pages")
        return {d.subscriber_id: found.get((d.email.lower(), d.batch_key)) for d in deliveries}

    def preflight(self) -> list[Check]:
        """``GET /v3/domains/{domain}``: the key works, and the domain's state."""
        response = self.get(f"/v3/domains/{self.settings.domain}", {"Authorization": self._auth()})
        domain = response.json().get("domain") or {}
        state = str(domain.get("state", "unknown"))
        return [
            Check("credentials", True, "API key accepted"),
            Check(
                "domain",
                state == "active",
                f"{self.settings.domain} is {state}"
                + ("" if state == "active" else ": verify its DNS records in Mailgun"),
            ),
        ]

    def domain_state(self, domain: str) -> list[DomainFinding]:
        """``GET /v3/domains/{name}``: its state and each sending record's validity."""
        path = f"/v3/domains/{urllib.parse.quote(domain)}"
        data = self.get(path, {"Authorization": self._auth()}).json()
        return domains.mailgun(domain, data)

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

    # -- events

    def has_event(self, event_id: str, event: str, recipient: str) -> bool:
        """Whether Mailgun's events API holds the event ``event_id`` (``event`` for
        ``recipient``). Reads up to 10 pages of that recipient's events of that kind."""
        if not event_id:
            return False
        headers = {"Authorization": self._auth()}
        query = urllib.parse.urlencode(
            {"event": event, "recipient": recipient, "limit": "300", "ascending": "no"}
        )
        url: str | None = f"/v3/{self.settings.domain}/events?{query}"
        base = self.settings.base_url.rstrip("/")
        for _ in range(10):
            if url is None:
                break
            data = self.get(url, headers).json()
            items = data.get("items") if isinstance(data, dict) else None
            if not isinstance(items, list) or not items:
                return False
            for item in items:
                if (
                    isinstance(item, dict)
                    and item.get("id") == event_id
                    and item.get("event") == event
                    and str(item.get("recipient", "")).lower() == recipient.lower()
                ):
                    return True
            following = (data.get("paging") or {}).get("next")
            url = (
                following[len(base) :]
                if isinstance(following, str) and following.startswith(base)
                else None
            )
        return False


registry.register("mailgun", Mailgun)
