"""What selection decides: a reason for every post, the sections of an issue, and the
issue itself (:class:`Selection`), as plain data for every later stage."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from functools import cached_property

from digest.content.posts import Post
from digest.content.window import Window


class Reason(str, Enum):
    """Why a post is in or out; the value is the machine-readable code in --json."""

    SELECTED = "selected"
    OUT_OF_WINDOW = "out-of-window"
    DRAFT = "draft"
    FUTURE = "future"
    CATEGORY_EXCLUDED = "category-excluded"
    CATEGORY_NOT_INCLUDED = "category-not-included"
    CATEGORY_UNLISTED = "category-unlisted"
    TAG_FILTERED = "tag-filtered"
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near-duplicate"
    EARLIER_ISSUE = "in-earlier-issue"
    OVER_SECTION_LIMIT = "over-section-limit"
    OVER_TOTAL_LIMIT = "over-total-limit"
    FILLER = "filler"
    SAME_STORY = "same-story"
    EARLIER_STORY = "earlier-story"


_SPACES = re.compile(r"\s+")


def _fold(value: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", value)).strip().casefold()


@dataclass(frozen=True)
class Decision:
    """One post and why it is in or out of the issue."""

    post: Post
    reason: Reason
    section: str | None = None
    detail: str = ""
    duplicate_of: Post | None = None
    rank: int | None = None  # the post's place in its section's rank order, from 1

    @property
    def selected(self) -> bool:
        return self.reason is Reason.SELECTED

    def explain(self) -> str:
        return self.detail or self.reason.value.replace("-", " ")


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    posts: tuple[Post, ...]
    more: int = 0  # posts of this section left out by limits
    origins: tuple[str, ...] = ()  # folded sections: each post's own section

    @property
    def slug(self) -> str:
        return slugify(self.name)

    @cached_property
    def folded_names(self) -> frozenset[str]:
        """The names a subscriber's choice matches (folded): folded once, as a send asks
        for every subscriber."""
        return frozenset({_fold(self.name), _fold(self.title), *map(_fold, self.origins)})

    def chosen_by(self, wanted: set[str]) -> bool:
        """Whether a subscriber who chose ``wanted`` (folded names) gets this section."""
        return not self.folded_names.isdisjoint(wanted)


@dataclass(frozen=True)
class Selection:
    window: Window
    sections: tuple[Section, ...]
    decisions: tuple[Decision, ...]
    # A card's slug -> the other posts that told its story ("also covered by").
    coverage: dict[str, tuple[Post, ...]] = field(default_factory=dict, compare=False)
    # limits.carry_over: where the candidates start, before the window (None: the window)
    carried_from: datetime | None = None

    @property
    def carried(self) -> list[Post]:
        """The posts that came from a skipped period before the window."""
        return [post for post in self.posts if post.date < self.window.start]

    @property
    def issue_id(self) -> str:
        return self.window.issue_id

    @property
    def posts(self) -> list[Post]:
        return [post for section in self.sections for post in section.posts]

    @property
    def count(self) -> int:
        return sum(len(s.posts) for s in self.sections)

    @property
    def in_window(self) -> list[Decision]:
        return [d for d in self.decisions if d.reason is not Reason.OUT_OF_WINDOW]

    def only(self, categories: Iterable[str] | None) -> Selection:
        """The same issue with only the named sections (a subscriber's preferences).

        ``None`` or an empty collection means every section. A folded section ("Also
        this week") is kept whole when one of its posts' own sections is named.
        """
        wanted = {_fold(c) for c in categories or ()}
        if not wanted:
            return self
        sections = tuple(s for s in self.sections if s.chosen_by(wanted))
        return replace(self, sections=sections)


def slugify(value: str) -> str:
    text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-") or "section"
