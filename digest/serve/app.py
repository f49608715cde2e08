"""``digest serve``: the subscriber-facing web service (Starlette on uvicorn).

Routes::

    GET  /                         → /subscribe
    GET  /subscribe                the subscribe form
    POST /subscribe                form (with CSRF token) or JSON {email, name?, categories?}
    GET  /confirm/<token>          a page with a button (GET alone never confirms: mail
                                   scanners follow links)
    POST /confirm/<token>          double opt-in: pending → active (the token is the proof)
    GET  /unsubscribe/<token>      a page with a button (GET alone never unsubscribes)
    POST /unsubscribe/<token>      RFC 8058 one-click (body List-Unsubscribe=One-Click: 200,
                                   empty) or the page's form (CSRF checked)
    GET  /preferences/<token>      choose sections, or unsubscribe
    POST /preferences/<token>
    GET  /archive/…                out/archive/ as written by `digest build` (index, feed.xml,
                                   <issue-id>/)
    POST /webhooks/<provider>      postmark, resend, sendgrid, mailgun
    GET  /assets/serve.css         the pages' stylesheet
    GET  /healthz                  "ok", for the reverse proxy's checks

The app is built by :func:`create_app` from a config, a clock and (for tests) a mailer;
:class:`Handlers` holds the route handlers. What they do to the subscriber store is
:mod:`digest.serve.subscriptions`, run on the store's own thread
(:mod:`digest.serve.store_worker`); the emails they send are :mod:`digest.serve.mail`.
Run one process: the rate limiter lives in memory and SQLite wants one writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.audience import newsletters
from digest.audience.links import ARCHIVE_PATH, public_base, route, token_path
from digest.audience.subscribers import InvalidEmail
from digest.audience.tokens import TokenError
from digest.config import Config
from digest.content.posts import strip_controls
from digest.delivery.providers.mailgun import Mailgun
from digest.email.archive import archive_dir
from digest.errors import ConfigError, DigestError, TemplateError
from digest.safelog import clean
from digest.serve.jsonbody import BadJson, loads_bounded, text_field, text_list
from digest.serve.mail import (
    CONFIRM_TEMPLATE,
    NOTICE_TEMPLATE,
    WELCOME_TEMPLATE,
    Mailer,
    welcome_context,
)
from digest.serve.pages import Pages
from digest.serve.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SECURITY_HEADERS,
    BodyLimit,
    CsrfGuard,
    RateLimiter,
)
from digest.serve.shared import SharedRateLimiter
from digest.serve.store_worker import StoreWorker
from digest.serve.subscriptions import Subscriptions, require_server_secret
from digest.serve.webhooks import WebhookError, WebhookEvent, read_webhook
from digest.store.database import locate

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
NextIssue = Callable[[datetime], datetime]
ONE_CLICK = ("List-Unsubscribe", "One-Click")
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src https: data: 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
NO_STORE = {"Cache-Control": "no-store"}
MAX_EMAIL = 320  # RFC 3696's longest address, give or take
MAX_NAME = 200


def one_line(text: str) -> str:
    """A name as stored: control characters gone, spacing folded (it ends up in mail)."""
    return " ".join(strip_controls(text).split())


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response (a looser CSP for archived emails)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        archive = scope["path"].startswith("/archive")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name == "Content-Security-Policy" and archive:
                        value = ARCHIVE_CSP
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class _Archive:
    """``out/archive/`` as static files (index.html for folders); 404 until the first build."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = StaticFiles(directory=directory, html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.directory.is_dir():
            raise HTTPException(404)
        await self.files(scope, receive, send)


def _route(request: Request) -> str:
    """The path for a log line, without the token that follows the route's name."""
    parts = request.url.path.split("/")
    return "/" + parts[1] + ("/…" if len(parts) > 2 and parts[1] != "archive" else "")


def _csrf_cookie(request: Request) -> str:
    """Over https the cookie is ``__Host-`` prefixed: browsers then refuse it from a sibling
    subdomain or over http, so nobody else can plant a cookie/token pair of their own."""
    return f"__Host-{CSRF_COOKIE}" if request.url.scheme == "https" else CSRF_COOKIE


class _SubscribeCors:
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


class Handlers:
    """The route handlers, and what they share."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        mailer: Mailer | None = None,
        next_issue: NextIssue | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.next_issue = next_issue
        secret = require_server_secret(config)
        self.pages = Pages(config)
        self.subscriptions = Subscriptions(config, secret)
        self.csrf = CsrfGuard(secret)
        self.limiter: RateLimiter | SharedRateLimiter
        if config.database is not None:  # several hosts: the limits live in the database
            self.limiter = SharedRateLimiter(
                config.database,
                config.serve.subscribe_per_minute,
                config.serve.subscribe_burst,
                prefix="subscribe",
                # the database's clock unless a test brings its own
                clock=None if monotonic is time.monotonic else monotonic,
            )
        else:
            self.limiter = RateLimiter(
                config.serve.subscribe_per_minute, config.serve.subscribe_burst, clock=monotonic
            )
        self.store = StoreWorker(locate(config, config.subscribers.database))
        self.mailer = mailer or Mailer(config, self.pages)
        hooks = config.serve.webhooks
        # How long a delivery is remembered: longer than any timestamp is accepted for.
        self.keep = (max(hooks.tolerance, hooks.max_age) + hooks.tolerance).total_seconds()
        self.mailgun_events: Mailgun | None = None
        if hooks.mailgun_confirm:
            if config.provider.name != "mailgun":
                raise ConfigError(
                    "serve.webhooks.mailgun_confirm looks events up with Mailgun's API: it "
                    f"needs provider.name: mailgun (not {config.provider.name})"
                )
            found = Mailgun.from_config(config)
            assert isinstance(found, Mailgun)
            self.mailgun_events = found
        self.sections = [(s.name, s.title) for s in config.categories.sections]
        self.newsletters = newsletters.listed(config)

    def close(self) -> None:
        self.store.close()
        self.mailer.close()
        if self.mailgun_events is not None:
            self.mailgun_events.close()

    # -- helpers

    def page(
        self,
        request: Request,
        name: str,
        *,
        status: int = 200,
        form: bool = False,
        **context: Any,
    ) -> HTMLResponse:
        cookie = request.cookies.get(_csrf_cookie(request)) if form else None
        if form and (not cookie or len(cookie) > 64):
            cookie = self.csrf.new_cookie()
        if form:
            assert cookie is not None
            context[CSRF_FIELD] = self.csrf.form_token(cookie)
        html = self.pages.render(
            name, sections=self.sections, newsletters=self.newsletters, **context
        )
        response = HTMLResponse(html, status_code=status, headers=NO_STORE)
        if form and cookie:
            response.set_cookie(
                _csrf_cookie(request),
                cookie,
                httponly=True,
                samesite="strict",
                # Over https (as seen through a trusted proxy's X-Forwarded-Proto) only.
                secure=request.url.scheme == "https",
                path="/",
            )
        return response

    def csrf_ok(self, request: Request, form: FormData) -> bool:
        field = form.get(CSRF_FIELD)
        return self.csrf.check(
            request.cookies.get(_csrf_cookie(request)), field if isinstance(field, str) else None
        )

    def origin_allowed(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        return bool(origin) and origin in self.config.serve.allowed_origins

    def refused(self, request: Request) -> HTMLResponse:
        log.info("refused a form post without a valid CSRF token: %s", _route(request))
        return self.page(
            request,
            "error.html.j2",
            status=403,
            title="This form has expired",
            message="Reload the page and try again.",
        )

    def bad_link(self, request: Request, exc: TokenError) -> HTMLResponse:
        log.info("refused a link on %s: %s", _route(request), clean(exc))
        return self.page(
            request,
            "error.html.j2",
            status=400,
            title="This link does not work",
            message="It may be incomplete, out of date, or meant for something else. "
            "Use the newest link from your email, or subscribe again.",
        )

    # -- routes

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/subscribe", status_code=303)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            self.pages.stylesheet(),
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    async def subscribe_form(self, request: Request) -> Response:
        return self.page(
            request,
            "subscribe.html.j2",
            form=True,
            error=None,
            email="",
            consent_text=self.config.serve.consent_text,
        )

    async def subscribe(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        is_json = request.headers.get("content-type", "").split(";")[0].strip() == (
            "application/json"
        )
        if not self.limiter.allow(client):
            retry = str(self.limiter.retry_after(client))
            log.info("subscribe: rate limit reached for %s", clean(client, 60))
            if is_json:
                return JSONResponse(
                    {"error": "too many requests; try again later"},
                    status_code=429,
                    headers={"Retry-After": retry},
                )
            response = self.page(
                request,
                "error.html.j2",
                status=429,
                title="Too many requests",
                message="Please wait a minute and try again.",
            )
            response.headers["Retry-After"] = retry
            return response
        if is_json:
            try:
                data = loads_bounded(
                    await request.body(), max_depth=self.config.serve.max_json_depth
                )
                if not isinstance(data, dict):
                    raise BadJson("expected a JSON object")
                email = text_field(data, "email", limit=MAX_EMAIL, required=True)
                name = text_field(data, "name", limit=MAX_NAME)
                chosen = text_list(data, "categories", most=50, limit=200)
                lists = text_list(data, "newsletters", most=20, limit=40)
            except BadJson as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        else:
            form = await request.form()
            # The service's own form carries a CSRF token; a form on an allowed site (the
            # blog) cannot, and is recognised by the Origin header browsers send with it.
            if not self.csrf_ok(request, form) and not self.origin_allowed(request):
                return self.refused(request)
            given_email, given_name = form.get("email"), form.get("name")
            email = given_email if isinstance(given_email, str) else ""
            name = given_name if isinstance(given_name, str) else ""
            chosen = [c for c in form.getlist("categories") if isinstance(c, str)]
            lists = [n for n in form.getlist("newsletters") if isinstance(n, str)]
        categories = chosen[:50]
        if len(email) > MAX_EMAIL:
            email = ""  # not an address; refused below as one
        now = self.clock()
        consent = self.subscriptions.consent(
            now,
            client=request.client.host if request.client else None,
            origin=request.headers.get("origin") or request.headers.get("referer"),
            method="json" if is_json else "form",
        )
        try:
            outcome = await self.store.run(
                lambda store: self.subscriptions.subscribe(
                    store,
                    email,
                    name=one_line(name)[:MAX_NAME],
                    categories=categories,
                    now=now,
                    consent=consent,
                )
            )
        except InvalidEmail:
            message = "That does not look like an email address."
            if is_json:
                return JSONResponse({"error": message}, status_code=400)
            return self.page(
                request,
                "subscribe.html.j2",
                status=400,
                form=True,
                error=message,
                email=email,
                consent_text=self.config.serve.consent_text,
            )
        wanted = [n for n in lists if isinstance(n, str)][:20]
        if outcome.send_confirmation and outcome.takes_request and wanted and self.newsletters:
            # Only an address waiting for confirmation takes a choice from this public form;
            # someone already subscribed changes theirs through their preferences link.
            address = outcome.subscriber.email
            await self.store.run(
                lambda store: newsletters.choose_from_form(store, address, wanted, self.config)
            )
        if outcome.send_confirmation or outcome.send_notice:
            if outcome.send_confirmation:
                template = CONFIRM_TEMPLATE
                url = self.subscriptions.link(outcome.subscriber, "confirm", now=now)
            else:
                template = NOTICE_TEMPLATE
                url = self.subscriptions.link(outcome.subscriber, "preferences")
            try:
                await self.mailer.send_async(outcome.subscriber, url, now, template)
            except DigestError as exc:
                log.warning("email to %s not sent: %s", outcome.subscriber.email, clean(exc, 300))
        # The same answer whatever the address's state: nothing leaks about who is subscribed.
        if is_json:
            return JSONResponse(
                {"status": "ok", "message": "Check your inbox to confirm."}, status_code=202
            )
        return self.page(request, "check_inbox.html.j2", status=202)

    async def confirm_page(self, request: Request) -> Response:
        """The confirmation link's page: a button that POSTs. A GET changes nothing, so a
        mail scanner following the link confirms nobody."""
        token = request.path_params["token"]
        now = self.clock()
        try:
            subscriber = await self.store.run(
                lambda store: self.subscriptions.check(store, token, "confirm", now)
            )
        except TokenError as exc:
            return self.bad_link(request, exc)
        if subscriber.status == "active":
            return self.page(
                request,
                "confirmed.html.j2",
                email=subscriber.email,
                preferences_url=self.subscriptions.page_path(subscriber, "preferences"),
            )
        return self.page(
            request, "confirm.html.j2", email=subscriber.email, action=token_path("confirm", token)
        )

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        now = self.clock()
        client = request.client.host if request.client else None

        def confirm(store: Any) -> tuple[str, Any]:
            before = self.subscriptions.check(store, token, "confirm", now).status
            return before, self.subscriptions.confirm(store, token, now, client=client)

        try:
            before, subscriber = await self.store.run(confirm)
        except TokenError as exc:
            return self.bad_link(request, exc)
        if self.config.serve.welcome and before != "active" and subscriber.status == "active":
            try:
                await self.mailer.send_async(
                    subscriber,
                    self.subscriptions.link(subscriber, "preferences"),
                    now,
                    WELCOME_TEMPLATE,
                    welcome_context(self.next_issue(now) if self.next_issue else None),
                )
            except DigestError as exc:
                log.warning("welcome email to %s not sent: %s", subscriber.email, exc)
        if subscriber.status != "active":
            return self.page(
                request,
                "error.html.j2",
                status=409,
                title="This address cannot be confirmed",
                message="Mail to it has bounced or been reported. Write to us if that is a "
                "mistake.",
            )
        return self.page(
            request,
            "confirmed.html.j2",
            email=subscriber.email,
            preferences_url=self.subscriptions.page_path(subscriber, "preferences"),
        )

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        now = self.clock()
        try:
            subscriber = await self.store.run(
                lambda store: self.subscriptions.check(store, token, "unsubscribe", now)
            )
        except TokenError as exc:
            return self.bad_link(request, exc)
        return self.page(
            request,
            "unsubscribe.html.j2",
            form=True,
            email=subscriber.email,
            already=subscriber.status != "active" and subscriber.status != "pending",
            action=token_path("unsubscribe", token),
        )

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await request.form()
        one_click = form.get(ONE_CLICK[0]) == ONE_CLICK[1] and CSRF_FIELD not in form
        if not one_click and not self.csrf_ok(request, form):
            return self.refused(request)
        now = self.clock()
        try:
            subscriber = await self.store.run(
                lambda store: self.subscriptions.unsubscribe(store, token, now)
            )
        except TokenError as exc:
            if one_click:
                log.info("refused a one-click unsubscribe: %s", clean(exc))
                return Response(status_code=400)
            return self.bad_link(request, exc)
        if one_click:
            return Response(status_code=200)  # RFC 8058: the answer is for a machine
        return self.page(
            request,
            "unsubscribed.html.j2",
            email=subscriber.email,
            preferences_url=self.subscriptions.page_path(subscriber, "preferences"),
        )

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        now = self.clock()
        saved = False
        if request.method == "POST":
            form = await request.form()
            if not self.csrf_ok(request, form):
                return self.refused(request)
            action = form.get("action")
            chosen = [c for c in form.getlist("categories") if isinstance(c, str)][:50]
            lists = [n for n in form.getlist("newsletters") if isinstance(n, str)][:20]
            try:
                subscriber = await self.store.run(
                    lambda store: self.subscriptions.save_preferences(
                        store,
                        token,
                        now,
                        action=action if isinstance(action, str) else "save",
                        categories=chosen,
                    )
                )
            except TokenError as exc:
                return self.bad_link(request, exc)
            if self.newsletters and lists and action == "save":
                address = subscriber.email
                await self.store.run(
                    lambda store: newsletters.choose_from_form(store, address, lists, self.config)
                )
            if subscriber.status == "unsubscribed" and action == "unsubscribe":
                return self.page(
                    request,
                    "unsubscribed.html.j2",
                    email=subscriber.email,
                    preferences_url=token_path("preferences", token),
                )
            saved = True
        else:
            try:
                subscriber = await self.store.run(
                    lambda store: self.subscriptions.check(store, token, "preferences", now)
                )
            except TokenError as exc:
                return self.bad_link(request, exc)
        chosen_names = set(subscriber.categories)
        address = subscriber.email
        receives = (
            await self.store.run(lambda store: newsletters.receiving(store, address, self.config))
            if self.newsletters
            else ()
        )
        return self.page(
            request,
            "preferences.html.j2",
            form=True,
            email=subscriber.email,
            status=200,
            subscriber_status=subscriber.status,
            chosen=chosen_names,
            every=not chosen_names,
            receives=set(receives),
            saved=saved,
            action=token_path("preferences", token),
        )

    async def webhook(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        body = await request.body()
        now = self.clock()
        try:
            delivery = read_webhook(
                provider,
                request.headers,
                body,
                self.config.serve.webhooks,
                now=now,
                max_depth=self.config.serve.max_json_depth,
            )
        except WebhookError as exc:
            log.info("refused a webhook for %s: %s", clean(provider, 40), clean(exc))
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        events = delivery.events
        if provider == "mailgun" and self.mailgun_events is not None and events:
            seen = await self.store.run(
                lambda store: store.delivery_seen(provider, delivery.delivery_id)
            )
            if seen:
                log.info("webhook %s: a delivery seen before; not applied again", provider)
                return JSONResponse({"events": len(events), "changed": 0, "repeat": True})
            try:
                confirmed = await self.confirm_mailgun(events)
            except DigestError as exc:
                log.warning("webhook mailgun: cannot confirm its events: %s", clean(exc))
                return JSONResponse(
                    {"error": "cannot confirm the events with Mailgun now; retry later"},
                    status_code=503,
                )
            if not confirmed:
                return JSONResponse({"events": len(events), "changed": 0, "unconfirmed": True})
            delivery = replace(delivery, events=confirmed)
        outcome = await self.store.run(
            lambda store: self.subscriptions.apply_delivery(store, delivery, now, keep=self.keep)
        )
        if outcome.repeat:
            log.info("webhook %s: a delivery seen before; not applied again", provider)
            return JSONResponse({"events": len(events), "changed": 0, "repeat": True})
        return JSONResponse({"events": len(events), "changed": outcome.changed})

    async def confirm_mailgun(self, events: list[WebhookEvent]) -> list[WebhookEvent]:
        """The events Mailgun's events API confirms (serve.webhooks.mailgun_confirm)."""
        assert self.mailgun_events is not None
        names = {"bounced": "failed", "complained": "complained", "unsubscribed": "unsubscribed"}
        loop = asyncio.get_running_loop()
        confirmed: list[WebhookEvent] = []
        for event in events:
            found = await loop.run_in_executor(
                None, self.mailgun_events.has_event, event.event_id, names[event.kind], event.email
            )
            if found:
                confirmed.append(event)
            else:
                log.info(
                    "webhook mailgun: %s for %s is not in Mailgun's events; not applied",
                    event.kind,
                    clean(event.email, 100),
                )
        return confirmed

    async def feed(self, request: Request) -> Response:
        path = archive_dir(self.config) / "feed.xml"
        if not path.is_file():
            raise HTTPException(404)
        return FileResponse(path, media_type="application/atom+xml; charset=utf-8")

    # -- errors

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {
            404: "Not found",
            405: "Not allowed",
            413: "Too large",
        }
        title = titles.get(exc.status_code, "Request refused")
        if request.url.path.startswith("/webhooks/") or exc.status_code == 413:
            return PlainTextResponse(title, status_code=exc.status_code)
        return self.page(request, "error.html.j2", status=exc.status_code, title=title, message="")

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.error("error on %s %s", request.method, _route(request), exc_info=exc)
        try:
            html = self.pages.render(
                "error.html.j2",
                sections=self.sections,
                title="Something went wrong",
                message="Please try again in a little while.",
            )
        except TemplateError:
            html = "Something went wrong."
        return HTMLResponse(html, status_code=500)


def _limit_for(config: Config) -> Callable[[str], int]:
    plain = config.serve.max_body_kb * 1024
    webhooks = config.serve.max_webhook_body_kb * 1024

    def limit(path: str) -> int:
        return webhooks if path.startswith("/webhooks/") else plain

    return limit


def create_app(
    config: Config,
    *,
    clock: Clock = utc_now,
    monotonic: Callable[[], float] = time.monotonic,
    mailer: Mailer | None = None,
    next_issue: NextIssue | None = None,
) -> Starlette:
    """The ASGI app. Raises ConfigError when no server secret is set. ``next_issue(now)``
    says when the next issue goes out (the schedule's), for the welcome email."""
    handlers = Handlers(
        config, clock=clock, monotonic=monotonic, mailer=mailer, next_issue=next_issue
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("digest serve: links point at %s", public_base(config))
        try:
            yield
        finally:
            handlers.close()

    routes = [
        Route("/", handlers.home),
        Route("/healthz", handlers.healthz),
        Route("/assets/serve.css", handlers.stylesheet),
        Route("/subscribe", handlers.subscribe_form, methods=["GET"]),
        Route("/subscribe", handlers.subscribe, methods=["POST"]),
        Route(route("confirm"), handlers.confirm_page, methods=["GET"]),
        Route(route("confirm"), handlers.confirm, methods=["POST"]),
        Route(route("unsubscribe"), handlers.unsubscribe_page, methods=["GET"]),
        Route(route("unsubscribe"), handlers.unsubscribe, methods=["POST"]),
        Route(route("preferences"), handlers.preferences, methods=["GET", "POST"]),
        Route("/webhooks/{provider}", handlers.webhook, methods=["POST"]),
        Route(f"{ARCHIVE_PATH}/feed.xml", handlers.feed, methods=["GET"]),
        Mount(ARCHIVE_PATH, app=_Archive(archive_dir(config))),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: handlers.http_error, Exception: handlers.server_error},
        lifespan=lifespan,
    )
    app.state.handlers = handlers
    app.add_middleware(BodyLimit, limit_for=_limit_for(config))
    if config.serve.allowed_origins:
        app.add_middleware(_SubscribeCors, origins=list(config.serve.allowed_origins))
    app.add_middleware(_SecurityHeaders)
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (``getsockname()`` says which)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    config: Config,
    sock: socket.socket,
    *,
    on_ready: Callable[[str], None] | None = None,
    next_issue: NextIssue | None = None,
) -> None:
    """Run the service on ``sock`` until interrupted (SIGINT/SIGTERM end it cleanly)."""
    import uvicorn

    app = create_app(config, next_issue=next_issue)
    host, port = sock.getsockname()[:2]
    public = config.serve.public_url or ""
    if public.startswith("https://") and not config.serve.trusted_proxies:
        log.warning(
            "serve.public_url is https but serve.trusted_proxies is empty: behind a reverse "
            "proxy every client looks like the proxy, and they share one rate limit; list the "
            "proxy's address there (see docs/serve.md)"
        )
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    server_config = uvicorn.Config(
        app,
        log_level="warning",
        # uvicorn's own lines go through the root logger too, so digest serve's safe
        # formatting (digest.safelog) applies to them as well
        log_config=None,
        access_log=False,  # request lines hold tokens; state changes are logged instead
        proxy_headers=bool(config.serve.trusted_proxies),
        forwarded_allow_ips=",".join(config.serve.trusted_proxies) or None,
        server_header=False,
        lifespan="on",
    )
    server = uvicorn.Server(server_config)
    if on_ready is not None:
        original = server.startup

        async def startup(sockets: list[socket.socket] | None = None) -> None:
            await original(sockets=sockets)
            on_ready(url)

        server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])
