"""The stages wired together: load posts, then select an issue from them.

Commands call these; each takes the config and the clock, and returns plain results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

from digest.config import Config, SourceConfig
from digest.content.carry import carried_from
from digest.content.frontmatter import YamlLimits
from digest.content.interest import OFF, Interest, reader_interest
from digest.content.memory import earlier_issues
from digest.content.posts import ExcerptReport, LoadResult, Post, Progress, excerpt_report
from digest.content.select import (
    NEAR_WINDOW,
    Rules,
    Selection,
    Window,
    resolve_window,
    select_posts,
)
from digest.content.sources.load import SourcesResult, load_sources
from digest.content.sources.state import SourceStates
from digest.content.text import ExcerptCleaner
from digest.content.window import is_day

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Loaded:
    posts: LoadResult
    selection: Selection
    interest: Interest = OFF  # what reader interest knew (select --explain says it)


def load(
    config: Config,
    *,
    use_cache: bool = True,
    around: Window | None = None,
    now: datetime | None = None,
    client: httpx.Client | None = None,
    progress: Progress | None = None,
    finish: bool = True,
) -> SourcesResult:
    """Every post from every source, or with ``around`` only those within a day of that
    window. ``now`` stamps the sources' health records and dates undated feed entries;
    ``client`` fetches feeds (one is made when None). Without ``use_cache`` every file is
    read and every feed fetched and parsed afresh (health is still recorded). ``progress``
    is told how far reading the Markdown folders is. Without ``finish`` no post's body is
    read for its excerpt or sketch (what ``digest check`` needs: counts, categories,
    problems), so a cold check over a large folder only parses front matter."""
    between = (around.start - NEAR_WINDOW, around.end + NEAR_WINDOW) if around else None
    rules = Rules.from_config(config)

    def category_of(categories: list[str]) -> str | None:
        # The first category that is a section (through its aliases), else the first.
        known = next((c for c in categories if rules.section_of(c)), None)
        return known or (categories[0] if categories else None)

    return _load(
        config, config.source_list, use_cache, between, now, client, category_of, progress, finish
    )


def _load(
    config: Config,
    sources: list[SourceConfig],
    use_cache: bool,
    between: tuple[datetime, datetime] | None,
    now: datetime | None,
    client: httpx.Client | None,
    category_of: Callable[[list[str]], str | None],
    progress: Progress | None = None,
    finish: bool = True,
) -> SourcesResult:
    return load_sources(
        sources,
        tz=config.tz,
        root=config.root,
        now=now or datetime.now(timezone.utc),
        states=SourceStates(
            config.path(config.content.feeds_dir), config.root, fresh=not use_cache
        ),
        cache_dir=config.path(config.content.cache_dir) if use_cache else None,
        max_size=config.content.max_file_size,
        between=between,
        client=client,
        category_of=category_of,
        primary_folder=config.path(config.content.posts_dir),
        cleaner=ExcerptCleaner(config.content.excerpt_patterns),
        limits=YamlLimits.from_config(config.content),
        progress=progress,
        finish=finish,
    )


def load_every_source(
    config: Config,
    *,
    now: datetime | None = None,
    client: httpx.Client | None = None,
    progress: Progress | None = None,
    finish: bool = True,
) -> SourcesResult:
    """Every source of every newsletter, each read once (what `digest check` reports)."""
    seen: dict[str, SourceConfig] = {}
    for name in config.newsletter_names:
        for source in config.for_newsletter(name).source_list:
            seen.setdefault(source.location(config.root), source)

    def first(categories: list[str]) -> str | None:
        return categories[0] if categories else None

    return _load(config, list(seen.values()), True, None, now, client, first, progress, finish)


def load_and_select(
    config: Config,
    now: datetime,
    *,
    week: str | None = None,
    since: date | None = None,
    until: date | None = None,
    use_cache: bool = True,
    client: httpx.Client | None = None,
) -> Loaded:
    """Load every post and select the issue for the requested window."""
    chosen = resolve_window(config, now, week=week, since=since, until=until)
    out = config.path(config.out_dir)
    # limits.carry_over: the candidates start where the last sent issue ended
    carried = carried_from(out, chosen, config.issue_prefix) if config.limits.carry_over else None
    around = replace(chosen, start=carried) if carried else chosen
    result = load(config, use_cache=use_cache, around=around, now=now, client=client)
    earlier = earlier_issues(
        out, chosen.start, config.dedupe.earlier_issues, daily=is_day(chosen), sent_from=carried
    )
    interest = reader_interest(config, chosen.start)
    rules = replace(Rules.from_config(config), interest=interest)
    selection = select_posts(result.posts, chosen, rules, now, earlier, carried_from=carried)
    return Loaded(result, selection, interest)


def unlisted_categories(config: Config, posts: Iterable[Post]) -> list[str]:
    """Categories of ``posts`` that no configured section takes (empty: no sections set)."""
    if not config.categories.sections:
        return []
    rules = Rules.from_config(config)
    return sorted({p.category or "(none)" for p in posts if rules.section_of(p.category) is None})


def excerpt_reports(
    config: Config,
    now: datetime,
    *,
    week: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> list[ExcerptReport]:
    """How each post's excerpt was cleaned: those of the window asked for, or every post."""
    around = (
        resolve_window(config, now, week=week, since=since, until=until)
        if week or since or until
        else None
    )
    result = load(config, around=around)
    cleaner = ExcerptCleaner(config.content.excerpt_patterns)
    return [
        excerpt_report(post.path, config.content.max_file_size, cleaner)
        for post in result.posts
        if (around is None or post.date in around) and "feed" not in post.extra  # a file
    ]
