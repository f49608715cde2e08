"""The sections of the long-running services: the schedule, webhooks, `digest serve` and
the preview."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    field_validator,
)

from digest.config.cron import check_cron
from digest.config.database import DatabaseURL as DatabaseURL
from digest.config.database import parse_database_url as parse_database_url
from digest.config.secret import Secret as Secret
from digest.config.section import _check_timezone, _parse_duration, _Section


class ScheduleConfig(_Section):
    """When `digest run` and `digest schedule` send."""

    cron: str = Field(default="0 9 * * MON", description='When to send, as cron: "0 9 * * MON".')
    timezone: str | None = Field(default=None, description="Defaults to the top-level one.")
    grace: Annotated[timedelta, Field(description="Catch up a missed run this late.")] = timedelta(
        hours=6
    )
    skip_empty: bool = Field(default=True, description="Send nothing for a week with no posts.")
    database: Path = Field(
        default=Path("data/runs.sqlite"), description="Which scheduled runs happened, and how."
    )
    lock: Path = Field(
        default=Path("data/schedule.lock"),
        description="Held by `digest schedule`; `digest run` holds <name>.run beside it. "
        "Unused with database: (the locks are then in the database).",
    )
    local_time: str | None = Field(
        default=None,
        description='Send each reader at this wall-clock time in their own timezone ("09:00"): '
        "one build per issue, sent in waves, one per zone whose local time has come "
        "(docs/schedule.md). Unset: everyone at the cron's time.",
    )

    @field_validator("local_time")
    @classmethod
    def _local_time(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value.strip()):
            raise ValueError(f'{value!r} is not a time of day such as "09:00" (HH:MM)')
        return None if value is None else value.strip()

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else _check_timezone(value)

    @field_validator("grace", mode="before")
    @classmethod
    def _grace(cls, value: Any) -> timedelta:
        return _parse_duration(value)


class WebhooksConfig(_Section):
    """Credentials that prove a webhook came from the provider (unset: that route is off)."""

    postmark_username: str | None = Field(
        default=None, description="Postmark has no signature: the basic-auth user in its URL."
    )
    postmark_password: Secret | None = Field(
        default=None, description="The basic-auth password in Postmark's webhook URL."
    )
    resend_secret: Secret | None = Field(
        default=None, description="Resend's signing secret (whsec_…), checked Svix-style."
    )
    sendgrid_public_key: Secret | None = Field(
        default=None, description="SendGrid's Signed Event Webhook verification key (base64)."
    )
    mailgun_signing_key: Secret | None = Field(
        default=None, description="Mailgun's HTTP webhook signing key."
    )
    tolerance: Annotated[
        timedelta,
        Field(
            description="How far Resend's signed timestamp may be from now (Svix signs "
            "each attempt afresh); older deliveries are refused."
        ),
    ] = timedelta(minutes=5)
    max_age: Annotated[
        timedelta,
        Field(
            description="How old a SendGrid or Mailgun signed timestamp may be. Wide on "
            "purpose: they deliver late and retry for hours, and a refused bounce would "
            "keep mailing a dead address. Repeats within it are recognised and skipped."
        ),
    ] = timedelta(hours=24)
    mailgun_confirm: bool = Field(
        default=False,
        description="Mailgun signs only timestamp + token, not the body: with this on, each "
        "bounce, complaint or unsubscribe a Mailgun webhook reports is looked up in Mailgun's "
        "events API (provider.api_key, provider.domain) and applied only if Mailgun has it.",
    )

    @field_validator("tolerance", "max_age", mode="before")
    @classmethod
    def _tolerance(cls, value: Any) -> timedelta:
        return _parse_duration(value)


class ServeConfig(_Section):
    """The subscriber-facing web service, `digest serve`."""

    public_url: str | None = Field(
        default=None,
        description="Where `digest serve` is reachable; unsubscribe and preference links "
        "in the email point here.",
    )
    host: str = Field(default="127.0.0.1", description="Listen address.")
    port: int = Field(default=8025, ge=0, le=65535, description="Listen port (0: any free one).")
    secret: Secret | None = Field(default=None, description="Signs tokens, e.g. ${DIGEST_SECRET}.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies whose X-Forwarded-For/-Proto are believed, e.g. 127.0.0.1.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Other sites whose pages may post to /subscribe (an HTML form, or fetch "
        "with JSON), e.g. https://blog.example.com.",
    )
    subscribe_per_minute: float = Field(
        default=5, gt=0, description="Subscribe requests allowed per client address per minute."
    )
    subscribe_burst: int = Field(
        default=10, ge=1, description="How many subscribe requests a client may make at once."
    )
    max_connections_per_client: int = Field(
        default=100,
        ge=1,
        description="Open connections one client address may hold; a new one past it is "
        "closed at once (the trusted_proxies are exempt).",
    )
    max_body_kb: int = Field(default=16, ge=1, description="Largest form or JSON body, in KiB.")
    max_webhook_body_kb: int = Field(
        default=1024, ge=1, description="Largest webhook body, in KiB."
    )
    confirm_ttl: Annotated[timedelta, Field(description="How long a confirmation link works.")] = (
        timedelta(days=2)
    )
    mail_per_address: int = Field(
        default=3,
        ge=0,
        description="Most emails the service sends one mailbox (confirmations, 'already "
        "subscribed' notes) within serve.mail_window, whoever asks; more subscribe requests "
        "get the same answer and no mail. A +tag does not make another mailbox.",
    )
    mail_window: Annotated[
        timedelta, Field(description="The window serve.mail_per_address counts in.")
    ] = timedelta(days=1)
    max_json_depth: int = Field(
        default=32,
        ge=2,
        description="Deepest nesting of arrays and objects a JSON body may have (subscribe "
        "and webhooks); deeper bodies get 400.",
    )
    consent_text: str = Field(
        default="Send me the weekly digest by email. I can unsubscribe at any time.",
        description="The consent text the subscribe form shows; each consent record keeps it.",
    )
    welcome: bool = Field(
        default=False,
        description="Send a welcome email (templates/serve/welcome_email.*) after someone "
        "confirms, saying when the next issue comes.",
    )
    welcome_latest_issue: bool = Field(
        default=False,
        description="With welcome: the welcome comes inside the latest issue of each "
        "newsletter the reader chose (their sections, their language), one message recorded "
        "in the ledger like any send, so it never reaches them twice.",
    )
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an absolute URL such as https://news.example.com")
        return None if value is None else value.rstrip("/")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s]+/?", origin):
                raise ValueError(f"'{origin}' is not an origin such as https://blog.example.com")
        return [origin.rstrip("/") for origin in value]

    @field_validator("confirm_ttl", "mail_window", mode="before")
    @classmethod
    def _confirm_ttl(cls, value: Any) -> timedelta:
        return _parse_duration(value)


class PreviewConfig(_Section):
    """The local preview server, `digest preview`."""

    host: str = Field(default="127.0.0.1", description="Listen address.")
    port: int = Field(default=8000, ge=0, le=65535, description="Listen port.")
