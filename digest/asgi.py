"""Headers on every answer of an ASGI app: the one middleware that ``digest serve`` (its
security headers) and the preview (its frame policy) hand their policy to.

A policy sees the request's path and the response's headers, and returns the headers to
send; the middleware applies it to every HTTP response, whichever route answered.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]
Policy = Callable[[str, Headers], Headers]


class ResponseHeaders:
    """ASGI middleware: ``policy(path, headers)`` decides every HTTP response's headers."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = self.policy(path, list(message.get("headers", [])))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


__all__ = ["Headers", "Policy", "ResponseHeaders"]
