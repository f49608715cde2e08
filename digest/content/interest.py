"""Reader interest: which sections readers follow, learned from the click store.

With ``selection.reader_interest: true`` the selection looks at the kept clicks (never the
filtered ones, never a reader) of the ``selection.interest_issues`` latest issues in
``out_dir`` whose window starts before this one. Each section's *lift* is its share of
those clicks over its share of those issues' post links: 1 is an average section, 2 one
that readers follow twice as often as its room in the issues would suggest. A section is
not rewarded for holding more posts, only for being read more.

The lift nudges one decision: when ``limits.total`` cuts the issue, every section still
gets its best post first (round-robin, as without the trait), and the rest of the room
goes to the lowest ``depth − weight_interest × (lift − 1)``, where ``depth`` is how many
posts of that section are already in. With the weight 0, no click store, or fewer issues
than asked, that is exactly the round-robin order. The lift is capped at
:data:`MAX_LIFT`, so one issue's spike cannot fill an issue with one section.

Counts are read from the click store's ``click_counts`` table (kept per issue and post,
every variant), read-only: a site that never counted clicks has no store and no data.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.config import Config, DatabaseURL
from digest.content.files import read_inside
from digest.content.memory import MANIFEST
from digest.content.posts import Post
from digest.errors import ContentError
from digest.store.database import Target, locate

log = logging.getLogger(__name__)

MAX_LIFT = 3.0
_KEPT = (
    "SELECT issue_id, post, SUM(kept) FROM click_counts WHERE issue_id IN ({marks}) "
    "GROUP BY issue_id, post"
)


@dataclass(frozen=True)
class SectionShare:
    """One section over the issues read: its kept clicks and its post links."""

    clicks: int
    links: int


@dataclass(frozen=True)
class Interest:
    """What the trait knows: ``active`` only with data; ``summary`` says why not."""

    active: bool
    summary: str
    weight: float = 0.0
    issues: tuple[str, ...] = ()
    sections: Mapping[str, SectionShare] = field(default_factory=dict)

    @property
    def clicks(self) -> int:
        return sum(s.clicks for s in self.sections.values())

    @property
    def links(self) -> int:
        return sum(s.links for s in self.sections.values())

    def lift(self, section: str) -> float | None:
        """Click share over link share (None: the section was in none of the issues)."""
        share = self.sections.get(section)
        if not self.active or share is None or not share.links or not self.clicks:
            return None
        return min((share.clicks / self.clicks) / (share.links / self.links), MAX_LIFT)

    def bonus(self, section: str) -> float:
        """How many places of depth the section gains (negative: loses) in the fill."""
        lift = self.lift(section)
        return 0.0 if lift is None else self.weight * (lift - 1.0)

    def note(self, section: str) -> str:
        """The trait's part in one post's explanation."""
        if not self.active:
            return ""
        lift, share = self.lift(section), self.sections.get(section)
        if lift is None or share is None:
            return f"reader interest 0.00 ({section}: in none of the last {len(self.issues)})"
        value = self.bonus(section)
        sign = "+" if value >= 0 else "−"
        return (
            f"reader interest {sign}{abs(value):.2f} ({section}: {share.clicks / self.clicks:.0%} "
            f"of {self.clicks} kept clicks for {share.links / self.links:.0%} of the links, "
            f"last {len(self.issues)} issues)"
        )

    def explain(self, sections: Mapping[str, Sequence[Post]], notes: dict[str, str]) -> None:
        """Add the trait's part to each post's note (``select --explain``)."""
        if not self.active:
            return
        for name, posts in sections.items():
            for post in posts:
                said = (notes.get(post.slug), self.note(name))
                notes[post.slug] = "; ".join(n for n in said if n)


OFF = Interest(False, "reader interest: off (selection.reader_interest)")


def reader_interest(config: Config, before: datetime) -> Interest:
    """The trait for an issue whose window starts at ``before``."""
    rules = config.selection
    if not rules.reader_interest:
        return OFF
    wanted = rules.interest_issues
    issues = latest_issues(config.path(config.out_dir), before, wanted)
    if len(issues) < wanted:
        return _no_data(f"{len(issues)} of the {wanted} issues it needs are in out_dir")
    target = locate(config, config.analytics.database)
    kept = kept_clicks(target, [issue_id for issue_id, _ in issues])
    if kept is None:
        return _no_data(f"no click store at {target}")
    sections: dict[str, list[int]] = {}
    for issue_id, links in issues:
        for place, section in enumerate(links):
            counts = sections.setdefault(section, [0, 0])
            counts[0] += kept.get((issue_id, place), 0)
            counts[1] += 1
    shares = {name: SectionShare(c, n) for name, (c, n) in sections.items()}
    if not sum(s.clicks for s in shares.values()):
        return _no_data(f"no kept clicks in the last {wanted} issues")
    found = Interest(True, "", rules.weight_interest, tuple(i for i, _ in issues), shares)
    lifts = ", ".join(
        f"{name} ×{found.lift(name):.2f}" for name in sorted(shares) if shares[name].links
    )
    summary = (
        f"reader interest: weight {found.weight}, {found.clicks} kept clicks over the last "
        f"{wanted} issues ({', '.join(found.issues)}); lift {lifts}"
    )
    return Interest(True, summary, found.weight, found.issues, shares)


def _no_data(why: str) -> Interest:
    return Interest(False, f"reader interest: on, no data ({why}); the rank order alone")


def latest_issues(out_dir: Path, before: datetime, limit: int) -> list[tuple[str, list[str]]]:
    """The ``limit`` latest issues in ``out_dir`` whose window starts before ``before``,
    newest first: each issue's id and the section of each post link (the click tokens'
    order, :func:`digest.email.clicklinks.manifest_links`)."""
    if not out_dir.is_dir():
        return []
    found: list[tuple[datetime, str, list[str]]] = []
    for path in out_dir.glob(f"*/{MANIFEST}"):
        try:
            data: Any = json.loads(read_inside(path.parent, path, max_bytes=50_000_000))
            start = datetime.fromisoformat(data["window"]["start"])
            links = [str(section["name"]) for section in data["sections"] for _ in section["posts"]]
            issue_id = str(data["issue_id"])
        except (OSError, ValueError, KeyError, TypeError, ContentError) as exc:
            log.warning("%s: not read for reader interest (%s)", path, exc)
            continue
        if start < before:
            found.append((start, issue_id, links))
    found.sort(reverse=True)
    return [(issue_id, links) for _, issue_id, links in found[:limit]]


def kept_clicks(target: Target, issue_ids: Sequence[str]) -> dict[tuple[str, int], int] | None:
    """Kept clicks per (issue, post place) over every variant; None when there is no click
    store (no file, or no table in the database). Read-only: nothing is created."""
    query = _KEPT.format(marks=",".join("?" * len(issue_ids)))
    try:
        if isinstance(target, DatabaseURL):
            from digest.store.postgres import connect  # psycopg only when PostgreSQL is used

            db: Any = connect(target, store="clicks", what="the click store")
        else:
            if not target.is_file():
                return None
            db = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute(query, list(issue_ids)).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:  # the store layer's DatabaseError is one too
        log.warning("%s: click counts not read for reader interest (%s)", target, exc)
        return None
    return {(str(issue), int(post)): int(kept) for issue, post, kept in rows}


def fill_total(
    taken: Mapping[str, Sequence[Post]], order: Sequence[str], total: int, interest: Interest
) -> dict[str, list[Post]]:
    """The ``total`` posts kept of each section's ``taken`` posts: every section's best
    first, in ``order``; then by depth less the section's interest bonus, ``order``
    breaking ties (the plain round-robin when no section has a bonus)."""
    places: list[tuple[bool, float, int, int]] = []
    for number, name in enumerate(order):
        bonus = interest.bonus(name)
        for depth in range(len(taken[name])):
            places.append((depth > 0, round(depth - bonus, 9) if depth else 0.0, number, depth))
    places.sort()
    count = [0] * len(order)
    for _, _, number, _ in places[:total]:
        count[number] += 1
    return {name: list(taken[name][: count[number]]) for number, name in enumerate(order)}
