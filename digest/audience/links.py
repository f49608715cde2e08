"""Every public address digest writes: posts and sections on the site, and the pages of
``digest serve`` (archive, confirm, unsubscribe, preferences).

The routes below are the one definition of those paths: ``digest serve`` mounts them, and
compose, send and serve build links to them through the functions here.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from digest.audience.tokens import PURPOSES
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


# --------------------------------------------------------------------------- digest serve

ARCHIVE_PATH = "/archive"
TOKEN_PURPOSES = PURPOSES
"""Each is served at ``/<purpose>/{token}``."""


def public_base(config: Config) -> str:
    """Where ``digest serve`` and the archive are reachable."""
    return (config.serve.public_url or config.site.base_url).rstrip("/")


def archive_url(config: Config, issue_id: str | None = None) -> str:
    base = f"{public_base(config)}{ARCHIVE_PATH}/"
    return f"{base}{issue_id}/" if issue_id else base


def route(purpose: str) -> str:
    """The route pattern of a token page, e.g. ``/unsubscribe/{token}``."""
    if purpose not in TOKEN_PURPOSES:
        raise ValueError(f"no page for {purpose!r}")
    return f"/{purpose}/{{token}}"


def token_path(purpose: str, token: str) -> str:
    """A token page as a path on the service, e.g. ``/unsubscribe/<token>``."""
    return route(purpose).format(token=token)


def token_url(config: Config, purpose: str, token: str) -> str:
    """A token page as a public URL."""
    return public_base(config) + token_path(purpose, token)


def subscriber_urls(
    config: Config, *, unsubscribe_token: str, preferences_token: str
) -> dict[str, str]:
    """The unsubscribe and preferences URLs of one subscriber (values of their markers)."""
    return {
        "unsubscribe_url": token_url(config, "unsubscribe", unsubscribe_token),
        "preferences_url": token_url(config, "preferences", preferences_token),
    }


CLICK_PATH = "/c/"
CLICK_ROUTE = CLICK_PATH + "{token:path}"
"""Where ``digest serve`` counts a click on a post link and redirects to the post (every
path below it: whatever follows ``/c/`` is a token, or refused as one)."""


def click_url(config: Config, token: str) -> str:
    """A counted post link (``analytics.clicks``) as a public URL."""
    return public_base(config) + CLICK_PATH + token


OPEN_PATH = "/o/"
OPEN_ROUTE = OPEN_PATH + "{token:path}"
"""Where ``digest serve`` answers the open pixel (``analytics.opens``) and counts the open."""


def open_url(config: Config, token: str) -> str:
    """The open pixel of one issue's variant as a public URL."""
    return public_base(config) + OPEN_PATH + token
