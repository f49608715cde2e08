"""Postmark: ``POST /email/batch``, up to 500 messages a request, a result per message.

Postmark has no per-recipient substitution, so every message of a batch is filled in here.
A batch answers 200 even when some of its messages failed: every item's ``ErrorCode`` is
read, and each message is settled on its own. Codes that concern the account (an unknown or
unconfirmed sender signature, an account not allowed to send or pending approval) stop the
send instead of failing every subscriber. Postmark documents no rate-limit headers: 429
answers carry ``Retry-After`` only. No idempotency key exists.

Suppressions: ``GET /message-streams/{stream}/suppressions/dump`` and ``GET /bounces``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx

from digest.config.providers import PostmarkSettings
from digest.delivery.providers import domains, registry
from digest.delivery.providers.base import (
    Batch,
    Check,
    Event,
    ProviderSettings,
    Recipient,
    Result,
    attempted_since,
)
from digest.delivery.providers.classify import AnswerTable, CodeTable, Verdict, refused
from digest.delivery.providers.domains import DomainFinding
from digest.delivery.providers.http import (
    Envelope,
    HttpProvider,
    Suppression,
    encode_json,
)
from digest.email.message import fill
from digest.errors import ProviderError

if TYPE_CHECKING:
    from digest.delivery.providers.base import Delivery

EASTERN = ZoneInfo("America/New_York")
"""Postmark's API reads and writes dates in US Eastern time."""

# Per-message codes that are about the account, not the recipient: stop sending.
ACCOUNT_CODES = {
    10: "bad or missing server token",
    400: "sender signature not found",
    401: "sender signature not confirmed",
    405: "not allowed to send",
    412: "account pending approval",
    413: "account may not send",
}

SOURCE = "postmarkapp.com/developer/api/overview (HTTP response codes; API error codes)"

ANSWERS = AnswerTable("postmark", SOURCE, not_accepted_5xx=frozenset({503}))
"""503 is Postmark's "service unavailable" (maintenance): nothing was taken. A 500 (or a
proxy's 502/504) is not documented either way: unknown, and settled by the message search."""

CODES = CodeTable(
    "postmark",
    SOURCE,
    accepted={0},
    account=ACCOUNT_CODES,
    transient={100, 429},  # 100: maintenance; 429: rate limit exceeded
)
"""A batch item's ``ErrorCode``; any other code (300 invalid request, 406 inactive
recipient: a suppression) refuses that recipient for good."""

_KINDS = {
    "HardBounce": "bounced",
    "SpamComplaint": "complained",
    "ManualSuppression": "unsubscribed",
}


def build_message(
    envelope: Envelope,
    recipient: Recipient,
    *,
    issue_id: str,
    stream: str,
    track_opens: bool | None = None,
    batch_id: str | None = None,
) -> dict[str, Any]:
    """One item of a batch request, markers filled for this recipient."""
    values = recipient.values
    message: dict[str, Any] = {
        "From": envelope.from_address,
        "To": recipient.email,
        "Subject": fill(envelope.subject, values),
        "HtmlBody": fill(envelope.html, values, html=True),
        "TextBody": fill(envelope.text, values),
        "Headers": [
            {"Name": name, "Value": fill(value, values)} for name, value in envelope.headers.items()
        ],
        "Tag": issue_id,
        "Metadata": {"issue_id": issue_id, "subscriber_id": str(recipient.subscriber_id)},
        "MessageStream": stream,
    }
    if batch_id:
        # what reconciliation searches for (GET /messages/outbound?metadata_batch_id=…)
        message["Metadata"]["batch_id"] = batch_id
    if envelope.reply_to:
        message["ReplyTo"] = envelope.reply_to
    if track_opens is not None:
        message["TrackOpens"] = track_opens
    return message


def parse_batch_response(
    body: Any, recipients: tuple[Recipient, ...]
) -> tuple[list[Result], tuple[int, str] | None]:
    """Results in request order, and the first account-level error (code, message) if any.

    Messages after an account-level error are left retryable: they were not sent because of
    the account, not because of the recipient.
    """
    if not isinstance(body, list) or len(body) != len(recipients):
        raise ValueError(f"expected {len(recipients)} results, got {str(body)[:200]}")
    results: list[Result] = []
    account_error: tuple[int, str] | None = None
    for recipient, item in zip(recipients, body, strict=True):
        if not isinstance(item, dict) or not isinstance(item.get("ErrorCode"), int):
            raise ValueError(f"no ErrorCode for message {len(results)} in {str(body)[:200]}")
        code, message = item["ErrorCode"], str(item.get("Message", ""))
        verdict = CODES.verdict(code, message)
        if verdict.kind == "accepted" and not item.get("MessageID"):
            raise ValueError(f"no MessageID for message {len(results)} in {str(body)[:200]}")
        if verdict.account:
            account_error = account_error or (code, message)
        results.append(verdict.result(recipient.subscriber_id, item.get("MessageID")))
    return results, account_error


def _read(
    response: httpx.Response, recipients: tuple[Recipient, ...]
) -> tuple[list[Result], str | None]:
    results, account_error = parse_batch_response(response.json(), recipients)
    if account_error is None:
        return results, None
    code, message = account_error
    return results, f"{message} (ErrorCode {code}: {ACCOUNT_CODES[code]})"


class Postmark(HttpProvider):
    name = "postmark"
    Settings: ClassVar[type[ProviderSettings]] = PostmarkSettings
    settings: PostmarkSettings
    max_batch = 500
    default_concurrency = 4
    answers = ANSWERS
    settles_uncertain = (
        "asked automatically: Postmark's outbound message search (the issue's tag and the "
        "batch id, from the original attempt); a message missing five minutes after it is "
        "sent again"
    )

    def verdict(self, response: httpx.Response) -> Verdict:
        """A 422 whose ``ErrorCode`` concerns the account (an unconfirmed sender signature,
        an account that may not send) refuses the account, not the message."""
        verdict = super().verdict(response)
        try:
            body = response.json()
        except ValueError:
            return verdict
        code = body.get("ErrorCode") if isinstance(body, dict) else None
        if code in ACCOUNT_CODES and verdict.kind == "refused":
            return refused(verdict.reason, account=True)
        return verdict

    def _headers(self) -> dict[str, str]:
        return {
            "X-Postmark-Server-Token": self.settings.token.resolve(),
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    def send(self, batch: Batch) -> Iterator[Event]:
        envelope = Envelope.of(batch)
        body = encode_json(
            [
                build_message(
                    envelope,
                    r,
                    issue_id=batch.issue_id,
                    stream=self.settings.message_stream,
                    track_opens=self.settings.track_opens,
                    batch_id=batch.idempotency_key,
                )
                for r in batch.recipients
            ]
        )

        def post(recipients: tuple[Recipient, ...]) -> httpx.Response:
            return self.transport.send(
                "POST", self.url("/email/batch"), content=body, headers=self._headers()
            )

        yield from self.post_batch(batch.recipients, post, _read, what="a batch")

    # -- reconciliation and preflight

    can_look_up = True

    def lookup(self, issue_id: str, deliveries: Sequence[Delivery]) -> dict[int, str | None]:
        """Outbound message search, one batch at a time: ``GET /messages/outbound`` with
        ``tag`` (the issue), ``metadata_batch_id`` (the batch) and ``fromdate`` a minute
        before the batch's original attempt (stored in the ledger; Postmark reads dates in
        US Eastern time), 500 a page to the end (Postmark serves 10,000 at most; a batch
        is 500)."""
        answers: dict[int, str | None] = {}
        by_batch: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            if delivery.batch_key:
                by_batch.setdefault(delivery.batch_key, []).append(delivery)
        headers = self._headers()
        for key, rows in by_batch.items():
            since = attempted_since(rows, margin=timedelta(minutes=1)).astimezone(EASTERN)
            found: dict[str, str] = {}
            offset = 0
            while True:
                query = urlencode(
                    {
                        "count": 500,
                        "offset": offset,
                        "tag": issue_id,
                        "metadata_batch_id": key,
                        "messagestream": self.settings.message_stream,
                        "fromdate": since.strftime("%Y-%m-%dT%H:%M:%S"),
                    }
                )
                data = self.get(f"/messages/outbound?{query}", headers).json()
                messages = data.get("Messages") or []
                for message in messages:
                    for address in message.get("Recipients") or []:
                        found[str(address).lower()] = str(message.get("MessageID"))
                offset += len(messages)
                if not messages or offset >= int(data.get("TotalCount", 0)):
                    break
                if offset >= 10000:  # not read to the end: nothing proves a message missing
                    raise ProviderError(self.name, f"batch {key} matched over 10,000 messages")
            for delivery in rows:
                answers[delivery.subscriber_id] = found.get(delivery.email.lower())
        return answers

    def preflight(self) -> list[Check]:
        """``GET /server``: the server token works (a sender signature check needs an
        account token, which digest does not ask for)."""
        response = self.get("/server", self._headers())
        name = response.json().get("Name", "?")
        return [
            Check("credentials", True, f"server token accepted (server {name!r})"),
            Check(
                "domain",
                True,
                "not checked: Postmark shows sender signatures to account tokens only",
            ),
        ]

    def domain_state(self, domain: str) -> list[DomainFinding]:
        """``GET /domains`` then ``GET /domains/{id}``, with the account token (the
        server token cannot read domains)."""
        if self.settings.account_token is None:
            return [
                DomainFinding(
                    "provider-dkim",
                    True,
                    "not asked: Postmark shows domains to account tokens only; set "
                    "provider.account_token (e.g. ${POSTMARK_ACCOUNT_TOKEN}) to check DKIM "
                    "and the Return-Path there",
                    checked=False,
                )
            ]
        headers = {
            "X-Postmark-Account-Token": self.settings.account_token.resolve(),
            "Accept": "application/json",
        }
        listed = self.get("/domains?count=500&offset=0", headers).json().get("Domains") or []
        match = [d for d in listed if str(d.get("Name", "")).lower() == domain]
        if not match:
            return domains.not_found("postmark", domain, "Postmark (Sender Signatures)")
        details = self.get(f"/domains/{int(match[0]['ID'])}", headers).json()
        return domains.postmark(domain, details)

    # -- suppressions

    def fetch_suppressions(self) -> Iterator[Suppression]:
        """Suppressed addresses of the configured message stream, and hard bounces."""
        headers = self._headers()
        response = self.get(
            f"/message-streams/{self.settings.message_stream}/suppressions/dump", headers
        )
        for item in response.json().get("Suppressions", []):
            reason = str(item.get("SuppressionReason", ""))
            yield Suppression(
                email=str(item["EmailAddress"]),
                kind=_KINDS.get(reason, "unsubscribed"),
                reason=f"postmark: {reason} ({item.get('Origin', '')})",
                at=item.get("CreatedAt"),
            )
        offset, count = 0, 500
        while True:
            response = self.get(f"/bounces?count={count}&offset={offset}&inactive=true", headers)
            data = response.json()
            bounces = data.get("Bounces", [])
            for item in bounces:
                if item.get("Inactive", True):
                    yield Suppression(
                        email=str(item["Email"]),
                        kind="bounced",
                        reason=f"postmark: {item.get('Type', 'bounce')}: "
                        f"{item.get('Description', '')}".strip(),
                        at=item.get("BouncedAt"),
                    )
            offset += len(bounces)
            if not bounces or offset >= int(data.get("TotalCount", 0)):
                return


registry.register("postmark", Postmark)
