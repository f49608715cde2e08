"""Resend: ``POST /emails/batch``, up to 100 emails a request.

Resend has no per-recipient substitution: every email of a batch is filled in here. The
batch is sent in permissive validation mode (``x-batch-validation: permissive``), so one bad
address fails alone: the answer lists the accepted ids in ``data`` and the refused ones in
``errors[{index, message}]``. Every batch carries an ``Idempotency-Key`` derived from the
issue and its recipients, so a batch resent after a crash or a dropped connection is not
sent twice (Resend keeps keys 24 hours). Rate limits come as ``ratelimit-*`` headers
(2 requests/s by default), which the pacer follows.

Suppressions: Resend exposes no suppression list over its RESEND_API; bounces and complaints
arrive by webhook, which ``digest serve`` does not take yet.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx

from digest.config.providers import ResendSettings
from digest.delivery.providers import domains, registry
from digest.delivery.providers.base import (
    Batch,
    Check,
    Event,
    Handoff,
    ProviderSettings,
    Recipient,
    Result,
)
from digest.delivery.providers.classify import (
    AnswerTable,
    RequestFailed,
    refused,
    unanswered,
    unreadable_answer,
)
from digest.delivery.providers.domains import DomainFinding
from digest.delivery.providers.http import (
    Envelope,
    HttpProvider,
    encode_json,
    error_message,
)
from digest.email.message import fill


def _tag_value(value: str) -> str:
    """Resend tags allow ASCII letters, digits, underscores and dashes only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", value)[:256]


def build_email(envelope: Envelope, recipient: Recipient, *, issue_id: str) -> dict[str, Any]:
    values = recipient.values
    email: dict[str, Any] = {
        "from": envelope.from_address,
        "to": [recipient.email],
        "subject": fill(envelope.subject, values),
        "html": fill(envelope.html, values, html=True),
        "text": fill(envelope.text, values),
        "headers": {name: fill(v, values) for name, v in envelope.headers.items()},
        "tags": [
            {"name": "issue", "value": _tag_value(issue_id)},
            {"name": "subscriber", "value": str(recipient.subscriber_id)},
        ],
    }
    if envelope.reply_to:
        email["reply_to"] = envelope.reply_to
    return email


def parse_batch_response(body: Any, recipients: tuple[Recipient, ...]) -> list[Result]:
    """A result per recipient from ``{"data": [{"id"}], "errors": [{"index", "message"}]}``.

    In permissive mode ``data`` holds the accepted emails only, in request order.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError(f"expected {{'data': [...]}}, got {str(body)[:200]}")
    refused: dict[int, str] = {}
    for error in body.get("errors") or []:
        if isinstance(error, dict) and isinstance(error.get("index"), int):
            refused[error["index"]] = str(error.get("message", "refused"))
    ids = iter(body["data"])
    results: list[Result] = []
    for index, recipient in enumerate(recipients):
        if index in refused:
            results.append(
                Result(
                    recipient.subscriber_id, "failed-permanent", reason=f"resend: {refused[index]}"
                )
            )
            continue
        item = next(ids, None)
        if not isinstance(item, dict) or not item.get("id"):
            raise ValueError(f"no id for email {index} in {str(body)[:200]}")
        results.append(Result(recipient.subscriber_id, "sent", provider_message_id=item["id"]))
    return results


class Resend(HttpProvider):
    name = "resend"
    Settings: ClassVar[type[ProviderSettings]] = ResendSettings
    settings: ResendSettings
    max_batch = 100
    default_concurrency = 2
    supports_idempotency = True
    keys_kept = 24 * 3600.0  # a repeat is dropped within 24 hours (Resend: idempotency keys)
    answers = AnswerTable("resend", "resend.com/docs/api-reference/errors")
    settles_uncertain = (
        "resent automatically with the same Idempotency-Key (Resend drops a repeat for 24 hours)"
    )

    def headers(self, batch: Batch) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.settings.api_key.resolve()}",
            "Content-Type": "application/json",
            "Idempotency-Key": batch.idempotency_key,
        }
        if self.settings.permissive:
            headers["x-batch-validation"] = "permissive"
        return headers

    def send(self, batch: Batch) -> Iterator[Event]:
        envelope = Envelope.of(batch)
        body = encode_json(
            [build_email(envelope, r, issue_id=batch.issue_id) for r in batch.recipients]
        )
        self.stats.add(recipients=len(batch.recipients))
        yield Handoff.of(batch.recipients)  # the send loop's fence check, before the request
        try:
            response = self.transport.send(
                "POST", self.url("/emails/batch"), content=body, headers=self.headers(batch)
            )
        except RequestFailed as exc:
            yield from unanswered(self.name, batch.recipients, exc)
            return
        if response.status_code == 409 and _concurrent(response):
            # the same key is still being processed: the earlier try will settle it
            verdict = refused(f"resend 409: {error_message(response)}", transient=True)
            yield from (verdict.result(r.subscriber_id) for r in batch.recipients)
            return
        if response.status_code != 200:
            raise self.stop(response)
        try:
            results = parse_batch_response(response.json(), batch.recipients)
        except ValueError as exc:
            yield from unreadable_answer(self.name, response, batch.recipients, "a batch", exc)
            return
        yield from results

    def preflight(self) -> list[Check]:
        """``GET /domains``: the key works, and the From domain's status."""
        headers = {"Authorization": f"Bearer {self.settings.api_key.resolve()}"}
        response = self.get("/domains", headers)
        domain = self.config.sender.from_email.rpartition("@")[2].lower()
        items = response.json().get("data") or []
        match = [i for i in items if str(i.get("name", "")).lower() == domain]
        status = str(match[0].get("status", "unknown")) if match else "not added"
        return [
            Check("credentials", True, "API key accepted"),
            Check("domain", status == "verified", f"{domain} is {status}"),
        ]

    def domain_state(self, domain: str) -> list[DomainFinding]:
        """``GET /domains`` to find the domain, ``GET /domains/{id}`` for its records."""
        headers = {"Authorization": f"Bearer {self.settings.api_key.resolve()}"}
        items = self.get("/domains", headers).json().get("data") or []
        match = [i for i in items if str(i.get("name", "")).lower() == domain]
        if not match:
            return domains.not_found("resend", domain, "Resend (Domains)")
        path = f"/domains/{urllib.parse.quote(str(match[0].get('id', '')))}"
        return domains.resend(domain, {**match[0], **self.get(path, headers).json()})


def _concurrent(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("name") == "concurrent_idempotent_requests"


registry.register("resend", Resend)
