"""The service's defences that do not depend on what a route does.

- :class:`CsrfGuard`: stateless double-submit tokens for the HTML forms. A page sets a
  random cookie and puts ``HMAC(key, cookie)`` in the form; a POST must carry both, and the
  two must agree (compared in constant time). A page elsewhere can make a browser send the
  cookie but cannot read it, so it cannot write the matching form field.
- :class:`RateLimiter`: a token bucket per client address, with an injected clock and a
  bounded table (the oldest idle entries go first).
- :class:`BodyLimit`: ASGI middleware that refuses bodies over a size before a route reads
  them (413), whether or not the client sent Content-Length.
- :data:`SECURITY_HEADERS`: sent with every response. ``Referrer-Policy: no-referrer``
  matters most: token links must not leak to other sites through the Referer header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "digest_csrf"
CSRF_FIELD = "csrf"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' https: data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class CsrfGuard:
    """Makes and checks the form tokens that go with the ``digest_csrf`` cookie."""

    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"digest-csrf\x00" + key).digest()

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(24)

    def form_token(self, cookie: str) -> str:
        return hmac.new(self._key, cookie.encode(), hashlib.sha256).hexdigest()

    def check(self, cookie: str | None, field: str | None) -> bool:
        """True when the form field is the token for the cookie the browser sent."""
        if not cookie or not field:
            return False
        return hmac.compare_digest(self.form_token(cookie), field)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """At most ``burst`` requests at once per key, refilled at ``per_minute``.

    ``clock`` returns seconds (monotonic); tests pass their own. Safe to call from threads.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float],
        max_keys: int = 100_000,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take one request from ``key``'s bucket; False when it is empty."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(self.burst, now)
            else:
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            allowed = bucket.tokens >= 1.0
            if allowed:
                bucket.tokens -= 1.0
            self._buckets[key] = bucket  # most recently used last
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return allowed

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` may make another request."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.tokens >= 1.0:
                return 0
            return max(1, int((1.0 - bucket.tokens) / self.rate + 0.999))


class BodyLimit:
    """Refuse request bodies over ``limit_for(path)`` bytes with 413, before routes see them."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _plain(send, 400, b"Bad Content-Length")
                    return
                if declared > limit:
                    # A body not much over the limit is read and dropped, so the answer
                    # reaches the client and the connection stays usable; a huge one is
                    # not worth reading, and the connection is closed instead.
                    keep = declared <= DRAIN_MAX and await _drain(receive, declared)
                    await _plain(send, 413, b"Request body too large", close=not keep)
                    return
        received = 0

        async def limited_receive() -> Message:
            # A body without (or lying about) Content-Length is counted as it streams in;
            # the route reading it gets a 413 from the exception handlers.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, "Request body too large")
            return message

        await self.app(scope, limited_receive, send)


DRAIN_MAX = 1024 * 1024
"""The largest over-limit body read (and dropped) to keep the connection open."""


async def _drain(receive: Receive, declared: int) -> bool:
    """Read and drop a request body of ``declared`` bytes; False if the client left."""
    read = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False
        read += len(message.get("body", b""))
        if read > declared:
            return False
        if not message.get("more_body", False):
            return True


async def _plain(send: Send, status: int, body: bytes, *, close: bool = True) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
