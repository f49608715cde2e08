"""The ``provider`` section: each built-in transport's options, declared like the rest of
the config, so that one pass reports every problem and ``digest config reference`` lists
every provider's keys.

A provider added by a package (entry point group ``digest.providers``) declares its own
options as a :class:`ProviderSettings` subclass on its ``Settings`` attribute; they are
checked the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from digest.config.problems import describe_errors
from digest.config.secret import Secret

ENTRY_POINT_GROUP = "digest.providers"


class ProviderSettings(BaseModel):
    """Base for a provider's options: unknown keys are errors that name the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OutboxSettings(ProviderSettings):
    """outbox: one .eml file per message, no network (the default)."""

    directory: Path | None = Field(
        default=None,
        description="Where the files go [default: <out_dir>/<issue-id>/outbox].",
    )


class SmtpSettings(ProviderSettings):
    """smtp: any SMTP server, one connection reused for the whole run."""

    host: str = Field(default="localhost", description="The SMTP server.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="[default: 465 with ssl, else 587]"
    )
    security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls", description="starttls (port 587), ssl (port 465), or none."
    )
    username: str | None = Field(default=None, description="Login name, if the server wants one.")
    password: Secret | None = Field(default=None, description="e.g. ${SMTP_PASSWORD}.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for the server.")
    local_hostname: str | None = Field(default=None, description="The name sent in EHLO.")
    dkim_key_file: Path | None = Field(
        default=None,
        description="A DKIM private key (PEM; `digest keys dkim` writes one): every message "
        "is signed with it. Unset: messages go out unsigned.",
    )
    dkim_selector: str = Field(default="digest", description="The DKIM selector (s=).")
    dkim_domain: str | None = Field(
        default=None, description="The signing domain (d=). Unset: the From address's domain."
    )


class HttpSettings(ProviderSettings):
    """Options every HTTP API transport has."""

    base_url: str = Field(description="The API's address (tests point it at an emulator).")
    timeout: float = Field(default=30.0, gt=0, description="Seconds before a request is retried.")
    max_retries: int = Field(
        default=6,
        ge=0,
        description="Retries of a request after a 429, a 5xx or a dropped "
        "connection before its messages are left for the next run.",
    )
    retry_base_delay: float = Field(
        default=0.5, ge=0, description="First backoff in seconds; doubled per retry, jittered."
    )
    retry_max_delay: float = Field(default=30.0, ge=0, description="Longest backoff in seconds.")
    max_requests_per_second: float | None = Field(
        default=None, gt=0, description="A ceiling of your own on top of the provider's headers."
    )
    reconcile_after: float | None = Field(
        default=None,
        ge=0,
        description="Where digest can ask the provider what it accepted: how many seconds "
        "after an unanswered request its records are trusted to be complete, so that a "
        "message missing from them is sent again (default: the provider's own delay, "
        "1800 for Mailgun's events, 300 for Postmark's message search).",
    )


POSTMARK_API = "https://api.postmarkapp.com"
RESEND_API = "https://api.resend.com"
SENDGRID_API = "https://api.sendgrid.com"
MAILGUN_API = "https://api.mailgun.net"  # EU: https://api.eu.mailgun.net
BREVO_API = "https://api.brevo.com"


class PostmarkSettings(HttpSettings):
    """postmark: Postmark's batch API."""

    token: Secret = Field(description="Server API token, e.g. ${POSTMARK_TOKEN}.")
    account_token: Secret | None = Field(
        default=None,
        description="Account API token, e.g. ${POSTMARK_ACCOUNT_TOKEN}: lets "
        "`digest check --deliverability` read the domain's DKIM and Return-Path state.",
    )
    message_stream: str = Field(
        default="outbound", description="Message stream: 'broadcast' for newsletters."
    )
    base_url: str = Field(default=POSTMARK_API, description="The API's address.")
    track_opens: bool | None = Field(default=None, description="Postmark open tracking.")


class ResendSettings(HttpSettings):
    """resend: Resend's batch API, with idempotency keys."""

    api_key: Secret = Field(description="API key (re_…), e.g. ${RESEND_API_KEY}.")
    base_url: str = Field(default=RESEND_API, description="The API's address.")
    permissive: bool = Field(
        default=True, description="Send valid emails of a batch even when others are refused."
    )


class SendGridSettings(HttpSettings):
    """sendgrid: SendGrid's v3 mail send API, substitution per recipient."""

    api_key: Secret = Field(description="API key (SG.…), e.g. ${SENDGRID_API_KEY}.")
    base_url: str = Field(default=SENDGRID_API, description="The API's address.")
    asm_group_id: int | None = Field(
        default=None, description="Unsubscribe group, if you use SendGrid's own groups."
    )


class MailgunSettings(HttpSettings):
    """mailgun: Mailgun's messages API with recipient variables."""

    api_key: Secret = Field(description="Private API key, e.g. ${MAILGUN_API_KEY}.")
    domain: str = Field(description="Your sending domain, e.g. mg.example.com.")
    base_url: str = Field(default=MAILGUN_API, description="https://api.eu.mailgun.net for the EU.")


class SesSettings(HttpSettings):
    """ses: Amazon SES v2 (needs the ``ses`` extra for request signing)."""

    region: str = Field(default="us-east-1", description="The AWS region you send from.")
    access_key_id: Secret = Field(description="e.g. ${AWS_ACCESS_KEY_ID}.")
    secret_access_key: Secret = Field(description="e.g. ${AWS_SECRET_ACCESS_KEY}.")
    session_token: Secret | None = Field(default=None, description="e.g. ${AWS_SESSION_TOKEN}.")
    base_url: str = Field(default="", description="Default: https://email.<region>.amazonaws.com.")
    configuration_set: str | None = Field(default=None, description="ConfigurationSetName.")
    max_send_rate: float | None = Field(
        default=None, gt=0, description="Your account's maximum send rate, messages/s."
    )
    mode: Literal["bulk", "simple"] = Field(
        default="bulk", description="bulk: SendBulkEmail; simple: one SendEmail per recipient."
    )


class BrevoSettings(HttpSettings):
    """brevo: Brevo's transactional API with message versions and idempotency keys."""

    api_key: Secret = Field(description="API key (xkeysib-…), e.g. ${BREVO_API_KEY}.")
    base_url: str = Field(default=BREVO_API, description="The API's address.")


BUILTIN: dict[str, type[ProviderSettings]] = {
    "outbox": OutboxSettings,
    "smtp": SmtpSettings,
    "postmark": PostmarkSettings,
    "resend": ResendSettings,
    "sendgrid": SendGridSettings,
    "mailgun": MailgunSettings,
    "ses": SesSettings,
    "brevo": BrevoSettings,
}


def _added_settings() -> dict[str, type[BaseModel] | None]:
    """Providers added by packages: name -> their Settings (None when they declare none)."""
    from importlib.metadata import entry_points  # a third-party provider is the rare case

    found: dict[str, type[BaseModel] | None] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN:
            continue
        try:
            settings = getattr(entry.load(), "Settings", None)
        except Exception:
            settings = None
        found[entry.name] = settings if isinstance(settings, type) else None
    return found


def settings_for(name: str) -> type[BaseModel] | None:
    """The options schema of provider ``name`` (None: unknown, or declares none)."""
    if name in BUILTIN:
        return BUILTIN[name]
    return _added_settings().get(name)


def unknown_provider(name: str, known: Iterable[str]) -> str:
    """The one message for a provider name nobody registered: the near miss, and every
    name known (the config check and the registry both say it)."""
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"provider.name: unknown provider '{name}'{hint} (known: {', '.join(names)})"


def provider_problems(section: dict[str, Any]) -> list[str]:
    """One line per problem in a raw ``provider`` mapping, each naming its key."""
    name = section.get("name", "outbox")
    if not isinstance(name, str):
        return [f"provider.name: expected a provider's name (got {name!r})"]
    options = {k: v for k, v in section.items() if k != "name"}
    if name in BUILTIN:
        model: type[BaseModel] | None = BUILTIN[name]
    else:
        added = _added_settings()
        if name not in added:
            return [unknown_provider(name, {*BUILTIN, *added})]
        model = added[name]
    if model is None:
        return []
    try:
        model.model_validate(options)
    except ValidationError as exc:
        return [f"provider.{line}" for line in describe_errors(exc, model)]
    return []
