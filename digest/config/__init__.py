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
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from digest.config.analytics import AnalyticsConfig
from digest.config.content import (
    DEFAULT_RANK,
    CategoriesConfig,
    CategorySection,
    ContentConfig,
    DedupeConfig,
    FilterConfig,
    LimitsConfig,
    RankKey,
    SiteConfig,
    SourceConfig,
)
from digest.config.database import DatabaseURL as DatabaseURL
from digest.config.database import parse_database_url as parse_database_url
from digest.config.deliverability import DeliverabilityConfig
from digest.config.problems import describe_errors
from digest.config.providers import provider_problems
from digest.config.secret import _ENV_REF
from digest.config.secret import Secret as Secret
from digest.config.section import (
    WEEKDAYS,
    _check_timezone,
    _Section,
)
from digest.config.selection import SelectionConfig
from digest.config.sending import (
    DEFAULT_IMAGE_CDNS,
    TRIM_STEPS,
    EmailConfig,
    ImageCdn,
    KeysConfig,
    LedgerConfig,
    ProviderConfig,
    SendConfig,
    SenderConfig,
    SubscribersConfig,
    TrimStep,
)
from digest.config.services import (
    PreviewConfig,
    ScheduleConfig,
    ServeConfig,
    WebhooksConfig,
)
from digest.errors import ConfigError

# the sections' models, declared by section in their own modules
__all__ = [
    "DEFAULT_IMAGE_CDNS",
    "DEFAULT_RANK",
    "TRIM_STEPS",
    "WEEKDAYS",
    "CategoriesConfig",
    "CategorySection",
    "ContentConfig",
    "DedupeConfig",
    "EmailConfig",
    "FilterConfig",
    "ImageCdn",
    "KeysConfig",
    "LedgerConfig",
    "LimitsConfig",
    "PreviewConfig",
    "ProviderConfig",
    "RankKey",
    "ScheduleConfig",
    "SendConfig",
    "SenderConfig",
    "ServeConfig",
    "SiteConfig",
    "SourceConfig",
    "SubscribersConfig",
    "TrimStep",
    "WebhooksConfig",
]

CONFIG_ENV = "DIGEST_CONFIG"
DEFAULT_CONFIG_NAME = "config.yaml"


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
