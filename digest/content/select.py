"""Which posts make an issue, and why each post is in or out.

Pure functions: the clock comes in as ``now``, the posts as a list, the rules from config.

An issue covers a :class:`Window` of time in the site's timezone: an ISO week (shifted to the
configured first day of the week), or any ``since``/``until`` range. Inside the window the
rules run in this order, and the first rule that excludes a post gives its reason:

1. drafts, then posts dated after ``now`` (future),
2. categories: excluded, not included, or not a section (when ``unlisted: skip``),
3. tag filters,
4. earlier issues: a post whose title, source or near-identical body was in one of the
   earlier issues (``earlier``) is out, "already in 2026-W25",
5. de-duplication: a post sharing a source URL (a feed entry's link), a feed entry's guid
   or a normalised title with one already taken is a duplicate of that one, and one whose
   body is at least ``near_duplicates`` similar is a near-duplicate of it (the featured or
   earlier post is kept),
6. the editor's pass (:mod:`digest.content.editorial`): filler, stories an earlier issue
   sent, and posts of one story merged into one card ("also covered by"),
7. limits: per section first (in the configured rank order: by default featured posts,
   then posts with a source, then newest first; with ``selection:`` weights, the balanced
   order of :mod:`digest.content.balance`), then the total, filled round-robin across
   sections so no section is starved (with ``selection.reader_interest``, the room left
   after each section's best post leans to the sections readers click more: see
   :mod:`digest.content.interest`). The lead is the biggest story (the most outlets,
   then its place; a featured post keeps the top of its section); its section comes first.

Posts dated within a day outside the window are listed too, as "out of window", because
those are the ones a person asks about (timezones, midnight).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from digest.config import Config
from digest.content.balance import Tally, Weights, balanced
from digest.content.carry import note_carried
from digest.content.decisions import Decision as Decision
from digest.content.decisions import Reason as Reason
from digest.content.decisions import Section as Section
from digest.content.decisions import Selection as Selection
from digest.content.decisions import _fold
from digest.content.decisions import slugify as slugify
from digest.content.editorial import Edited, EditorRules, edit
from digest.content.interest import OFF, Interest, fill_total
from digest.content.layout import fold_thin, lead_first
from digest.content.memory import Remembered, normalise_source
from digest.content.posts import Post
from digest.content.stories import Earlier, source_name
from digest.content.text import normalise_title, similarity
from digest.content.window import (
    Window as Window,
)
from digest.content.window import (
    WindowError as WindowError,
)
from digest.content.window import (
    day_window as day_window,
)
from digest.content.window import (
    last_complete_day as last_complete_day,
)
from digest.content.window import (
    last_complete_week as last_complete_week,
)
from digest.content.window import (
    range_window as range_window,
)
from digest.content.window import (
    resolve_window as resolve_window,
)
from digest.content.window import (
    week_window as week_window,
)
from digest.content.window import (
    window_for_week_containing as window_for_week_containing,
)

NEAR_WINDOW = timedelta(days=1)


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class SectionRule:
    name: str
    title: str
    limit: int | None


@dataclass(frozen=True)
class Rules:
    """What selection needs from config, as plain data."""

    sections: tuple[SectionRule, ...] = ()
    lookup: dict[str, str] = field(default_factory=dict)  # casefolded spelling -> name
    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    unlisted: str = "other"
    other_title: str = "More"
    tags_include: frozenset[str] = frozenset()
    tags_exclude: frozenset[str] = frozenset()
    per_category: int | None = 5
    total: int | None = 40
    dedupe_source: bool = True
    dedupe_title: bool = True
    near_duplicates: float | None = 0.8
    rank: tuple[str, ...] = ("featured", "source", "newest")
    min_per_section: int = 1
    also_title: str = "Also this week"
    editor: EditorRules | None = None  # None: no editor's pass (filler, stories)
    weights: Weights | None = None  # None: the rank order alone
    interest: Interest = OFF  # reader interest (content/interest.py), set by the pipeline

    @classmethod
    def from_config(cls, config: Config) -> Rules:
        cats = config.categories
        lookup: dict[str, str] = {}
        for section in cats.sections:
            for spelling in (section.name, *section.aliases):
                lookup[_fold(spelling)] = section.name

        def canonical(names: Iterable[str]) -> frozenset[str]:
            return frozenset(lookup.get(_fold(n), n) for n in names)

        return cls(
            sections=tuple(SectionRule(s.name, s.title, s.limit) for s in cats.sections),
            lookup=lookup,
            include=canonical(cats.include),
            exclude=canonical(cats.exclude),
            unlisted=cats.unlisted,
            other_title=cats.other_title,
            tags_include=frozenset(_fold(t) for t in config.filters.tags_include),
            tags_exclude=frozenset(_fold(t) for t in config.filters.tags_exclude),
            per_category=config.limits.per_category,
            total=config.limits.total,
            dedupe_source=config.dedupe.by_source,
            dedupe_title=config.dedupe.by_title,
            near_duplicates=config.dedupe.near_duplicates,
            rank=tuple(config.limits.rank),
            min_per_section=config.limits.min_per_section,
            also_title=config.limits.also_title,
            editor=EditorRules.from_config(config),
            weights=Weights.from_config(config),
        )

    def section_of(self, category: str | None) -> str | None:
        """The section name for a post's category; None when it has no section."""
        if not category:
            return None
        if not self.sections:
            return _display_case(category)
        return self.lookup.get(_fold(category))


def _display_case(category: str) -> str:
    """A category written in any case, in one stable spelling ("work" -> "Work")."""
    text = re.sub(r"\s+", " ", category).strip()
    return text if not (text.islower() or text.isupper()) else text.title()


def rank_key(rank: Sequence[str], *, slug: bool = True) -> Callable[[Post], tuple[Any, ...]]:
    """The sort key of a section's posts for a rank order such as (featured, source,
    newest); the slug breaks ties so the order is stable."""

    def key(post: Post) -> tuple[Any, ...]:
        parts: list[Any] = []
        for name in rank:
            if name == "featured":
                parts.append(not post.featured)
            elif name == "source":
                parts.append(not post.source)
            elif name == "cover":
                parts.append(not post.cover_image)
            elif name == "excerpt":
                parts.append(not post.excerpt)
            elif name == "newest":
                parts.append(-post.date.timestamp())
            elif name == "oldest":
                parts.append(post.date.timestamp())
        if slug:
            parts.append(post.slug)
        return tuple(parts)

    return key


def trait_key(rank: Sequence[str]) -> Callable[[Post], tuple[Any, ...]]:
    """The part of a rank order that is about what a post has, not its date."""
    return rank_key([name for name in rank if name not in ("newest", "oldest")], slug=False)


def _rank_traits(post: Post, rank: Sequence[str]) -> str:
    traits = {
        "featured": post.featured,
        "source": bool(post.source),
        "cover": bool(post.cover_image),
        "excerpt": bool(post.excerpt),
    }
    shown = [name for name in rank if traits.get(name)]
    return ", ".join(shown)


def select_posts(
    posts: Sequence[Post],
    window: Window,
    rules: Rules,
    now: datetime,
    earlier: Sequence[Remembered] = (),
    *,
    carried_from: datetime | None = None,
) -> Selection:
    """Decide, for every post in (or just around) the window, whether it is in the issue.

    ``earlier`` holds the posts of earlier issues (:mod:`digest.content.memory`); a post
    that was in one of them is left out. ``carried_from`` (``limits.carry_over``, before
    the window's start) makes the posts from then on candidates too, each saying so.
    """
    decisions: list[Decision] = []
    candidates = _candidates(posts, window, rules, now, decisions, carried_from)
    kept, duplicates = _dedupe(candidates, rules, earlier)
    decisions.extend(duplicates)
    edited = _editors_pass(kept, posts, rules, earlier, decisions)

    by_section: dict[str, list[Post]] = {}
    for post, section in edited.kept:
        by_section.setdefault(section, []).append(post)

    order = _section_order(by_section, rules)
    limits = {rule.name: rule.limit for rule in rules.sections}
    titles = {rule.name: rule.title for rule in rules.sections}
    ranks = _order_sections(by_section, order, limits, rules, window, edited)
    rules.interest.explain(by_section, edited.notes)

    # Per-section limits.
    taken: dict[str, list[Post]] = {}
    for name in order:
        limit = limits.get(name)
        if limit is None:
            limit = rules.per_category
        members = by_section[name]
        taken[name] = members if limit is None else members[:limit]
        over = (Reason.OVER_SECTION_LIMIT, f"over the {titles.get(name, name)} limit ({limit}): ")
        decisions += _left_out(members[len(taken[name]) :], name, over, ranks, rules, edited)

    # The total limit, filled round-robin: every section's best post before any second one.
    if rules.total is not None and sum(len(v) for v in taken.values()) > rules.total:
        final = fill_total(taken, order, rules.total, rules.interest)
        for name in order:
            over = (Reason.OVER_TOTAL_LIMIT, f"over the total limit ({rules.total}): ")
            decisions += _left_out(
                taken[name][len(final[name]) :], name, over, ranks, rules, edited
            )
        taken = final

    sections = [
        Section(
            name=name,
            title=titles.get(name, name),
            posts=tuple(taken[name]),
            more=len(by_section[name]) - len(taken[name]),
        )
        for name in order
        if taken[name]
    ]
    decisions += [
        Decision(
            post,
            Reason.SELECTED,
            section.name,
            "selected: " + _ranked(post, ranks, rules.rank, edited),
            rank=ranks[post.slug],
        )
        for section in sections
        for post in section.posts
    ]
    decisions.sort(key=lambda d: (d.post.date, d.post.slug))
    coverage = dict(edited.coverage)
    folded = fold_thin(sections, rules.min_per_section, rules.also_title)
    ordered = lead_first(folded, coverage, "featured" in rules.rank)
    if carried_from is not None:
        decisions = note_carried(decisions, window, carried_from)
    return Selection(window, ordered, tuple(decisions), coverage, carried_from)


def _editors_pass(
    kept: list[tuple[Post, str]],
    posts: Sequence[Post],
    rules: Rules,
    earlier: Sequence[Remembered],
    decisions: list[Decision],
) -> Edited:
    """The editor's pass (filler, stories) over the kept posts, when configured; a decision
    for each post it leaves out goes to ``decisions``."""
    if rules.editor is None:
        return Edited(kept, [], {}, {}, {})
    edited = edit(kept, posts, rules.editor, _earlier_stories(earlier))
    for left in edited.left:
        reason = Reason(left.kind)  # the pass's kinds are reasons' codes
        decisions.append(Decision(left.post, reason, left.section, left.detail, left.original))
    return edited


def _candidates(
    posts: Sequence[Post],
    window: Window,
    rules: Rules,
    now: datetime,
    decisions: list[Decision],
    carried_from: datetime | None = None,
) -> list[tuple[Post, str]]:
    """The posts in the window (from ``carried_from`` when set) that no rule leaves out, each
    with its section; a decision for each one left out (and for posts just outside the
    window) goes to ``decisions``."""
    candidates: list[tuple[Post, str]] = []
    scope = replace(window, start=carried_from) if carried_from else window
    near = Window(scope.start - NEAR_WINDOW, window.end + NEAR_WINDOW, window.issue_id)
    for post in sorted(posts, key=lambda p: (p.date, p.slug)):
        if post.date not in scope:
            if post.date in near:
                side = "before" if post.date < scope.start else "after"
                edge = scope.start if side == "before" else window.end
                detail = (
                    f"out of window: {post.date.isoformat(timespec='minutes')} is {side} "
                    f"{edge.isoformat(timespec='minutes')}"
                )
                decisions.append(Decision(post, Reason.OUT_OF_WINDOW, detail=detail))
            continue
        section = rules.section_of(post.category)
        reason, detail = _first_exclusion(post, section, rules, now)
        if reason is not None:
            decisions.append(Decision(post, reason, section, detail))
            continue
        if section is None:
            section = rules.other_title
        candidates.append((post, section))
    return candidates


def _section_order(by_section: dict[str, list[Post]], rules: Rules) -> list[str]:
    """The configured sections first, in their order; then the others by name; the
    catch-all section last."""
    order = [rule.name for rule in rules.sections if rule.name in by_section]
    order += sorted(name for name in by_section if name not in order and name != rules.other_title)
    if rules.other_title in by_section:
        order.append(rules.other_title)
    return order


def _left_out(
    left: list[Post],
    name: str,
    why: tuple[Reason, str],
    ranks: dict[str, int],
    rules: Rules,
    edited: Edited,
) -> list[Decision]:
    """A decision for each post of section ``name`` over a limit: the reason, and the text
    saying which limit before the post's rank."""
    reason, text = why
    return [
        Decision(
            post,
            reason,
            name,
            text + _ranked(post, ranks, rules.rank, edited),
            rank=ranks[post.slug],
        )
        for post in left
    ]


def _earlier_stories(earlier: Sequence[Remembered]) -> list[Earlier]:
    return [Earlier(r.issue_id, r.slug, frozenset(r.story)) for r in earlier if r.story]


def _order_sections(
    by_section: dict[str, list[Post]],
    order: list[str],
    limits: dict[str, int | None],
    rules: Rules,
    window: Window,
    edited: Edited,
) -> dict[str, int]:
    """Sort each section's posts in place into pick order; each post's place, from 1."""
    order_key = rank_key(rules.rank)
    ranks: dict[str, int] = {}
    tally = Tally(Counter(), Counter())
    covered = {slug: len(also) for slug, also in edited.coverage.items()}
    for name in order:
        members = by_section[name]
        if rules.weights is None:
            members.sort(key=order_key)
        else:
            limit = limits.get(name)
            limit = rules.per_category if limit is None else limit
            picked, said = balanced(
                members, limit, rules.weights, window.start, covered, edited.demoted, tally,
                order_key, trait_key(rules.rank),
            )  # fmt: skip
            members[:] = picked
            edited.notes.update(
                {slug: f"{text}; {edited.notes[slug]}" if slug in edited.notes else text
                 for slug, text in said.items()}
            )  # fmt: skip
        for place, post in enumerate(members, 1):
            ranks[post.slug] = place
    return ranks


def _first_exclusion(
    post: Post, section: str | None, rules: Rules, now: datetime
) -> tuple[Reason | None, str]:
    if post.draft:
        return Reason.DRAFT, "draft: true"
    if post.date > now:
        return Reason.FUTURE, f"future: dated {post.date.isoformat(timespec='minutes')}"
    category = post.category or "(none)"
    if section is None and rules.unlisted == "skip":
        return Reason.CATEGORY_UNLISTED, f"category '{category}' is not a section"
    effective = section or rules.other_title
    if effective in rules.exclude:
        return Reason.CATEGORY_EXCLUDED, f"category '{effective}' is excluded"
    if rules.include and effective not in rules.include:
        return Reason.CATEGORY_NOT_INCLUDED, f"category '{effective}' is not included"
    tags = {_fold(t) for t in post.tags}
    if rules.tags_exclude & tags:
        hit = sorted(rules.tags_exclude & tags)[0]
        return Reason.TAG_FILTERED, f"tag '{hit}' is excluded"
    if rules.tags_include and not rules.tags_include & tags:
        return Reason.TAG_FILTERED, "has none of the included tags"
    return None, ""


def _ranked(
    post: Post, ranks: dict[str, int], rank: Sequence[str], edited: Edited | None = None
) -> str:
    traits = _rank_traits(post, rank)
    text = f"rank {ranks[post.slug]}" + (f" ({traits})" if traits else "")
    if edited is None:
        return text
    extra = [edited.notes.get(post.slug, ""), edited.demoted.get(post.slug, "")]
    also = edited.coverage.get(post.slug, ())
    if also:
        names = ", ".join(source_name(p) or p.slug for p in also)
        extra.append(f"also covered by {names}")
    return "; ".join([text, *(e for e in extra if e)])


def _in_earlier(
    post: Post,
    earlier: Sequence[tuple[Remembered, frozenset[int]]],
    rules: Rules,
) -> tuple[Remembered, str] | None:
    title = normalise_title(post.title)
    source = normalise_source(post.source) if post.source else None
    best: tuple[Remembered, str] | None = None
    best_score = 0.0
    mine = frozenset(post.sketch)
    for old, old_sketch in earlier:
        if rules.dedupe_title and old.title_key == title:
            return old, "same title"
        if rules.dedupe_source and source is not None and old.source_key == source:
            return old, "same source"
        if rules.near_duplicates is not None and mine and old_sketch:
            score = similarity(mine, old_sketch, at_least=rules.near_duplicates)
            if score >= rules.near_duplicates and score > best_score:
                best, best_score = (old, f"near-duplicate of {old.slug} ({score:.2f})"), score
    return best


def _dedupe(
    candidates: list[tuple[Post, str]], rules: Rules, earlier: Sequence[Remembered] = ()
) -> tuple[list[tuple[Post, str]], list[Decision]]:
    # The featured post wins, then the earliest (the original).
    ranked = sorted(candidates, key=lambda c: (not c[0].featured, c[0].date, c[0].slug))
    owners: dict[str, Post] = {}
    kept: list[tuple[Post, str]] = []
    sketched: list[tuple[Post, frozenset[int]]] = []  # kept posts with a body sketch
    remembered = [(old, frozenset(old.sketch)) for old in earlier]
    duplicates: list[Decision] = []
    for post, section in ranked:
        seen = _in_earlier(post, remembered, rules) if earlier else None
        if seen is not None:
            old, why = seen
            detail = f"already in {old.issue_id} ({why})"
            duplicates.append(Decision(post, Reason.EARLIER_ISSUE, section, detail))
            continue
        keys: list[tuple[str, str]] = []
        if rules.dedupe_source and post.source:
            keys.append(("source", "s:" + normalise_source(post.source)))
        if rules.dedupe_source and post.extra.get("guid"):
            keys.append(("guid", "g:" + str(post.extra["guid"]).strip()))
        if rules.dedupe_title:
            keys.append(("title", "t:" + normalise_title(post.title)))
        owner = next(((kind, owners[key]) for kind, key in keys if key in owners), None)
        if owner is not None:
            kind, original = owner
            detail = f"duplicate of {original.slug} (same {kind})"
            duplicates.append(Decision(post, Reason.DUPLICATE, section, detail, original))
            for _, key in keys:  # a third copy matching only this one is the same post too
                owners.setdefault(key, original)
            continue
        if rules.near_duplicates is not None and post.sketch:
            mine = frozenset(post.sketch)
            threshold = rules.near_duplicates
            scored = [
                (similarity(mine, theirs, at_least=threshold), other) for other, theirs in sketched
            ]
            score, original_post = max(scored, key=lambda s: s[0], default=(0.0, post))
            if score >= threshold:
                detail = f"near-duplicate of {original_post.slug} ({score:.2f})"
                duplicates.append(
                    Decision(post, Reason.NEAR_DUPLICATE, section, detail, original_post)
                )
                continue
            sketched.append((post, mine))
        for _, key in keys:
            owners[key] = post
        kept.append((post, section))
    return kept, duplicates
