"""A week in balance: the order in which a section's posts are picked.

Sections are taken in their order, and inside each the next pick is the post with the
highest score, recomputed after every pick:

    score = coverage × (outlets that also covered its story)
          + newest × (days from the window's start to the post)
          − day × (posts already picked from that day, in any section)
          − source × (posts already picked from that outlet, in any section)

The configured rank order's traits (``limits.rank``: featured, source, cover, excerpt)
count before the score, so featured posts come first; filler kept by
``selection.filler: demote`` comes after every other post; ties go to the whole rank
order. Picks count
against days and outlets only up to the section's limit, since only those are shown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from digest.config import Config
from digest.content.posts import Post
from digest.content.stories import source_name


@dataclass(frozen=True)
class Weights:
    coverage: float = 1.0
    day: float = 0.6
    source: float = 0.3
    newest: float = 0.1

    @classmethod
    def from_config(cls, config: Config) -> Weights:
        s = config.selection
        return cls(s.weight_coverage, s.weight_day, s.weight_source, s.weight_newest)


@dataclass
class Tally:
    """Posts picked so far, by day and by outlet."""

    days: Counter[date]
    sources: Counter[str]

    def add(self, post: Post) -> None:
        self.days[post.date.date()] += 1
        self.sources[source_name(post)] += 1


def score(
    post: Post, weights: Weights, start: datetime, covered: int, tally: Tally
) -> tuple[float, str]:
    """A post's score and the sum that makes it, for ``select --explain``."""
    days = max((post.date - start).total_seconds() / 86400, 0.0)
    same_day = tally.days[post.date.date()]
    same_source = tally.sources[source_name(post)] if source_name(post) else 0
    parts = [
        (weights.coverage * covered, "coverage"),
        (weights.newest * days, "newest"),
        (-weights.day * same_day, "same day"),
        (-weights.source * same_source, "same outlet"),
    ]
    total = sum(value for value, _ in parts)
    shown = " ".join(f"{'+' if v >= 0 else '−'} {abs(v):.2f} {name}" for v, name in parts if v)
    return total, f"score {total:.2f}" + (f" ({shown.removeprefix('+ ')})" if shown else "")


def balanced(
    members: Sequence[Post],
    limit: int | None,
    weights: Weights,
    start: datetime,
    coverage: Mapping[str, int],
    demoted: Mapping[str, str],
    tally: Tally,
    tie: Callable[[Post], tuple[Any, ...]],
    traits: Callable[[Post], tuple[Any, ...]],
) -> tuple[list[Post], dict[str, str]]:
    """``members`` in pick order, and the score each had when it was picked: ``traits``
    (the rank order's featured, source, cover and excerpt) count first, then the score,
    then ``tie`` (the whole rank order)."""
    left = sorted(members, key=tie)
    order: list[Post] = []
    said: dict[str, str] = {}
    while left:
        best_key: tuple[Any, ...] | None = None
        best: tuple[int, Post, str] | None = None
        for place, post in enumerate(left):
            value, text = score(post, weights, start, coverage.get(post.slug, 0), tally)
            key = (*traits(post), post.slug in demoted, -round(value, 6), place)
            if best_key is None or key < best_key:
                best_key, best = key, (place, post, text)
        assert best is not None
        place, post, text = best
        del left[place]
        order.append(post)
        said[post.slug] = text
        if limit is None or len(order) <= limit:
            tally.add(post)
    return order, said


def lead_of(
    sections: Sequence[Sequence[Post]], coverage: Mapping[str, Sequence[Post]], featured: bool
) -> tuple[int, int] | None:
    """Where the lead is (section, place): the post told by the most outlets, each
    section's order breaking ties; None when no story was told twice (the order as
    configured). With ``featured`` (the rank order puts featured posts first), a section
    that holds a featured post keeps it first, so the lead is then that post."""
    best: tuple[int, int, int] | None = None
    for number, posts in enumerate(sections):
        for place, post in enumerate(posts):
            told = len(coverage.get(post.slug, ()))
            if told and (best is None or (-told, place, number) < best):
                best = (-told, place, number)
    if best is None:
        return None
    _, place, number = best
    if featured and sections[number] and sections[number][0].featured:
        place = 0
    return number, place
