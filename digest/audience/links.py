"""Addresses of posts and sections on the site, built from the config's URL patterns."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from digest.config import Config
from digest.content.posts import Post
from digest.content.select import slugify
from digest.errors import ConfigError


def _fill(pattern: str, key: str, values: dict[str, str]) -> str:
    try:
        return pattern.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{key}: the pattern {pattern!r} uses {exc}, which is not one of "
            f"{{{'}, {'.join(sorted(values))}}}"
        ) from None


def post_url(config: Config, post: Post) -> str:
    if post.url:
        return post.url  # a feed entry links to where it was published
    values = {
        "base_url": config.site.base_url,
        "slug": post.slug,
        "category_slug": slugify(post.category or "posts"),
        "year": f"{post.date.year:04d}",
        "month": f"{post.date.month:02d}",
        "day": f"{post.date.day:02d}",
    }
    return _fill(config.site.post_url, "site.post_url", values)


def category_url(config: Config, name: str) -> str:
    values = {"base_url": config.site.base_url, "category_slug": slugify(name), "name": name}
    return _fill(config.site.category_url, "site.category_url", values)


def with_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` added to its query (existing keys are kept as they are)."""
    if not params:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {k for k, _ in query}
    query += [(k, v) for k, v in params.items() if k not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))
