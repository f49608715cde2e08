"""The stages wired together: load posts, then select an issue from them.

Commands call these; each takes the config and the clock, and returns plain results.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from digest.config import Config
from digest.content.cache import PostCache
from digest.content.frontmatter import YamlLimits
from digest.content.memory import earlier_issues
from digest.content.posts import ExcerptReport, LoadResult, Post, excerpt_report, load_posts
from digest.content.select import (
    NEAR_WINDOW,
    Rules,
    Selection,
    Window,
    resolve_window,
    select_posts,
)
from digest.content.text import ExcerptCleaner


@dataclass(frozen=True)
class Loaded:
    posts: LoadResult
    selection: Selection


def load(config: Config, *, use_cache: bool = True, around: Window | None = None) -> LoadResult:
    """Every post, or with ``around`` only those within a day of that window."""
    cache = PostCache(config.path(config.content.cache_dir)) if use_cache else None
    between = (around.start - NEAR_WINDOW, around.end + NEAR_WINDOW) if around else None
    try:
        return load_posts(
            config.path(config.content.posts_dir),
            config.tz,
            cache=cache,
            max_size=config.content.max_file_size,
            between=between,
            cleaner=ExcerptCleaner(config.content.excerpt_patterns),
            limits=YamlLimits.from_config(config.content),
        )
    finally:
        if cache is not None:
            cache.close()


def load_and_select(
    config: Config,
    now: datetime,
    *,
    week: str | None = None,
    since: date | None = None,
    until: date | None = None,
    use_cache: bool = True,
) -> Loaded:
    """Load every post and select the issue for the requested window."""
    chosen = resolve_window(config, now, week=week, since=since, until=until)
    result = load(config, use_cache=use_cache, around=chosen)
    earlier = earlier_issues(
        config.path(config.out_dir), chosen.start, config.dedupe.earlier_issues
    )
    selection = select_posts(result.posts, chosen, Rules.from_config(config), now, earlier)
    return Loaded(result, selection)


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
        if around is None or post.date in around
    ]
