"""The stages wired together: load posts, then select an issue from them.

Commands call these; each takes the config and the clock, and returns plain results.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from digest.config import Config
from digest.content.cache import PostCache
from digest.content.posts import LoadResult, Post, load_posts
from digest.content.select import (
    NEAR_WINDOW,
    Rules,
    Selection,
    Window,
    resolve_window,
    select_posts,
)


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
    selection = select_posts(result.posts, chosen, Rules.from_config(config), now)
    return Loaded(result, selection)


def unlisted_categories(config: Config, posts: Iterable[Post]) -> list[str]:
    """Categories of ``posts`` that no configured section takes (empty: no sections set)."""
    if not config.categories.sections:
        return []
    rules = Rules.from_config(config)
    return sorted({p.category or "(none)" for p in posts if rules.section_of(p.category) is None})
