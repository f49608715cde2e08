"""The ASGI layers around the routes: security headers on every answer, the archive as
static files, and CORS for ``/subscribe`` alone."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.asgi import Headers, ResponseHeaders
from digest.serve.security import SECURITY_HEADERS

ARCHIVE_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src https: data: 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def security_headers(path: str, headers: Headers) -> Headers:
    """``headers`` with each of :data:`SECURITY_HEADERS` a route did not set itself (a
    looser CSP for archived emails)."""
    archive = path.startswith("/archive")
    present = {k.lower() for k, _ in headers}
    for name, value in SECURITY_HEADERS.items():
        if name == "Content-Security-Policy" and archive:
            value = ARCHIVE_CSP
        if name.lower().encode() not in present:
            headers.append((name.lower().encode(), value.encode()))
    return headers


class SecurityHeaders(ResponseHeaders):
    """Adds :data:`SECURITY_HEADERS` to every response (a looser CSP for archived emails)."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, security_headers)


class Archive:
    """``out/archive/`` as static files (index.html for folders); 404 until the first build."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = StaticFiles(directory=directory, html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.directory.is_dir():
            raise HTTPException(404)
        await self.files(scope, receive, send)


class SubscribeCors:
    """CORS for ``/subscribe`` only, for the sites in ``serve.allowed_origins`` (so the blog
    can post JSON with fetch); every other route stays same-origin."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Content-Type"],
            max_age=3600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/subscribe":
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
