"""The preview's web server: a page, the email exactly as sent, and a stream of rebuilds.

Only these routes exist; nothing is served from a folder, so there is no path to traverse and
no listing of the project::

    GET  /                       the preview page (?week=2026-W47)
    GET  /static/<name>          the page's own script and stylesheet (a fixed list)
    GET  /favicon.ico            nothing (204), so browsers stop asking
    GET  /api/state?week=…       JSON: inbox line, text, headers, checks, problem, weeks
    GET  /dashboard              the audience: charts from the subscriber store and ledger
    GET  /deliverability?week=…  the issue's deliverability panel (DNS, provider, pre-send,
                                 links, List-Unsubscribe), when a panel maker is given
    GET  /email/<issue>.html     the email's HTML, the same bytes `digest build` writes
    GET  /archive/<issue>/       an issue already built into out/ (when an archive is given)
    GET  /events                 server-sent events: one per rebuild
    POST /api/send-test          send the issue to one address (only when enabled)

Requests whose Host is not the address the server was started on are refused, so a web page
elsewhere cannot reach the preview through DNS rebinding; the send-test route also needs the
per-process token that only the preview page carries. No other site may frame the preview
(``Content-Security-Policy: frame-ancestors 'none'``); the email and archive routes may be
framed by the preview's own page only (``'self'``), which shows the email in an iframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import uvicorn
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.asgi import Headers, ResponseHeaders
from digest.errors import DigestError
from digest.preview.state import ISSUE_ID, BuildEvent, IssueView, PreviewState
from digest.resources import BUILTIN_TEMPLATES

log = logging.getLogger(__name__)

PAGE_DIR = BUILTIN_TEMPLATES / "preview"
STATIC_FILES = {
    "preview.js": "text/javascript; charset=utf-8",
    "preview.css": "text/css; charset=utf-8",
}
HEARTBEAT_SECONDS = 15.0
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class WeekChoice:
    """An entry of the week picker: an issue that can be previewed, or one in the archive."""

    issue_id: str
    label: str
    archived: bool = False


WeekLister = Callable[[], Sequence[WeekChoice]]
ArchiveReader = Callable[[str], bytes | None]
TestSender = Callable[[str, str], str]
"""``(issue_id, address) -> what happened``; raises DigestError when it cannot send."""


@dataclass
class PreviewOptions:
    default_issue: str
    weeks: WeekLister | None = None
    archive: ArchiveReader | None = None
    send_test: TestSender | None = None
    allowed_hosts: frozenset[str] | None = None  # None: any Host header is accepted
    site_name: str = "digest"
    dashboard: Callable[[], str] | None = None  # the audience dashboard's HTML
    deliverability: Callable[[str], str] | None = None  # issue id -> the panel's HTML


class _HostCheck:
    """Refuse requests whose Host header is not one of the preview's own addresses."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed is not None and scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            if host not in self.allowed:
                response = Response("unknown host", status_code=421, media_type="text/plain")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


FRAMED_BY_SELF = ("/email/", "/archive/")
"""Routes the preview page shows in its own iframe."""


def frame_headers(path: str, headers: Headers) -> Headers:
    """``headers`` with ``frame-ancestors`` (and the older ``X-Frame-Options``): only the
    preview's own page may frame the routes it shows in its iframe, nothing frames the rest."""
    framed = path.startswith(FRAMED_BY_SELF)
    policy = b"frame-ancestors 'self'" if framed else b"frame-ancestors 'none'"
    legacy = b"SAMEORIGIN" if framed else b"DENY"
    kept, csp = [], policy
    for name, value in headers:
        if name.lower() == b"content-security-policy":
            # a route's own policy is kept, with ours added
            csp = value if b"frame-ancestors" in value else value + b"; " + policy
        elif name.lower() != b"x-frame-options":
            kept.append((name, value))
    return [*kept, (b"content-security-policy", csp), (b"x-frame-options", legacy)]


class _FrameAncestors(ResponseHeaders):
    """``frame-ancestors`` (and the older ``X-Frame-Options``) on every response."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, frame_headers)


class Broadcaster:
    """Hands build events from the build thread to every open event stream."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[BuildEvent | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, event: BuildEvent) -> None:
        """Thread-safe: called by the build worker."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: BuildEvent | None) -> None:
        for queue in list(self._queues):
            queue.put_nowait(event)

    def close(self) -> None:
        """End every stream (called from the event loop's thread)."""
        self.closed = True
        self._deliver(None)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[BuildEvent | None]]:
        queue: asyncio.Queue[BuildEvent | None] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)


def render_view(view: IssueView) -> dict[str, Any]:
    """The JSON the page draws from (never contains configuration or secrets)."""
    render = view.render
    data: dict[str, Any] = {
        "issue_id": view.issue_id,
        "version": view.version,
        "build_ms": round(view.build_seconds * 1000, 1),
        "problem": view.problem.as_dict() if view.problem else None,
        "email": None,
    }
    if render is not None:
        data["email"] = {
            "issue_id": render.issue_id,
            "subject": render.subject,
            "preheader": render.preheader,
            "from": render.from_address,
            "text": render.text,
            "headers": dict(render.headers),
            "checks": [asdict(c) for c in render.checks],
            "sections": list(render.sections),
            "post_count": render.post_count,
            "trimmed": list(render.trimmed),
            "html_bytes": len(render.html_bytes),
            "version": view.render_version,
            "url": f"/email/{view.issue_id}.html?v={view.render_version}",
        }
    return data


class _Routes:
    """The preview's routes, handed what they read: the state, the options, the build
    events' broadcaster, the send-test token and the page templates."""

    def __init__(
        self,
        state: PreviewState,
        options: PreviewOptions,
        broadcaster: Broadcaster,
        token: str,
        pages: Environment,
    ) -> None:
        self.state = state
        self.options = options
        self.broadcaster = broadcaster
        self.token = token
        self.pages = pages

    def chosen_issue(self, request: Request) -> str | None:
        issue_id = request.query_params.get("week") or self.options.default_issue
        return issue_id if ISSUE_ID.match(issue_id) else None

    async def page(self, request: Request) -> Response:
        issue_id = self.chosen_issue(request)
        if issue_id is None:
            return Response("bad week: expected 2026-W47", status_code=400, headers=NO_STORE)
        html = self.pages.get_template("page.html.j2").render(
            issue_id=issue_id,
            default_issue=self.options.default_issue,
            token=self.token,
            can_send=self.options.send_test is not None,
            site_name=self.options.site_name,
            has_dashboard=self.options.dashboard is not None,
            has_deliverability=self.options.deliverability is not None,
        )
        return HTMLResponse(html, headers=NO_STORE)

    async def dashboard(self, request: Request) -> Response:
        if self.options.dashboard is None:
            return Response("no dashboard", status_code=404, media_type="text/plain")
        html = await asyncio.to_thread(self.options.dashboard)
        return HTMLResponse(html, headers=NO_STORE)

    async def deliverability(self, request: Request) -> Response:
        issue_id = self.chosen_issue(request)
        if self.options.deliverability is None or issue_id is None:
            return Response("no such panel", status_code=404, media_type="text/plain")
        try:
            html = await asyncio.to_thread(self.options.deliverability, issue_id)
        except DigestError as exc:  # a broken config or an empty week: say so, never a 500
            message = f"{issue_id} cannot be checked: {exc}"
            return Response(message, status_code=409, media_type="text/plain", headers=NO_STORE)
        return HTMLResponse(html, headers=NO_STORE)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return Response("not found", status_code=404, media_type="text/plain")
        body = (PAGE_DIR / name).read_bytes()
        return Response(body, media_type=STATIC_FILES[name], headers=NO_STORE)

    async def api_state(self, request: Request) -> Response:
        issue_id = self.chosen_issue(request)
        if issue_id is None:
            return JSONResponse({"error": "bad week"}, status_code=400, headers=NO_STORE)
        view = await asyncio.to_thread(self.state.view, issue_id)
        data = render_view(view)
        if self.options.weeks is not None:
            try:
                weeks = await asyncio.to_thread(self.options.weeks)
            except Exception as exc:  # a broken config must not break the page
                log.debug("listing weeks failed: %s", exc)
                weeks = []
            data["weeks"] = [asdict(w) for w in weeks]
        else:
            data["weeks"] = []
        data["default_issue"] = self.options.default_issue
        data["can_send"] = self.options.send_test is not None
        return JSONResponse(data, headers=NO_STORE)

    async def email(self, request: Request) -> Response:
        issue_id = request.path_params["issue"]
        view = self.state.peek(issue_id) if ISSUE_ID.match(issue_id) else None
        if view is None or view.render is None:
            return Response("not built", status_code=404, media_type="text/plain")
        return Response(
            view.render.html_bytes, media_type="text/html; charset=utf-8", headers=NO_STORE
        )

    async def archive(self, request: Request) -> Response:
        issue_id = request.path_params["issue"]
        body = None
        if self.options.archive is not None and ISSUE_ID.match(issue_id):
            body = await asyncio.to_thread(self.options.archive, issue_id)
        if body is None:
            return Response("not in the archive", status_code=404, media_type="text/plain")
        return Response(body, media_type="text/html; charset=utf-8", headers=NO_STORE)

    async def events(self, request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            with self.broadcaster.subscribe() as queue:
                yield "retry: 500\n\n"
                while not self.broadcaster.closed:
                    try:
                        event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if event is None:
                        return
                    yield f"event: build\ndata: {json.dumps(asdict(event))}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={**NO_STORE, "X-Accel-Buffering": "no"},
        )

    async def send_test(self, request: Request) -> Response:
        if self.options.send_test is None:
            return JSONResponse({"error": "no provider is configured"}, status_code=404)
        if not secrets.compare_digest(request.headers.get("x-preview-token", ""), self.token):
            return JSONResponse({"error": "missing or wrong preview token"}, status_code=403)
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        address = str(payload.get("to", "")).strip()
        issue_id = str(payload.get("week", self.options.default_issue))
        if "@" not in address or not ISSUE_ID.match(issue_id):
            return JSONResponse(
                {"error": "give an address such as you@example.com"}, status_code=400
            )
        from digest.errors import DigestError

        try:
            outcome = await asyncio.to_thread(self.options.send_test, issue_id, address)
        except DigestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return JSONResponse({"ok": True, "message": outcome})


def create_app(state: PreviewState, options: PreviewOptions) -> Starlette:
    """The preview as an ASGI app (tests drive it with Starlette's TestClient)."""
    broadcaster = Broadcaster()
    token = secrets.token_urlsafe(24)
    pages = Environment(
        loader=FileSystemLoader(str(PAGE_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        keep_trailing_newline=True,
    )

    routes = _Routes(state, options, broadcaster, token, pages)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        broadcaster.bind(asyncio.get_running_loop())
        state.add_listener(broadcaster.publish)
        try:
            yield
        finally:
            state.remove_listener(broadcaster.publish)
            broadcaster.close()

    app = Starlette(
        routes=[
            Route("/", routes.page),
            Route("/static/{name}", routes.static),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Route("/dashboard", routes.dashboard),
            Route("/deliverability", routes.deliverability),
            Route("/api/state", routes.api_state),
            Route("/email/{issue}.html", routes.email),
            Route("/archive/{issue}/", routes.archive),
            Route("/events", routes.events),
            Route("/api/send-test", routes.send_test, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.broadcaster = broadcaster
    app.state.token = token
    app.add_middleware(_HostCheck, allowed=options.allowed_hosts)
    app.add_middleware(_FrameAncestors)
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind now, so the chosen port (``port=0`` picks a free one) is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from digest.errors import DigestError

        raise DigestError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "pick another port with --port (0 picks a free one)"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def local_hosts(host: str, port: int) -> frozenset[str]:
    names = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost") else {host}
    if host in ("::1", "[::1]"):
        names = {"[::1]"}
    return frozenset(f"{name}:{port}" for name in names)


class _Server(uvicorn.Server):
    """Ends open event streams as soon as Ctrl-C arrives, so shutdown does not wait on them."""

    on_exit: Callable[[], None] | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.on_exit is not None:
            self.on_exit()
        super().handle_exit(sig, frame)


def serve(
    app: Starlette,
    sock: socket.socket,
    *,
    on_ready: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C (or ``stop`` is set); returns cleanly."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    broadcaster: Broadcaster = app.state.broadcaster

    def end_streams() -> None:
        loop = broadcaster._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(broadcaster.close)

    server.on_exit = end_streams

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and on_ready is not None:
            on_ready()
        while not task.done():
            if stop is not None and stop.is_set():
                end_streams()
                server.should_exit = True
            await asyncio.wait({task}, timeout=0.1)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
