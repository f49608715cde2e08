"""Amazon SES v2: ``SendBulkEmail`` with an inline template, up to 50 entries a request.

The subject, HTML and text go up once per request as an inline Handlebars template
(``DefaultContent.Template.TemplateContent``): ``{{name}}`` in the HTML (Handlebars escapes
it) and ``{{{name}}}`` in the subject and text; each entry carries only its recipient's
``ReplacementTemplateData``. SES does not render template headers, so headers holding a
marker (List-Unsubscribe) go per entry as ``ReplacementHeaders``, filled in. Every request is
signed with Signature Version 4 by botocore's signer. Each entry's ``Status`` settles its
message: ``SUCCESS`` is sent, ``MESSAGE_REJECTED``/``INVALID_PARAMETER`` fail permanently,
transient ones are retried, and account-wide ones (sending paused, domain not verified)
stop the send. SES limits messages per second, not requests: ``max_send_rate`` paces them.
No idempotency key exists in SES.

``mode: simple`` sends one ``SendEmail`` per recipient instead (no template).

Suppressions: ``ListSuppressedDestinations`` (the account-level list: bounces, complaints).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar

import httpx

from digest.config.providers import SesSettings
from digest.delivery.providers import domains, registry
from digest.delivery.providers.base import (
    Batch,
    Check,
    Event,
    ProviderSettings,
    Recipient,
    Result,
)
from digest.delivery.providers.classify import (
    AnswerTable,
    CodeTable,
    RequestFailed,
    rejected,
    unanswered,
    unreadable_answer,
)
from digest.delivery.providers.defuse import TemplateSyntax
from digest.delivery.providers.domains import DomainFinding
from digest.delivery.providers.http import (
    Envelope,
    HttpProvider,
    Pacer,
    Substitution,
    Suppression,
    encode_json,
    substitute,
)
from digest.email.message import MARKER, fill
from digest.errors import ConfigError, ProviderError

MISSING_BOTOCORE = (
    "provider.name: ses signs its requests with botocore, which is not installed; "
    "install digest with the SES extra: pip install 'digest[ses]'"
)


def require_botocore() -> None:
    """Raise a ConfigError that says how to install botocore, when it is missing."""
    import importlib.util

    if importlib.util.find_spec("botocore") is None:
        raise ConfigError(MISSING_BOTOCORE)


# Entry statuses that concern the account or the request, not the recipient: stop.
ACCOUNT_STATUSES = frozenset(
    {
        "MAIL_FROM_DOMAIN_NOT_VERIFIED",
        "CONFIGURATION_SET_DOES_NOT_EXIST",
        "CONFIGURATION_SET_NOT_FOUND",
        "TEMPLATE_DOES_NOT_EXIST",
        "TEMPLATE_NOT_FOUND",
        "ACCOUNT_SUSPENDED",
        "ACCOUNT_SENDING_PAUSED",
        "CONFIGURATION_SET_SENDING_PAUSED",
        "SENDING_POOL_NOT_FOUND",
        "INVALID_SENDING_POOL_NAME",
        "ACCOUNT_DAILY_QUOTA_EXCEEDED",
    }
)
RETRY_STATUSES = frozenset({"TRANSIENT_FAILURE", "ACCOUNT_THROTTLED", "FAILED"})
PERMANENT_STATUSES = frozenset({"MESSAGE_REJECTED", "INVALID_PARAMETER"})

SOURCE = (
    "docs.aws.amazon.com/ses/latest/APIReference-V2: SendBulkEmail and SendEmail (errors), "
    "BulkEmailEntryResult (Status), CommonErrors"
)

ANSWERS = AnswerTable(
    "ses",
    SOURCE,
    not_accepted_5xx=frozenset({503}),
    transient_types=frozenset(
        {
            "Throttling",
            "ThrottlingException",
            "TooManyRequestsException",
            "ServiceUnavailable",
            "ServiceUnavailableException",
        }
    ),
    account_types=frozenset(
        {
            "AccountSuspendedException",
            "SendingPausedException",
            "MailFromDomainNotVerifiedException",
            "NotFoundException",
        }
    ),
)
"""ServiceUnavailable (503, "a temporary failure of the server") and throttling (400 or 429)
were not taken; InternalFailure (500, "an unknown error") is unknown."""

STATUSES = CodeTable(
    "ses",
    SOURCE,
    accepted={"SUCCESS"},
    account={s: s.lower().replace("_", " ") for s in ACCOUNT_STATUSES},
    transient=RETRY_STATUSES,
)
"""A bulk entry's ``Status``: MESSAGE_REJECTED, INVALID_PARAMETER and anything unknown
refuse that recipient for good; FAILED ("failed to send") was not taken, and is not the
recipient's doing."""


def placeholder(name: str) -> str:
    """In the subject and text: Handlebars' unescaped form."""
    return "{{{" + name + "}}}"


def html_placeholder(name: str) -> str:
    """In the HTML: Handlebars escapes the value itself."""
    return "{{" + name + "}}"


SYNTAX = TemplateSyntax(re.compile(r"\{(?=\{)"))
"""SES renders the subject, HTML and text of a template as Handlebars: every ``{{`` opens an
expression (``{{{``, ``{{#``, ``{{>`` and ``{{!`` included), so every ``{`` followed by
another is broken. Headers are not rendered (they go filled, per entry)."""


def defuse(text: str, *, html: bool = False) -> str:
    """``text`` with Handlebars' syntax broken (:mod:`.defuse`). Handlebars' own escape,
    ``\\{{``, is not used: content that puts a backslash before it (``\\\\{{``) undoes it."""
    return SYNTAX.defuse(text, html=html)


def prepare(envelope: Envelope, recipients: tuple[Recipient, ...]) -> Substitution:
    return substitute(
        envelope.subject,
        envelope.html,
        envelope.text,
        {},
        recipients,
        placeholder,
        defuse=defuse,
        html_placeholder=html_placeholder,
        escapes_html=True,
    )


def build_bulk_request(
    envelope: Envelope,
    recipients: tuple[Recipient, ...],
    *,
    issue_id: str,
    configuration_set: str | None,
) -> dict[str, Any]:
    sub = prepare(envelope, recipients)
    # Handlebars escapes {{x}} itself: the HTML reads the plain value.
    sub_plain = Substitution(
        sub.subject, sub.html, sub.text, {}, sub.names, {name: name for name in sub.html_keys}
    )
    fixed = [{"Name": k, "Value": v} for k, v in envelope.headers.items() if not MARKER.search(v)]
    personal = {k: v for k, v in envelope.headers.items() if MARKER.search(v)}
    template: dict[str, Any] = {
        "TemplateContent": {"Subject": sub.subject, "Html": sub.html, "Text": sub.text},
        "TemplateData": "{}",
    }
    if fixed:
        template["Headers"] = fixed
    entries = []
    for r in recipients:
        entry: dict[str, Any] = {
            "Destination": {"ToAddresses": [r.email]},
            "ReplacementEmailContent": {
                "ReplacementTemplate": {
                    "ReplacementTemplateData": json.dumps(
                        sub_plain.variables(r.values), separators=(",", ":")
                    ),
                }
            },
            "ReplacementTags": [{"Name": "subscriber", "Value": str(r.subscriber_id)}],
        }
        if personal:
            entry["ReplacementHeaders"] = [
                {"Name": k, "Value": fill(v, r.values)} for k, v in personal.items()
            ]
        entries.append(entry)
    body: dict[str, Any] = {
        "FromEmailAddress": envelope.from_address,
        "DefaultContent": {"Template": template},
        "BulkEmailEntries": entries,
        "DefaultEmailTags": [{"Name": "issue", "Value": _tag(issue_id)}],
    }
    if envelope.reply_to:
        body["ReplyToAddresses"] = [envelope.reply_to]
    if configuration_set:
        body["ConfigurationSetName"] = configuration_set
    return body


def build_simple_request(
    envelope: Envelope, recipient: Recipient, *, issue_id: str, configuration_set: str | None
) -> dict[str, Any]:
    values = recipient.values
    body: dict[str, Any] = {
        "FromEmailAddress": envelope.from_address,
        "Destination": {"ToAddresses": [recipient.email]},
        "Content": {
            "Simple": {
                "Subject": {"Data": fill(envelope.subject, values)},
                "Body": {
                    "Html": {"Data": fill(envelope.html, values, html=True)},
                    "Text": {"Data": fill(envelope.text, values)},
                },
                "Headers": [
                    {"Name": k, "Value": fill(v, values)} for k, v in envelope.headers.items()
                ],
            }
        },
        "EmailTags": [{"Name": "issue", "Value": _tag(issue_id)}],
    }
    if envelope.reply_to:
        body["ReplyToAddresses"] = [envelope.reply_to]
    if configuration_set:
        body["ConfigurationSetName"] = configuration_set
    return body


def _tag(value: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in value)


def parse_bulk_response(
    body: Any, recipients: tuple[Recipient, ...]
) -> tuple[list[Result], str | None]:
    """A result per entry, and the first account-wide status (which stops the send)."""
    entries = body.get("BulkEmailEntryResults") if isinstance(body, dict) else None
    if not isinstance(entries, list) or len(entries) != len(recipients):
        raise ValueError(f"expected {len(recipients)} entry results, got {str(body)[:200]}")
    results: list[Result] = []
    stop: str | None = None
    for r, entry in zip(recipients, entries, strict=True):
        if not isinstance(entry, dict) or not entry.get("Status"):
            raise ValueError(f"no Status for entry {len(results)} in {str(body)[:200]}")
        status = str(entry["Status"])
        verdict = STATUSES.verdict(status, str(entry.get("Error") or status))
        if verdict.kind == "accepted" and not entry.get("MessageId"):
            raise ValueError(f"no MessageId for entry {len(results)} in {str(body)[:200]}")
        if verdict.account:
            stop = stop or f"ses {status}: {entry.get('Error') or status}"
        results.append(verdict.result(r.subscriber_id, entry.get("MessageId")))
    return results, stop


class Signer:
    """SigV4 with botocore's own signer (service ``ses``).

    botocore is an optional dependency (``pip install 'digest[ses]'``), imported here only.
    """

    def __init__(self, settings: SesSettings, environ: Mapping[str, str] | None = None) -> None:
        require_botocore()
        from botocore.credentials import Credentials

        env = dict(environ) if environ is not None else None
        self.credentials = Credentials(
            settings.access_key_id.resolve(env),
            settings.secret_access_key.resolve(env),
            settings.session_token.resolve(env) if settings.session_token else None,
        )
        self.region = settings.region

    def __call__(
        self, method: str, url: str, body: bytes, headers: dict[str, str]
    ) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(self.credentials, "ses", self.region).add_auth(request)
        return {k: str(v) for k, v in request.headers.items()}


class Ses(HttpProvider):
    name = "ses"
    Settings: ClassVar[type[ProviderSettings]] = SesSettings
    settings: SesSettings
    max_batch = 50
    default_concurrency = 4
    answers = ANSWERS
    settles_uncertain = (
        "nothing digest can ask: SES v2 has no API that lists sent messages (GetMessageInsights "
        "needs the message id the lost answer held); look in your configuration set's event "
        "destination for the issue's tag, then decide with send.uncertain (hold or resend) or "
        "digest send --resend-uncertain"
    )

    def __init__(self, settings: ProviderSettings, config: Any, *, client: Any = None) -> None:
        assert isinstance(settings, SesSettings)
        require_botocore()  # before any message is queued for a provider that cannot sign
        if not settings.base_url:
            settings = settings.model_copy(
                update={"base_url": f"https://email.{settings.region}.amazonaws.com"}
            )
        super().__init__(settings, config, client=client)
        self.messages = Pacer(rate=settings.max_send_rate)
        self._signer: Signer | None = None

    def stop(self, response: Any, message: str | None = None) -> ProviderError:
        """As for every provider, with SES's error type before its message."""
        return super().stop(response, message or _ses_message(response))

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = Signer(self.settings)
        return self._signer

    def _post(self, path: str, body: dict[str, Any], messages: int) -> httpx.Response:
        if self.settings.max_send_rate:  # SES counts messages, not requests
            for _ in range(messages):
                self.messages.wait()
        return self.transport.send(
            "POST",
            self.url(path),
            content=encode_json(body),
            headers={"Content-Type": "application/json"},
            sign=self.signer,
        )

    def send(self, batch: Batch) -> Iterator[Event]:
        envelope = Envelope.of(batch)
        if self.settings.mode == "simple":
            self.stats.add(recipients=len(batch.recipients))
            yield from self._send_simple(batch, envelope)
            return
        body = build_bulk_request(
            envelope,
            batch.recipients,
            issue_id=batch.issue_id,
            configuration_set=self.settings.configuration_set,
        )

        def post(recipients: tuple[Recipient, ...]) -> httpx.Response:
            return self._post("/v2/email/outbound-bulk-emails", body, len(recipients))

        def read(
            response: httpx.Response, recipients: tuple[Recipient, ...]
        ) -> tuple[list[Result], str | None]:
            return parse_bulk_response(response.json(), recipients)

        yield from self.post_batch(batch.recipients, post, read, what="SendBulkEmail")

    def _send_simple(self, batch: Batch, envelope: Envelope) -> Iterator[Event]:
        for r in batch.recipients:
            body = build_simple_request(
                envelope,
                r,
                issue_id=batch.issue_id,
                configuration_set=self.settings.configuration_set,
            )
            try:
                response = self._post("/v2/email/outbound-emails", body, 1)
            except RequestFailed as exc:
                yield from unanswered(self.name, [r], exc)
                continue
            if response.status_code == 200:
                try:
                    data = response.json()
                    message_id = data.get("MessageId") if isinstance(data, dict) else None
                    if not message_id:
                        raise ValueError(f"no MessageId in {response.text[:200]!r}")
                except ValueError as exc:
                    yield from unreadable_answer(self.name, response, [r], "SendEmail", exc)
                    continue
                yield Result(r.subscriber_id, "sent", provider_message_id=message_id)
                continue
            kind = response.headers.get("x-amzn-errortype", "")
            if (
                response.status_code == 400
                and kind.startswith("MessageRejected")
                and "not verified" not in _ses_message(response)
            ):
                yield rejected(f"ses 400: {_ses_message(response)}").result(r.subscriber_id)
                continue
            raise self.stop(response)

    # -- preflight

    def preflight(self) -> list[Check]:
        """``GetEmailIdentity`` on the From domain: the keys work (the request is signed),
        and whether SES lets that domain send."""
        domain = self.config.sender.from_email.rpartition("@")[2].lower()
        path = f"/v2/email/identities/{urllib.parse.quote(domain)}"
        data = self.get(path, {}, sign=self.signer).json()
        verified = bool(data.get("VerifiedForSendingStatus"))
        return [
            Check("credentials", True, "access keys accepted"),
            Check(
                "domain",
                verified,
                f"{domain} is {'verified' if verified else 'not verified'} for sending",
            ),
        ]

    def domain_state(self, domain: str) -> list[DomainFinding]:
        """``GetEmailIdentity``: verified for sending, and the Easy DKIM status."""
        path = f"/v2/email/identities/{urllib.parse.quote(domain)}"
        return domains.ses(domain, self.get(path, {}, sign=self.signer).json())

    # -- suppressions

    def fetch_suppressions(self) -> Iterator[Suppression]:
        """The account-level suppression list (``ListSuppressedDestinations``), every page."""
        token: str | None = None
        for _ in range(10_000):  # a bound, should a NextToken never end
            query = {"PageSize": "100"}
            if token:
                query["NextToken"] = token
            path = "/v2/email/suppression/addresses?" + urllib.parse.urlencode(query)
            response = self.get(path, {}, sign=self.signer)
            data = response.json()
            for item in data.get("SuppressedDestinationSummaries") or []:
                reason = str(item.get("Reason", ""))
                updated = item.get("LastUpdateTime")
                yield Suppression(
                    str(item["EmailAddress"]),
                    "complained" if reason == "COMPLAINT" else "bounced",
                    f"ses: {reason or 'suppressed'}",
                    datetime.fromtimestamp(updated, timezone.utc).isoformat()
                    if isinstance(updated, (int, float))
                    else None,
                )
            token = data.get("NextToken")
            if not token:
                return


def _ses_message(response: Any) -> str:
    kind = str(response.headers.get("x-amzn-errortype", "")).split(":")[0]
    try:
        data = response.json()
    except ValueError:
        data = {}
    text = ""
    if isinstance(data, dict):
        text = str(data.get("message") or data.get("Message") or "")
        detail = data.get("detail")
        if detail:
            text = f"{text}: {detail}" if text else str(detail)
        kind = kind or str(data.get("type") or data.get("__type") or "")
    text = text or response.text[:300] or "no message"
    return f"{kind}: {text}" if kind else text


registry.register("ses", Ses)
