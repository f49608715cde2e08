"""The sections about what a digest holds: the site, where posts come from (``content``,
``sources``), categories and sections, limits, duplicates and filters."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from digest.config.database import DatabaseURL as DatabaseURL
from digest.config.database import parse_database_url as parse_database_url
from digest.config.secret import Secret as Secret
from digest.config.section import _parse_duration, _Section


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
