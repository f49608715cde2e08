"""``/keep/<token>``: the sunset flow's "keep me subscribed" link (serve/sunset.py).

A GET shows a button and changes nothing (mail scanners follow every link of a message);
the POST, with the same signed token (purpose ``keep``, valid for the grace days), marks
the reader's waiting sunset round ``kept``, so the next ``digest subscribers sunset`` leaves
them subscribed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from digest.audience import engagement
from digest.audience.links import token_path
from digest.audience.subscribers import Subscriber, SubscriberStore
from digest.audience.tokens import TokenError
from digest.safelog import log_change
from digest.serve.subscriptions import Subscriptions


class _Handlers(Protocol):
    clock: Callable[[], datetime]
    subscriptions: Subscriptions

    @property
    def store(self) -> Any: ...

    def page(
        self, request: Request, name: str, *, reader: Subscriber | None = None, **context: Any
    ) -> HTMLResponse: ...

    def bad_link(self, request: Request, exc: TokenError) -> HTMLResponse: ...


class KeepRoute:
    """The two handlers of ``/keep/{token}``."""

    def __init__(self, handlers: _Handlers) -> None:
        self.handlers = handlers

    async def page(self, request: Request) -> Response:
        return await self._answer(request, keep=False)

    async def keep(self, request: Request) -> Response:
        return await self._answer(request, keep=True)

    async def _answer(self, request: Request, *, keep: bool) -> Response:
        token = request.path_params["token"]
        handlers = self.handlers
        now = handlers.clock()

        def work(store: SubscriberStore) -> tuple[Subscriber, int]:
            found = handlers.subscriptions.check(store, token, "keep", now)
            kept = engagement.keep(store.connection, found.id, now) if keep else 0
            return found, kept

        try:
            subscriber, kept = await handlers.store.run(work)
        except TokenError as exc:
            return handlers.bad_link(request, exc)
        if keep:
            log_change("sunset_kept", email=subscriber.email, rounds=kept)
        return handlers.page(
            request,
            "keep.html.j2",
            reader=subscriber,
            email=subscriber.email,
            done=keep,
            active=subscriber.status == "active",
            action=token_path("keep", token),
        )
