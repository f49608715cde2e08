"""Fetching a feed over HTTP, politely and within limits.

:func:`fetch_feed` makes one conditional GET (``If-None-Match`` / ``If-Modified-Since``
from the last answer), follows at most ``max_redirects`` redirects (http and https only),
reads at most ``max_bytes`` (after decompression, so a compressed bomb is refused too) and
gives up when the whole exchange takes longer than ``timeout`` — a server that answers one
byte at a time cannot hold a run. Anything else is a :class:`~digest.errors.SourceError`
saying what happened: unreachable, timed out, HTTP status, too large, too many redirects.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import httpx

from digest.content.sources.address import Pinned, Resolver, pin, resolve
from digest.content.sources.decode import decoded
from digest.errors import SourceError

ACCEPT = (
    "application/feed+json, application/json;q=0.9, application/atom+xml, "
    "application/rss+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5"
)
USER_AGENT = "digest-feed-reader/1 (+https://github.com/digest)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Fetched:
    """What the server answered: ``body`` None means 304 Not Modified."""

    url: str  # after redirects
    status: int
    body: bytes | None
    etag: str | None
    last_modified: str | None
    content_type: str | None

    @property
    def not_modified(self) -> bool:
        return self.body is None


def make_client() -> httpx.Client:
    """The client feeds are fetched with when none is injected."""
    return httpx.Client(headers={"User-Agent": USER_AGENT}, follow_redirects=False)


def fetch_feed(
    client: httpx.Client,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: timedelta = timedelta(seconds=20),
    max_bytes: int = 10_000_000,
    max_redirects: int = 5,
    allow_private: bool = False,
    resolver: Resolver = resolve,
) -> Fetched:
    """GET ``url`` with the validators of the last answer. Raises SourceError.

    A URL (first, or after a redirect) whose host is or resolves to a loopback, private,
    link-local or otherwise non-public address is refused unless ``allow_private``; when
    it is checked, the request connects to the address checked (``resolver`` looks the
    name up once; see :mod:`digest.content.sources.address`)."""
    seconds = timeout.total_seconds()
    deadline = time.monotonic() + seconds
    headers = {"Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    current = url
    try:
        for _ in range(max_redirects + 1):
            target = Pinned(current, "", None) if allow_private else pin(current, resolver)
            remaining = max(deadline - time.monotonic(), 0.001)
            with client.stream(
                "GET",
                target.url,
                headers={**headers, "Host": target.host} if target.host else headers,
                extensions={"sni_hostname": target.server_name} if target.server_name else {},
                timeout=httpx.Timeout(remaining),
                follow_redirects=False,
            ) as response:
                if response.status_code == 304:
                    return Fetched(current, 304, None, etag, last_modified, None)
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise SourceError(f"HTTP {response.status_code} without a Location")
                    current = urljoin(current, location)
                    if urlsplit(current).scheme not in ("http", "https"):
                        raise SourceError(f"redirected to {current}, which is not http(s)")
                    continue
                if response.status_code >= 400 or response.status_code < 200:
                    raise SourceError(
                        f"HTTP {response.status_code} {response.reason_phrase} from {current}",
                        status=response.status_code,
                    )
                body = _read_limited(response, max_bytes, deadline, seconds)
                return Fetched(
                    current,
                    response.status_code,
                    body,
                    response.headers.get("etag"),
                    response.headers.get("last-modified"),
                    response.headers.get("content-type"),
                )
    except httpx.TimeoutException:
        raise SourceError(f"timed out after {seconds:g}s fetching {current}") from None
    except httpx.HTTPError as exc:
        raise SourceError(f"unreachable: {type(exc).__name__}: {exc or current}") from None
    raise SourceError(f"more than {max_redirects} redirects (last to {current})")


def _read_limited(
    response: httpx.Response, max_bytes: int, deadline: float, seconds: float
) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise SourceError(f"the feed is {int(declared):,} bytes, over max_bytes ({max_bytes:,})")
    parts: list[bytes] = []
    total = 0
    # Raw bytes, decoded here layer by layer within the limit (see decode.py)
    body: Iterable[bytes] = (
        [response.content]  # read already (a response built in memory): httpx decoded it
        if response.is_stream_consumed
        else decoded(response.iter_raw(), response.headers.get("content-encoding"))
    )
    for chunk in body:  # as it arrives, so the deadline is checked
        total += len(chunk)
        if total > max_bytes:
            raise SourceError(f"the feed is over max_bytes ({max_bytes:,} bytes); not read")
        if time.monotonic() > deadline:
            raise SourceError(f"timed out after {seconds:g}s reading the feed")
        parts.append(chunk)
    return b"".join(parts)
