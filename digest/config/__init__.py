"""The schema of ``config.yaml``: every option, its default and what it does.

:func:`load_config` reads the file, validates all of it at once and raises one
:class:`~digest.errors.ConfigError` listing every problem with the key path that has it
(``limits.per_category: expected a whole number, got 'five'``), with a suggestion when an
unknown key is a near miss of a known one. Relative paths are resolved against the folder
that holds the config file.

Secrets never live in the file: options typed :class:`Secret` accept only a reference to an
environment variable (``token: ${POSTMARK_TOKEN}``), resolved when the value is used.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from digest.config.analytics import AnalyticsConfig
from digest.config.cron import check_cron
from digest.config.database import DatabaseURL as DatabaseURL
from digest.config.database import parse_database_url as parse_database_url
from digest.config.deliverability import DeliverabilityConfig
from digest.config.problems import describe_errors
from digest.config.providers import provider_problems
from digest.config.secret import _ENV_REF
from digest.config.secret import Secret as Secret
from digest.config.selection import SelectionConfig
from digest.errors import ConfigError

CONFIG_ENV = "DIGEST_CONFIG"
DEFAULT_CONFIG_NAME = "config.yaml"

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _parse_duration(value: Any) -> timedelta:
    """Accept ``90`` (seconds), ``"90s"``, ``"15m"``, ``"6h"``, ``"2d"`` or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value)
        if match:
            amount = float(match.group(1))
            unit = match.group(2) or "s"
            seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
            return timedelta(seconds=amount * seconds)
    raise ValueError("expected a duration such as 90s, 15m, 6h or 2d")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Section):
    """Who the newsletter is from and where its posts live on the web."""

    name: str = Field(description="The site's name, shown in the header and the subject.")
    base_url: str = Field(description="The site's public address, https://…")
    logo_url: str | None = Field(default=None, description="An https image for the header.")
    logo_width: int = Field(
        default=160, ge=16, le=600, description="The logo's width in the email, in pixels."
    )
    logo_height: int | None = Field(
        default=None, ge=1, description="The logo's height in pixels (kept in proportion)."
    )
    post_url: str = Field(
        default="{base_url}/posts/{slug}",
        description="How a post's address is made: {base_url}, {slug}, {category_slug}, "
        "{year}, {month}, {day}.",
    )
    category_url: str = Field(
        default="{base_url}/category/{category_slug}",
        description='Where "N more in <Category>" links to.',
    )
    language: str = Field(default="en", description="The lang of the email and pages.")

    @field_validator("base_url")
    @classmethod
    def _base_url_is_absolute(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an absolute URL such as https://example.com")
        return value.rstrip("/")


class ContentConfig(_Section):
    """Where the posts and the per-issue intros are."""

    posts_dir: Path = Field(default=Path("content/posts"), description="Markdown posts.")
    issues_dir: Path = Field(
        default=Path("content/issues"),
        description="Optional intros, one Markdown file per issue: 2026-W34.md.",
    )
    cache_dir: Path = Field(
        default=Path(".digest-cache"), description="Where the post metadata cache lives."
    )
    max_file_size: int = Field(
        default=5_000_000, ge=1, description="Posts larger than this (bytes) are skipped."
    )
    strict: bool = Field(
        default=False,
        description="A post that cannot be read stops build and send (exit 4) instead of "
        "being skipped with a warning.",
    )
    feeds_dir: Path = Field(
        default=Path("data/feeds"),
        description="Each feed's cache (what it last answered, its ETag and Last-Modified) "
        "and health record (the last fetch, failures in a row).",
    )
    failing_after: int = Field(
        default=3,
        ge=1,
        description="`digest check` flags a source that has failed this many fetches in a row.",
    )
    max_yaml_nodes: int = Field(
        default=10_000,
        ge=1,
        description="A post whose front matter holds more values (scalars, lists, mappings) "
        "is reported and skipped.",
    )
    max_yaml_aliases: int = Field(
        default=100,
        ge=0,
        description="A post whose front matter uses more YAML aliases (*name) is reported "
        "and skipped.",
    )
    max_yaml_expanded: int = Field(
        default=100_000,
        ge=1,
        description="A post whose front matter would hold more values with every alias "
        "expanded (a 'billion laughs') is reported and skipped before it is built.",
    )

    excerpt_patterns: list[str] = Field(
        default_factory=list,
        description="Regular expressions (case-insensitive) removed from every excerpt, on "
        "top of the built-in rules; `digest check --excerpts` shows what each removed.",
    )

    @field_validator("excerpt_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value


_DEFAULT_SOURCE_TIMEOUT = timedelta(seconds=20)


class SourceConfig(_Section):
    """One place posts come from: a folder of Markdown files, or a feed.

    Write ``{path: content/posts}`` for a folder, or ``{feed: https://blog.example.com/feed}``
    for an RSS 2.0, Atom or JSON Feed 1.x feed (a URL, or a file path relative to the config
    file).
    """

    path: Path | None = Field(default=None, description="A folder of Markdown posts.")
    feed: str | None = Field(
        default=None,
        description="An RSS 2.0, Atom or JSON Feed 1.x feed: an http(s) URL or a file path.",
    )
    name: str | None = Field(
        default=None,
        description="What reports and `digest check` call this source (default: its path or URL).",
    )
    category: str | None = Field(
        default=None, description="The category of entries that name none (feeds only)."
    )
    timeout: Annotated[
        timedelta, Field(description="How long one fetch may take, in total (feeds only).")
    ] = _DEFAULT_SOURCE_TIMEOUT
    max_bytes: int = Field(
        default=10_000_000, ge=1, description="A feed larger than this (bytes) is refused."
    )
    max_redirects: int = Field(
        default=5, ge=0, le=20, description="Redirects followed when fetching a feed."
    )
    allow_private_addresses: bool = Field(
        default=False,
        description="Fetch this feed even from a loopback, private or link-local address "
        "(its URL or a redirect); off, such a feed is refused.",
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> timedelta:
        duration = _parse_duration(value)
        if duration <= timedelta(0):
            raise ValueError("expected a duration above zero, such as 20s")
        return duration

    @field_validator("feed")
    @classmethod
    def _feed(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("expected a URL such as https://blog.example.com/feed or a file")
        if re.match(r"^[a-z][a-z0-9+.-]*://", value, flags=re.IGNORECASE) and not re.match(
            r"^https?://[^/\s]+", value, flags=re.IGNORECASE
        ):
            raise ValueError(f"'{value}': only http:// and https:// feeds can be fetched")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        if (self.path is None) == (self.feed is None):
            raise ValueError("a source has either path: (a Markdown folder) or feed: (a feed)")
        if self.path is not None and self.category is not None:
            raise ValueError("category: applies to feeds; a Markdown post names its own")
        return self

    @property
    def is_feed(self) -> bool:
        return self.feed is not None

    @property
    def is_remote(self) -> bool:
        return self.feed is not None and bool(re.match(r"^https?://", self.feed, re.IGNORECASE))

    @property
    def label(self) -> str:
        """The name reports use: ``name``, else the path or URL as written."""
        return self.name or str(self.feed if self.feed is not None else self.path)

    def file(self, root: Path) -> Path:
        """The folder, or the feed file, made absolute against ``root``."""
        value = self.path if self.path is not None else Path(self.feed or "")
        value = value.expanduser()
        return value if value.is_absolute() else root / value

    def location(self, root: Path) -> str:
        """Where the source is: its URL, or its absolute path."""
        if self.is_remote:
            return str(self.feed)
        return str(self.file(root))


class CategorySection(_Section):
    """One section of the digest."""

    name: str = Field(description="The category as posts name it (matched in any case).")
    display: str | None = Field(default=None, description="The section title in the email.")
    aliases: list[str] = Field(default_factory=list, description="Other spellings to accept.")
    limit: int | None = Field(default=None, ge=0, description="Overrides limits.per_category.")

    @property
    def title(self) -> str:
        return self.display or self.name


class CategoriesConfig(_Section):
    """Which sections the digest has, in which order, and what they are called."""

    sections: list[CategorySection] = Field(
        default_factory=list, description="Sections in the order the email shows them."
    )
    include: list[str] = Field(
        default_factory=list, description="Only these sections (empty means all)."
    )
    exclude: list[str] = Field(default_factory=list, description="Never these sections.")
    unlisted: Literal["other", "skip"] = Field(
        default="other",
        description="Posts whose category is not a section: gather them under `other_title`, "
        "or leave them out.",
    )
    other_title: str = Field(default="More", description="The section for unlisted categories.")

    @model_validator(mode="after")
    def _names_are_unique(self) -> CategoriesConfig:
        seen: dict[str, str] = {}
        for section in self.sections:
            for spelling in [section.name, *section.aliases]:
                key = spelling.casefold()
                if key in seen and seen[key] != section.name:
                    raise ValueError(f"'{spelling}' names both '{seen[key]}' and '{section.name}'")
                seen[key] = section.name
        known = {s.name.casefold() for s in self.sections} | {
            a.casefold() for s in self.sections for a in s.aliases
        }
        for listed in (*self.include, *self.exclude):
            if self.sections and listed.casefold() not in known:
                raise ValueError(f"'{listed}' in include/exclude is not a section")
        return self


RankKey = Literal["featured", "source", "cover", "excerpt", "newest", "oldest"]
DEFAULT_RANK: tuple[RankKey, ...] = ("featured", "source", "newest")


class LimitsConfig(_Section):
    """How many posts an issue holds."""

    per_category: int | None = Field(default=5, ge=0, description="Posts per section.")
    total: int | None = Field(default=40, ge=0, description="Posts in the whole issue.")
    min_per_section: int = Field(
        default=2,
        ge=1,
        description="A section left with fewer posts folds into one section at the end, "
        "titled also_title, which the smallest other section joins while it is still under "
        "this floor (1 keeps every section as it is).",
    )
    also_title: str = Field(default="Also this week", description="That section's title.")
    min_posts: int = Field(
        default=1,
        ge=1,
        description="An issue with fewer posts is not sent by the schedule, and `digest "
        "send` sends it only with --force.",
    )
    min_posts_daily: int | None = Field(
        default=None,
        ge=1,
        description="The same for a day's issue (a daily newsletter, or the day issues of a "
        "weekly one for its daily readers); unset: min_posts.",
    )
    carry_over: bool = Field(
        default=False,
        description="A period not sent for having too few posts rolls into the next issue "
        "of its cadence: that issue's candidates start where the last sent one ended.",
    )
    rank: list[RankKey] = Field(
        default_factory=lambda: list(DEFAULT_RANK),
        description="How posts are ordered within a section, so limits keep the best: "
        "featured, source (has a source URL), cover (has a cover image), excerpt (has "
        "one), newest, oldest; earlier keys count first.",
    )


class DedupeConfig(_Section):
    """Which posts count as the same post."""

    by_source: bool = Field(default=True, description="Posts sharing a source URL.")
    by_title: bool = Field(default=True, description="Posts whose normalised titles match.")
    near_duplicates: float | None = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Posts whose bodies are at least this similar (estimated Jaccard "
        "similarity of 4-word shingles, 0–1) count as one story; null turns it off.",
    )
    earlier_issues: int = Field(
        default=8,
        ge=0,
        description="Leave out posts whose title, source or body was in one of this many "
        "earlier issues built in out_dir (0 turns it off).",
    )


class FilterConfig(_Section):
    """Which posts to leave out by tag."""

    tags_include: list[str] = Field(default_factory=list, description="Only posts with a tag.")
    tags_exclude: list[str] = Field(default_factory=list, description="No posts with a tag.")


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


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"'{value}' is not a timezone; use an IANA name such as Europe/Berlin or UTC"
        ) from None
    return value


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


NEWSLETTER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
DEFAULT_NEWSLETTER = "default"


class NewsletterConfig(_Section):
    """One newsletter of several sent from the same site and subscriber list.

    Every option left out is the top-level one. The first newsletter listed is the default:
    its issue ids, ledger, runs and archive are exactly those of a config without
    ``newsletters:``; every other one's issue ids start with its name (``links-2026-W47``) and
    its scheduled runs are kept in their own file.
    """

    name: str = Field(
        description="A short name for commands and links (--newsletter NAME): lower-case "
        "letters, digits and hyphens."
    )
    title: str | None = Field(
        default=None, description="What subscribers see on the subscribe and preference pages."
    )
    description: str = Field(default="", description="One line under the title on those pages.")
    sources: list[SourceConfig] | None = Field(
        default=None, description="Where its posts come from (default: the top-level sources)."
    )
    categories: CategoriesConfig | None = Field(default=None, description="Its sections.")
    filters: FilterConfig | None = Field(default=None, description="Its tag filters.")
    limits: LimitsConfig | None = Field(default=None, description="How many posts it holds.")
    from_name: str | None = Field(default=None, description="The name in its From header.")
    subject: str | None = Field(default=None, description="Its subject template.")
    preheader: str | None = Field(default=None, description="Its preview text template.")
    templates_dir: Path | None = Field(default=None, description="Its own templates.")
    period: Literal["week", "day"] | None = Field(
        default=None, description="week or day: what its issues cover (a daily digest)."
    )
    schedule: ScheduleConfig | None = Field(
        default=None,
        description="When it is sent. Its runs database and lock default to the top-level "
        "ones with the newsletter's name added (data/runs-links.sqlite).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NEWSLETTER_NAME.match(value):
            raise ValueError(
                f"'{value}' is not a newsletter name: a lower-case letter, then letters, "
                "digits and hyphens, such as weekly or links"
            )
        return value


def _with_name(path: Path, name: str) -> Path:
    """``data/runs.sqlite`` -> ``data/runs-links.sqlite``."""
    return path.with_name(f"{path.stem}-{name}{path.suffix}")


class Config(_Section):
    """The whole of config.yaml."""

    site: SiteConfig
    content: ContentConfig = Field(default_factory=ContentConfig)
    sources: list[SourceConfig] | None = Field(
        default=None,
        description="Where posts come from: Markdown folders ({path: DIR}) and feeds "
        "({feed: URL or file}). Default: the one folder content.posts_dir.",
    )
    newsletters: list[NewsletterConfig] = Field(
        default_factory=list,
        description="Several newsletters from one config, each overriding the top-level "
        "options it names. Empty: one newsletter, the top-level options as they are.",
    )
    timezone: str = Field(default="UTC", description="The site's timezone (IANA name).")
    week_start: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = Field(default="monday", description="The first day of an issue's week.")
    period: Literal["week", "day"] = Field(
        default="week",
        description="What an issue covers: the last complete week, or the last complete day "
        "(midnight to midnight in the site's timezone; issue ids such as 2026-11-17).",
    )
    categories: CategoriesConfig = Field(default_factory=CategoriesConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    sender: SenderConfig
    email: EmailConfig = Field(default_factory=EmailConfig)
    provider: ProviderConfig = Field(default_factory=ProviderConfig)
    deliverability: DeliverabilityConfig = Field(default_factory=DeliverabilityConfig)
    send: SendConfig = Field(default_factory=SendConfig)
    subscribers: SubscribersConfig = Field(default_factory=SubscribersConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    preview: PreviewConfig = Field(default_factory=PreviewConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    out_dir: Path = Field(default=Path("out"), description="Where builds and reports go.")
    database: DatabaseURL | None = Field(
        default=None,
        description="A postgresql:// URL (password as ${ENV}) that holds every store: "
        "subscribers, ledger, runs and serve's shared state. Unset: the SQLite files.",
    )

    # Set by load_config: the file this came from and the folder paths are relative to.
    source: Path | None = Field(default=None, exclude=True)
    # Set by for_newsletter: which newsletter this config is (None: the default one).
    _newsletter: str | None = PrivateAttr(default=None)
    # ... and the config as written, which every newsletter's view is made from.
    _whole: Config | None = PrivateAttr(default=None)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return _check_timezone(value)

    @model_validator(mode="after")
    def _sources_and_newsletters(self) -> Config:
        if self.sources is not None and "posts_dir" in self.content.model_fields_set:
            raise ValueError(
                "sources: and content.posts_dir both say where posts are; list the folder "
                "under sources: as {path: " + str(self.content.posts_dir) + "}"
            )
        if self.sources is not None and not self.sources:
            raise ValueError("sources: is empty; list at least one {path: DIR} or {feed: URL}")
        seen: set[str] = set()
        for newsletter in self.newsletters:
            if newsletter.name in seen:
                raise ValueError(f"newsletters: '{newsletter.name}' is listed twice")
            seen.add(newsletter.name)
            if newsletter.sources is not None and not newsletter.sources:
                raise ValueError(f"newsletters: '{newsletter.name}' has an empty sources: list")
        return self

    @property
    def source_list(self) -> list[SourceConfig]:
        """Every source of posts; ``content.posts_dir`` alone when ``sources:`` is not set."""
        if self.sources is not None:
            return list(self.sources)
        return [SourceConfig(path=self.content.posts_dir)]

    @property
    def newsletter_names(self) -> list[str]:
        """Every newsletter's name, the default one first."""
        return [n.name for n in self.newsletters] or [DEFAULT_NEWSLETTER]

    @property
    def newsletter_name(self) -> str:
        """The name of the newsletter this config is for."""
        return self._newsletter or self.newsletter_names[0]

    @property
    def is_default_newsletter(self) -> bool:
        return self.newsletter_name == self.newsletter_names[0]

    @property
    def issue_prefix(self) -> str:
        """What this newsletter's issue ids start with: nothing for the default one."""
        return "" if self.is_default_newsletter else f"{self.newsletter_name}-"

    def owns_issue(self, issue_id: str) -> bool:
        """Whether ``issue_id`` is one of this newsletter's issues (by its prefix)."""
        if self.issue_prefix:
            return issue_id.startswith(self.issue_prefix)
        others = [f"{n}-" for n in self.newsletter_names if n != self.newsletter_name]
        return not any(issue_id.startswith(prefix) for prefix in others)

    def newsletter_title(self, name: str | None = None) -> str:
        """What subscribers see as the newsletter's name."""
        chosen = name or self.newsletter_name
        for newsletter in self.newsletters:
            if newsletter.name == chosen:
                return newsletter.title or (
                    self.site.name if chosen == self.newsletter_names[0] else chosen
                )
        return self.site.name

    def newsletter_description(self, name: str) -> str:
        return next((n.description for n in self.newsletters if n.name == name), "")

    def for_newsletter(self, name: str | None) -> Config:
        """This config as one newsletter sees it: its overrides applied to the top level.

        ``None`` is the default (first) newsletter. An unknown name is a ConfigError that
        lists the known ones. Asked of one newsletter's view, it answers from the config as
        written, never from that view.
        """
        if self._whole is not None:
            return self._whole.for_newsletter(name)
        names = self.newsletter_names
        chosen = name or names[0]
        if chosen not in names:
            raise ConfigError(
                f"--newsletter {chosen}: no such newsletter; the config has {', '.join(names)}"
            )
        spec = next((n for n in self.newsletters if n.name == chosen), None)
        if spec is None:
            return self
        default = chosen == names[0]
        schedule = spec.schedule or self.schedule
        if not default:
            moved: dict[str, Any] = {}
            if spec.schedule is None or "database" not in spec.schedule.model_fields_set:
                moved["database"] = _with_name(self.schedule.database, chosen)
            if spec.schedule is None or "lock" not in spec.schedule.model_fields_set:
                moved["lock"] = _with_name(self.schedule.lock, chosen)
            schedule = schedule.model_copy(update=moved)
        email_update: dict[str, Any] = {}
        if spec.subject is not None:
            email_update["subject"] = spec.subject
        if spec.preheader is not None:
            email_update["preheader"] = spec.preheader
        if spec.templates_dir is not None:
            email_update["templates_dir"] = spec.templates_dir
        site = self.site
        if spec.title is not None:
            site = site.model_copy(update={"name": spec.title})
        sender = self.sender
        if spec.from_name is not None:
            sender = sender.model_copy(update={"from_name": spec.from_name})
        derived = self.model_copy(
            update={
                "site": site,
                "sender": sender,
                "sources": spec.sources if spec.sources is not None else self.sources,
                "categories": spec.categories or self.categories,
                "filters": spec.filters or self.filters,
                "limits": spec.limits or self.limits,
                "email": self.email.model_copy(update=email_update),
                "schedule": schedule,
                "period": spec.period or self.period,
            }
        )
        derived._newsletter = chosen
        derived._whole = self
        return derived

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def root(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def path(self, value: Path) -> Path:
        """A configured path, made absolute against the config file's folder."""
        return value if value.is_absolute() else self.root / value

    @property
    def list_id(self) -> str:
        """The List-Id: the configured one or the site's host; a newsletter other than the
        first is its own list, with its name in front (``links.example.com``)."""
        base = self.sender.list_id or re.sub(r"^https?://", "", self.site.base_url).split("/")[0]
        return base if self.is_default_newsletter else f"{self.newsletter_name}.{base}"


def format_validation_errors(
    exc: ValidationError, root: type[BaseModel] | None = None
) -> list[str]:
    """One line per problem, each starting with the dotted key path below ``root``."""
    return describe_errors(exc, root or Config)


def find_config(explicit: str | Path | None = None) -> Path:
    """The config file to use: ``explicit``, else $DIGEST_CONFIG, else ./config.yaml."""
    chosen = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME
    return Path(chosen)


def parse_config(data: Any, source: Path | None = None) -> Config:
    """Validate already-loaded YAML data, raising one ConfigError with every problem.

    The provider's own options are checked in the same pass, against that provider's
    schema (:mod:`digest.config.providers`), so a typo there is reported beside the others.
    """
    where = str(source) if source else "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of options at the top level")
    problems: list[str] = []
    config: Config | None = None
    try:
        config = Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = format_validation_errors(exc)
    provider = data.get("provider")
    if isinstance(provider, dict):
        problems += [p for p in provider_problems(provider) if p not in problems]
    if problems or config is None:
        count = len(problems)
        raise ConfigError(f"{where}: {count} problem{'s' if count != 1 else ''}", problems)
    return config


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a config file (see :func:`find_config` for which one)."""
    source = find_config(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{source}: no such config file; run `digest init` to write one from your "
            f"posts (or pass --config, or set {CONFIG_ENV})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read it: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{line}: not valid YAML: {problem}") from None
    return parse_config(data, source.resolve())


def secret_references(config: Config) -> list[tuple[str, Secret]]:
    """Every ``${VAR}`` the config refers to, with its dotted key (provider options too)."""
    found: list[tuple[str, Secret]] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Secret):
            found.append((key, value))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                if name != "source":
                    walk(getattr(value, name), f"{key}.{name}" if key else name)
            for name, extra in (value.model_extra or {}).items():
                walk(extra, f"{key}.{name}" if key else name)
        elif isinstance(value, str) and _ENV_REF.match(value.strip()):
            found.append((key, Secret(value.strip())))
        elif isinstance(value, dict):
            for name, item in value.items():
                walk(item, f"{key}.{name}")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(item, f"{key}[{index}]")

    walk(config, "")
    return found


def missing_secrets(
    config: Config, environ: dict[str, str] | None = None
) -> list[tuple[str, Secret]]:
    """The ``${VAR}`` references whose variable is not set (or empty)."""
    return [(key, ref) for key, ref in secret_references(config) if not ref.is_set(environ)]


def require_secrets(config: Config, keys: tuple[str, ...] = ("provider.",)) -> None:
    """Raise one ConfigError naming the config file and every unset variable under ``keys``."""
    missing = [(k, r) for k, r in missing_secrets(config) if k.startswith(keys)]
    if missing:
        where = str(config.source) if config.source else "the config"
        raise ConfigError(
            f"{where}: {len(missing)} environment variable"
            f"{'s are' if len(missing) != 1 else ' is'} not set; export "
            f"{'them' if len(missing) != 1 else 'it'} before sending",
            [f"{key}: {ref} is not set" for key, ref in missing],
        )
