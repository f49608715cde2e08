"""The sections about sending: the sender, the email (subject, preheader, size, images),
the provider, the send loop, subscribers, keys and the ledger."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from digest.config.database import DatabaseURL as DatabaseURL
from digest.config.database import parse_database_url as parse_database_url
from digest.config.secret import Secret as Secret
from digest.config.section import _parse_duration, _Section


class SenderConfig(_Section):
    """Who the email is from, and the footer's legal lines."""

    from_name: str = Field(description="The name in the From header.")
    from_email: str = Field(description="The address in the From header.")
    reply_to: str | None = Field(default=None, description="Where replies go.")
    postal_address: str = Field(
        default="", description="Shown in the footer, as anti-spam laws require."
    )
    list_id: str | None = Field(
        default=None, description="The List-Id header's id; defaults to the site's host."
    )
    unsubscribe_mailto: str | None = Field(
        default=None, description="The mailto: address in List-Unsubscribe."
    )

    @field_validator("from_email", "reply_to", "unsubscribe_mailto")
    @classmethod
    def _looks_like_email(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError(f"'{value}' is not an email address")
        return value


TrimStep = Literal["fewer_posts", "compact_cards"]
TRIM_STEPS: tuple[TrimStep, ...] = ("fewer_posts", "compact_cards")


ImageCdn = Literal["imgix", "cloudinary"]
DEFAULT_IMAGE_CDNS: dict[str, ImageCdn] = {
    "images.unsplash.com": "imgix",
    "*.imgix.net": "imgix",
    "res.cloudinary.com": "cloudinary",
}


class EmailConfig(_Section):
    """How the email is composed."""

    subject: str = Field(
        default="{site}: {top_title} and {n} more",
        description="Subject template: {site}, {top_title}, {n}, {count}, {issue_id}, {week}.",
    )
    subject_short: str = Field(
        default="{site}: {count} stories this week",
        description="The subject when the template with the lead's whole title is over 70 "
        "characters and '{site}: {top_title}' is too (a headline is never cut).",
    )
    preheader: str = Field(
        default="{count} posts this week: {titles}",
        description="Preview text template, kept to 40–110 characters.",
    )
    size_budget_kb: int = Field(
        default=100,
        ge=10,
        description="The HTML part as sent (personalised, quoted-printable) must stay under "
        "this many kilobytes of 1,000 bytes; Gmail clips at about 102 KB.",
    )
    trim_policy: list[TrimStep] = Field(
        default_factory=lambda: list(TRIM_STEPS),
        description="How to fit an over-budget issue, in order.",
    )
    utm: dict[str, str] = Field(
        default_factory=lambda: {
            "utm_source": "digest",
            "utm_medium": "email",
            "utm_campaign": "{issue_id}",
        },
        description="Query parameters added to post links ({issue_id} is filled in).",
    )
    templates_dir: Path | None = Field(
        default=None, description="Your own templates; a file here overrides the built-in one."
    )
    image_cdns: dict[str, ImageCdn] = Field(
        default_factory=lambda: dict(DEFAULT_IMAGE_CDNS),
        description="Image hosts that resize on request (host, or *.domain), and how: imgix "
        "(w/h query, as Unsplash) or cloudinary (w_,h_ in the path). Covers there are asked "
        "for at twice their display size, cropped to the displayed shape.",
    )
    cover_fallback: Literal["alt", "color"] = Field(
        default="color",
        description="What a cover leaves when images are off: color (a block of "
        "cover_color in the cover's shape) or alt (the box with its alt text, coverAlt).",
    )
    cover_color: str = Field(
        default="#d0d7de",
        pattern=r"^#[0-9a-fA-F]{6}$",
        description="The colour of that block (#rrggbb) when the cover's own average "
        "colour cannot be read (a remote image, or no Pillow): the usual colour of the covers.",
    )
    cover_dir: Path | None = Field(
        default=None,
        description="The folder the site's own images are served from (site.base_url/...): "
        "a cover found there gives the block its average colour, read at build time.",
    )
    trim_min_posts: int = Field(
        default=3,
        ge=1,
        description="When trimming an over-budget issue, fewer_posts keeps at least this many "
        "full cards per section before compact_cards is tried.",
    )


class ProviderConfig(BaseModel):
    """Which transport sends the email, and its options.

    Options beyond ``name`` belong to the provider and are validated by it.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(default="outbox", description="outbox, smtp, or an email API's name.")

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SendConfig(_Section):
    """How sending paces and retries."""

    concurrency: int | None = Field(
        default=None, ge=1, description="Requests in flight (default: the provider's)."
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="Messages per request (default: the provider's most)."
    )
    max_attempts: int = Field(
        default=10,
        ge=1,
        description="Tries in one run for messages the provider refuses for now (a 451, a "
        "throttle); past them, or past retry_for, the run stops (exit 6) and they stay "
        "pending for the next run. Never a permanent failure.",
    )
    retry_for: Annotated[
        timedelta,
        Field(
            description="How long one run retries messages refused for now, waiting "
            "retry_wait, then twice as long each try (at most retry_wait_max), or as long as "
            "the provider's Retry-After says."
        ),
    ] = timedelta(minutes=10)
    retry_wait: Annotated[
        timedelta,
        Field(description="The first wait before messages refused for now are tried again."),
    ] = timedelta(seconds=2)
    retry_wait_max: Annotated[
        timedelta,
        Field(description="The longest wait between tries of messages refused for now."),
    ] = timedelta(seconds=60)
    lease: Annotated[
        timedelta,
        Field(
            description="How long a sender holds the rows it took without renewing them; "
            "the rows of a sender that died go to the others after it."
        ),
    ] = timedelta(seconds=60)

    @field_validator("retry_for", "retry_wait", "retry_wait_max", mode="before")
    @classmethod
    def _retry_for(cls, value: Any) -> timedelta:
        return _parse_duration(value)

    @field_validator("lease", mode="before")
    @classmethod
    def _lease(cls, value: Any) -> timedelta:
        lease = _parse_duration(value)
        if lease < timedelta(seconds=1):
            raise ValueError("expected at least 1s")
        return lease

    uncertain: Literal["hold", "resend"] = Field(
        default="hold",
        description="Messages that may have reached the provider without an answer, which "
        "the provider cannot confirm or deny: hold them (report, never send twice) or resend "
        "them on the next run (no one missed, a few may get two copies). Providers with "
        "idempotency keys always resend safely.",
    )
    progress_every: float = Field(
        default=10.0, gt=0, description="Seconds between progress lines when not on a terminal."
    )


class SubscribersConfig(_Section):
    """Where subscribers are kept."""

    database: Path = Field(
        default=Path("data/subscribers.sqlite"), description="The subscriber store."
    )
    client_address: Literal["truncate", "hash"] = Field(
        default="truncate",
        description="How a consent record keeps the subscriber's IP address: truncate "
        "(IPv4 /24, IPv6 /48) or hash (keyed with the server secret). Never in full.",
    )


class KeysConfig(_Section):
    """The key that signs unsubscribe and preference links (see `digest keys`)."""

    file: Path = Field(
        default=Path("data/link-keys.json"),
        description="Created once (mode 0600) when no serve.secret/$DIGEST_SECRET is set; "
        "`digest send` and `digest serve` must read the same file.",
    )
    grace_period: Annotated[
        timedelta,
        Field(
            description="After `digest keys rotate`, links signed with an older key keep "
            "working this long."
        ),
    ] = timedelta(days=90)

    @field_validator("grace_period", mode="before")
    @classmethod
    def _grace(cls, value: Any) -> timedelta:
        return _parse_duration(value)


class LedgerConfig(_Section):
    """Where the record of what was sent to whom is kept."""

    database: Path = Field(default=Path("data/ledger.sqlite"), description="What was sent to whom.")
