"""Every link and image of a built issue, fetched before it is sent.

HEAD first; GET when the server refuses HEAD (405, 501). Redirects are followed up to a
limit, each through the same address check as the first URL (:class:`Reach`: links to
loopback, private or link-local addresses are refused, not fetched); each request has a
timeout, at most ``concurrency`` are in flight. A link that answered 2xx/3xx is remembered
for a day (``<cache_dir>/links.json``); a broken one is asked again next time, so a fixed
link is seen at once. Each broken URL is named with the post that carries it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from digest.content.sources.address import Pinned, Resolver, pin, resolve
from digest.errors import SourceError
from digest.store.atomic import write_atomic

if TYPE_CHECKING:
    from digest.config import Config
    from digest.content.posts import Post

Kind = Literal["link", "image"]

CACHE_SECONDS = 24 * 3600
TEMPLATE = "(the issue's template)"

_ATTR = re.compile(r"<(a|img)\b[^>]*?\s(href|src)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """One URL of the issue: a link or an image, and the post that carries it."""

    url: str
    kind: Kind
    post: str


@dataclass(frozen=True)
class Outcome:
    """What fetching one URL gave."""

    url: str
    ok: bool
    status: int | None
    detail: str
    cached: bool = False
    length: int | None = None  # Content-Length, when the server gave one


def _bare(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc.lower()}{parts.path.rstrip('/')}"


def targets(html: str, owners: dict[str, str]) -> list[Target]:
    """The http(s) links and images of ``html``, each once; ``owners`` maps a URL (query
    ignored) to the post that carries it, anything else belongs to the template."""
    by_bare = {_bare(url): post for url, post in owners.items()}
    seen: set[str] = set()
    found: list[Target] = []
    for tag, _attr, raw in _ATTR.findall(html):
        url = unescape(raw).strip()
        if not url.startswith(("http://", "https://")) or url in seen:
            continue
        seen.add(url)
        kind: Kind = "image" if tag.lower() == "img" else "link"
        found.append(Target(url, kind, by_bare.get(_bare(url), TEMPLATE)))
    return found


def post_owners(config: Config, posts: Iterable[Post]) -> dict[str, str]:
    """Each post's own URLs (where it is read, its cover image) -> the post's file."""
    from digest.audience.links import post_url

    owners: dict[str, str] = {}
    for post in posts:
        label = f"{post.path.name} ({post.title})"
        owners[post_url(config, post)] = label
        if post.cover_image:
            owners[post.cover_image] = label
    return owners


class LinkCache:
    """Good answers per URL, kept for a day, in one JSON file (written atomically)."""

    def __init__(self, path: Path, now: float) -> None:
        self.path = path
        self.now = now
        self.entries: dict[str, float] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self.entries = {
                    str(k): float(v)
                    for k, v in data.items()
                    if isinstance(v, (int, float)) and now - float(v) < CACHE_SECONDS
                }
        except (OSError, ValueError):
            pass

    def fresh(self, url: str) -> bool:
        return url in self.entries

    def remember(self, url: str) -> None:
        self.entries[url] = self.now

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.entries, sort_keys=True))


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


@dataclass(frozen=True)
class Reach:
    """Which addresses the checker may connect to. Post links and images come from post
    and feed authors, so a link to ``127.0.0.1``, a private network or a cloud's metadata
    address (or a redirect to one) is refused, not fetched, through the same check feeds
    get (:func:`digest.content.sources.address.pin`, which also pins the address checked).
    The site's own origins (``site.base_url``, ``serve.public_url``) are the operator's
    and are fetched wherever they are."""

    own: frozenset[str] = frozenset()
    allow_private: bool = False
    resolver: Resolver = resolve

    def target(self, url: str) -> Pinned:
        """The request for ``url``; SourceError when its address may not be fetched."""
        if self.allow_private or _origin(url) in self.own:
            return Pinned(url, "", None)
        return pin(url, self.resolver, hint="")


async def _ask(client: httpx.AsyncClient, target: Pinned) -> httpx.Response:
    """HEAD, or GET when the server refuses HEAD; the status is enough (no body read)."""
    headers = {"Host": target.host} if target.host else {}
    extensions = {"sni_hostname": target.server_name} if target.server_name else {}
    response = await client.head(target.url, headers=headers, extensions=extensions)
    if response.status_code in (405, 501):
        request = client.build_request("GET", target.url, headers=headers, extensions=extensions)
        response = await client.send(request, stream=True)
        await response.aclose()
    return response


async def _fetch(client: httpx.AsyncClient, url: str, reach: Reach, max_redirects: int) -> Outcome:
    current = url
    try:
        for _ in range(max_redirects + 1):
            target = await asyncio.to_thread(reach.target, current)  # a name lookup blocks
            response = await _ask(client, target)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                break
            current = urljoin(current, location)
            if urlsplit(current).scheme not in ("http", "https"):
                return Outcome(url, False, None, f"redirected to {current}, which is not http(s)")
        else:
            return Outcome(url, False, None, f"more than {max_redirects} redirects")
    except SourceError as exc:
        return Outcome(url, False, None, f"refused, not fetched: {exc}")
    except httpx.TimeoutException:
        return Outcome(url, False, None, f"no answer within {client.timeout.read} s")
    except httpx.HTTPError as exc:
        return Outcome(url, False, None, f"cannot connect: {exc}")
    status = response.status_code
    if status >= 400:
        return Outcome(url, False, status, f"HTTP {status}")
    moved = f" (redirected to {current})" if current != url else ""
    size = response.headers.get("content-length", "")
    length = int(size) if size.isdigit() else None
    return Outcome(url, True, status, f"HTTP {status}{moved}", length=length)


async def _check_all(
    urls: list[str], *, concurrency: int, timeout: float, max_redirects: int, reach: Reach
) -> list[Outcome]:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"User-Agent": "digest-linkcheck"}
    # redirects are followed by _fetch, each through the address check
    async with httpx.AsyncClient(
        follow_redirects=False, timeout=timeout, limits=limits, headers=headers
    ) as client:

        async def one(url: str) -> Outcome:
            async with gate:
                return await _fetch(client, url, reach, max_redirects)

        return list(await asyncio.gather(*(one(url) for url in urls)))


def check_urls(
    urls: list[str],
    *,
    cache: LinkCache | None = None,
    concurrency: int = 16,
    timeout: float = 10.0,
    max_redirects: int = 5,
    reach: Reach | None = None,
) -> dict[str, Outcome]:
    """Fetch each URL (those the cache holds are good without asking); url -> outcome.
    ``reach`` says which addresses may be fetched (by default public ones only)."""
    outcomes = {
        url: Outcome(url, True, None, "checked within a day", True)
        for url in urls
        if cache is not None and cache.fresh(url)
    }
    todo = [url for url in dict.fromkeys(urls) if url not in outcomes]
    for outcome in asyncio.run(
        _check_all(
            todo,
            concurrency=concurrency,
            timeout=timeout,
            max_redirects=max_redirects,
            reach=reach or Reach(),
        )
    ):
        outcomes[outcome.url] = outcome
        if outcome.ok and cache is not None:
            cache.remember(outcome.url)
    if cache is not None:
        cache.save()
    return outcomes


def broken(found: list[Target], outcomes: dict[str, Outcome]) -> list[tuple[Target, Outcome]]:
    """The targets that failed, in the issue's order."""
    return [(t, outcomes[t.url]) for t in found if not outcomes[t.url].ok]


def check_issue(
    config: Config, html: str, posts: Iterable[Post], *, now: float
) -> tuple[list[Target], dict[str, Outcome]]:
    """Every link and image of an issue's HTML, fetched (cache in content.cache_dir)."""
    found = targets(html, post_owners(config, posts))
    cache = LinkCache(config.path(config.content.cache_dir) / "links.json", now)
    own = [config.site.base_url, config.serve.public_url or config.site.base_url]
    reach = Reach(own=frozenset(_origin(url) for url in own))
    return found, check_urls([t.url for t in found], cache=cache, reach=reach)
