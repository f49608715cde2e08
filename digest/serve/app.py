"""``digest serve``: the subscriber-facing web service (Starlette on uvicorn).

Routes::

    GET  /                         → /subscribe
    GET  /subscribe                the subscribe form
    POST /subscribe                form (with CSRF token) or JSON {email, name?, categories?,
                                   newsletters?, language?}; pages speak the reader's language
    GET  /confirm/<token>          a page with a button (GET alone never confirms: mail
                                   scanners follow links)
    POST /confirm/<token>          double opt-in: pending → active (the token is the proof)
    GET  /unsubscribe/<token>      a page with a button (GET alone never unsubscribes)
    POST /unsubscribe/<token>      RFC 8058 one-click (body List-Unsubscribe=One-Click: 200,
                                   empty) or the page's form (CSRF checked)
    GET  /preferences/<token>      choose sections, or unsubscribe
    POST /preferences/<token>
    GET  /keep/<token>             the sunset flow's "keep me subscribed" (serve/keep.py)
    POST /keep/<token>
    GET  /archive/…                out/archive/ as written by `digest build` (index, feed.xml,
                                   <issue-id>/)
    POST /webhooks/<provider>      postmark, resend, sendgrid, mailgun
    GET  /assets/serve.css         the pages' stylesheet
    GET  /assets/zone.js           offers the browser's timezone to the subscribe form
    GET  /healthz                  "ok", for the reverse proxy's checks

The app is built by :func:`create_app` from a config, a clock and (for tests) a mailer;
:class:`Handlers` holds the route handlers. What they do to the subscriber store is
:mod:`digest.serve.subscriptions`, run on the store's own thread
(:mod:`digest.serve.store_worker`); the emails they send are :mod:`digest.serve.mail`.
Run one process: the rate limiter lives in memory and SQLite wants one writer. The ASGI
layers around the routes are :mod:`digest.serve.middleware`; running the app under uvicorn,
with its connection limits, is :mod:`digest.serve.server`.

Nothing a client sends runs long on the event loop: JSON bodies and webhook signatures are
read on a worker thread, the store has its own, and the emails a subscribe asks for are sent
after the answer has gone out (a background task), so the answer takes as long whatever the
address's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask, BackgroundTasks
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route

from digest import i18n
from digest.audience import newsletters
from digest.audience.links import ARCHIVE_PATH, CLICK_ROUTE, public_base, route, token_path
from digest.audience.settings import apply as apply_settings
from digest.audience.subscribers import InvalidEmail, Subscriber
from digest.audience.tokens import TokenError
from digest.config import Config
from digest.content.posts import strip_controls
from digest.delivery.providers.mailgun import Mailgun
from digest.email.archive import archive_dir
from digest.errors import ConfigError, DigestError, TemplateError
from digest.i18n import N_
from digest.safelog import clean
from digest.serve import zones
from digest.serve.clicks import ClickRoute
from digest.serve.first_issue import send_latest, welcome_blocks
from digest.serve.jsonbody import BadJson, loads_bounded, text_field, text_list
from digest.serve.keep import KeepRoute
from digest.serve.leaving import Leaving, named
from digest.serve.mail import (
    CONFIRM_TEMPLATE,
    NOTICE_TEMPLATE,
    WELCOME_TEMPLATE,
    Mailer,
    welcome_context,
)
from digest.serve.middleware import Archive, SecurityHeaders, SubscribeCors
from digest.serve.opens import OPEN_ROUTE, OpenRoute
from digest.serve.pages import Pages
from digest.serve.security import CSRF_COOKIE, CSRF_FIELD, BodyLimit, CsrfGuard, RateLimiter
from digest.serve.shared import SharedRateLimiter
from digest.serve.store_worker import StoreWorker
from digest.serve.subscriptions import SubscribeOutcome, Subscriptions, require_server_secret
from digest.serve.webhooks import WebhookError, WebhookEvent, read_webhook
from digest.store.database import locate

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
NextIssue = Callable[[datetime], datetime]
ONE_CLICK = ("List-Unsubscribe", "One-Click")
NO_STORE = {"Cache-Control": "no-store"}
MAX_EMAIL = 320  # RFC 3696's longest address, give or take
MAX_NAME = 200


def one_line(text: str) -> str:
    """A name as stored: control characters gone, spacing folded (it ends up in mail)."""
    return " ".join(strip_controls(text).split())


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _route(request: Request) -> str:
    """The path for a log line, without the token that follows the route's name."""
    parts = request.url.path.split("/")
    return "/" + parts[1] + ("/…" if len(parts) > 2 and parts[1] != "archive" else "")


def _csrf_cookie(request: Request) -> str:
    """Over https the cookie is ``__Host-`` prefixed: browsers then refuse it from a sibling
    subdomain or over http, so nobody else can plant a cookie/token pair of their own."""
    return f"__Host-{CSRF_COOKIE}" if request.url.scheme == "https" else CSRF_COOKIE


class Handlers:
    """The route handlers, and what they share."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] | None = None,
        mailer: Mailer | None = None,
        next_issue: NextIssue | None = None,
    ) -> None:
        """``monotonic`` (seconds) is the rate limiter's clock; without one it uses the
        database's (several hosts must agree) or ``time.monotonic`` (one process)."""
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
                clock=monotonic,
            )
        else:
            self.limiter = RateLimiter(
                config.serve.subscribe_per_minute,
                config.serve.subscribe_burst,
                clock=monotonic or time.monotonic,
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
        self.leaving = Leaving(self.subscriptions)

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
        reader: Subscriber | None = None,
        asked: str = "",
        **context: Any,
    ) -> HTMLResponse:
        cookie = request.cookies.get(_csrf_cookie(request)) if form else None
        if form and (not cookie or len(cookie) > 64):
            cookie = self.csrf.new_cookie()
        if form:
            assert cookie is not None
            context[CSRF_FIELD] = self.csrf.form_token(cookie)
        language = self.pages.language(
            reader.language if reader else asked, request.headers.get("accept-language")
        )
        for key in ("title", "message"):  # the error page's words, marked N_ where written
            if isinstance(context.get(key), str) and context[key]:
                context[key] = i18n.gettext(language, context[key])
        html = self.pages.render(
            name,
            language=language,
            sections=self.sections,
            newsletters=self.newsletters,
            **context,
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
            title=N_("This form has expired"),
            message=N_("Reload the page and try again."),
        )

    def bad_link(self, request: Request, exc: TokenError) -> HTMLResponse:
        log.info("refused a link on %s: %s", _route(request), clean(exc))
        return self.page(
            request,
            "error.html.j2",
            status=400,
            title=N_("This link does not work"),
            message=N_(
                "It may be incomplete, out of date, or meant for something else. "
                "Use the newest link from your email, or subscribe again."
            ),
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

    async def zone_script(self, request: Request) -> Response:
        return Response(
            self.pages.stylesheet("zone.js"),
            media_type="text/javascript; charset=utf-8",
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
                title=N_("Too many requests"),
                message=N_("Please wait a minute and try again."),
            )
            response.headers["Retry-After"] = retry
            return response
        if is_json:
            try:
                data = await run_in_threadpool(
                    loads_bounded, await request.body(), max_depth=self.config.serve.max_json_depth
                )
                if not isinstance(data, dict):
                    raise BadJson("expected a JSON object")
                email = text_field(data, "email", limit=MAX_EMAIL, required=True)
                name = text_field(data, "name", limit=MAX_NAME)
                zone = text_field(data, "timezone", limit=200)
                chosen = text_list(data, "categories", most=50, limit=200)
                lists = text_list(data, "newsletters", most=20, limit=40)
                given_language: object = text_field(data, "language", limit=40)
                engaged = data.get("engagement") is True
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
            given_language = form.get("language")
            given_zone = form.get("timezone")
            engaged = form.get("engagement") == "yes"
            zone = given_zone if isinstance(given_zone, str) else ""
        categories = chosen[:50]
        language = self.pages.to_store(
            given_language if isinstance(given_language, str) else None,
            request.headers.get("accept-language"),
        )
        if len(email) > MAX_EMAIL:
            email = ""  # not an address; refused below as one
        now = self.clock()
        consent = self.subscriptions.consent(
            now,
            client=request.client.host if request.client else None,
            origin=request.headers.get("origin") or request.headers.get("referer"),
            method="json" if is_json else "form",
            engagement=engaged,
        )
        wanted = lists[:20]

        def work(store: Any) -> SubscribeOutcome:
            # One call on the store's thread and one commit (one fsync), whatever the
            # address's state: the time it takes must not say which state that is.
            with store.atomic():
                outcome = self.subscriptions.subscribe(
                    store,
                    email,
                    name=one_line(name)[:MAX_NAME],
                    categories=categories,
                    now=now,
                    consent=consent,
                    timezone=zone,
                )
                if outcome.action == "suppressed":
                    # nothing else was written: count the mailbox as the others do, so
                    # this commit writes too (an address that is never mailed loses nothing)
                    serve = self.config.serve
                    store.reserve_mail(
                        outcome.subscriber.email,
                        now=now,
                        window=serve.mail_window.total_seconds(),
                        limit=serve.mail_per_address,
                    )
                elif outcome.takes_request and language != outcome.subscriber.language:
                    changed = store.set_language(outcome.subscriber.email, language, now=now)
                    outcome = replace(outcome, subscriber=changed)
            if outcome.send_confirmation and outcome.takes_request and wanted and self.newsletters:
                # Only an address waiting for confirmation takes a choice from this public
                # form; someone subscribed changes theirs through their link. (Its own
                # transaction: a choice of newsletters is a second commit.)
                newsletters.choose_from_form(store, outcome.subscriber.email, wanted, self.config)
            return outcome

        try:
            outcome = await self.store.run(work)
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
        answer = self.subscribed(request, is_json, language)
        # The mail goes after the answer: a provider's delay must not tell a caller which
        # addresses are mailed (new, pending, active) and which are not (complained).
        answer.background = BackgroundTask(self.mail_subscribe, outcome, now)
        return answer

    def subscribed(self, request: Request, is_json: bool, language: str = "") -> Response:
        # The same answer whatever the address's state: nothing leaks about who is subscribed.
        if is_json:
            return JSONResponse(
                {"status": "ok", "message": "Check your inbox to confirm."}, status_code=202
            )
        return self.page(request, "check_inbox.html.j2", status=202, asked=language)

    async def mail_subscribe(self, outcome: SubscribeOutcome, now: datetime) -> None:
        """The confirmation (or "already subscribed" note) a subscribe asked for; run after
        the answer was sent, so a failure is logged, never answered."""
        if outcome.send_confirmation:
            template = CONFIRM_TEMPLATE
            url = self.subscriptions.link(outcome.subscriber, "confirm", now=now)
        elif outcome.send_notice:
            template = NOTICE_TEMPLATE
            url = self.subscriptions.link(outcome.subscriber, "preferences")
        else:
            return
        await self.mail_later(outcome.subscriber, url, now, template)

    async def mail_later(self, subscriber: Any, url: str, now: datetime, *args: Any) -> None:
        try:
            await self.mailer.send_async(subscriber, url, now, *args)
        except DigestError as exc:
            log.warning("email to %s not sent: %s", subscriber.email, clean(exc, 300))
        except Exception:  # the answer has gone: log it here, as the server's fault
            log.exception("email to %s not sent", subscriber.email)

    async def welcome_with_issue(
        self, subscriber: Subscriber, url: str, now: datetime, words: dict[str, str]
    ) -> None:
        """The latest issue with the welcome at its top; the plain welcome if none went out."""
        blocks = welcome_blocks(self.pages, words)
        if not await run_in_threadpool(send_latest, self.config, subscriber, now, blocks):
            await self.mail_later(subscriber, url, now, WELCOME_TEMPLATE, words)

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
                reader=subscriber,
                email=subscriber.email,
                preferences_url=self.subscriptions.page_path(subscriber, "preferences"),
            )
        return self.page(
            request,
            "confirm.html.j2",
            reader=subscriber,
            email=subscriber.email,
            action=token_path("confirm", token),
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
        if subscriber.status != "active":
            return self.page(
                request,
                "error.html.j2",
                status=409,
                title=N_("This address cannot be confirmed"),
                message=N_(
                    "Mail to it has bounced or been reported. Write to us if that is a mistake."
                ),
            )
        answer = self.page(
            request,
            "confirmed.html.j2",
            reader=subscriber,
            email=subscriber.email,
            preferences_url=self.subscriptions.page_path(subscriber, "preferences"),
        )
        if self.config.serve.welcome and before != "active":
            answer.background = tasks = BackgroundTasks()
            url = self.subscriptions.link(subscriber, "preferences")
            words = welcome_context(self.next_issue(now) if self.next_issue else None)
            if self.config.serve.welcome_latest_issue:  # one message: the welcome in the issue
                tasks.add_task(self.welcome_with_issue, subscriber, url, now, words)
            else:
                tasks.add_task(self.mail_later, subscriber, url, now, WELCOME_TEMPLATE, words)
        return answer

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        scope = named(request.query_params)
        now = self.clock()
        try:
            subscriber, newsletter = await self.store.run(
                lambda store: self.leaving.check(store, token, scope, now)
            )
        except TokenError as exc:
            return self.bad_link(request, exc)
        return self.page(
            request,
            "unsubscribe.html.j2",
            reader=subscriber,
            form=True,
            email=subscriber.email,
            already=subscriber.status != "active" and subscriber.status != "pending",
            newsletter=self.config.newsletter_title(newsletter) if newsletter else None,
            action=self.leaving.action(token, scope if newsletter else None),
        )

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        scope = named(request.query_params)
        form = await request.form()
        one_click = form.get(ONE_CLICK[0]) == ONE_CLICK[1] and CSRF_FIELD not in form
        if not one_click and not self.csrf_ok(request, form):
            return self.refused(request)
        now = self.clock()
        everything = form.get("scope") == "all"
        try:
            left = await self.store.run(
                lambda store: self.leaving.unsubscribe(
                    store, token, scope, now, everything=everything
                )
            )
        except TokenError as exc:
            if one_click:
                log.info("refused a one-click unsubscribe: %s", clean(exc))
                return Response(status_code=400)
            return self.bad_link(request, exc)
        if one_click:
            return Response(status_code=200)  # RFC 8058: the answer is for a machine
        subscriber = left.subscriber
        return self.page(
            request,
            "unsubscribed.html.j2",
            reader=subscriber,
            email=subscriber.email,
            left=self.config.newsletter_title(left.newsletter) if left.newsletter else None,
            still=self.leaving.titles(left.still),
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
            zone = zones.posted(form.get("timezone") if action == "save" else None)
            if zone is False:
                title, message = zones.REFUSED
                return self.page(request, "error.html.j2", status=400, title=title, message=message)
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
            frequency = form.get("frequency")
            if action == "save" and isinstance(frequency, str):
                address, chosen_frequency = subscriber.email, frequency
                await self.store.run(
                    lambda store: self.subscriptions.rhythm(store, address, now, chosen_frequency)
                )
            if zone:
                address, zone_name = subscriber.email, zone
                await self.store.run(
                    lambda store: zones.save_zone(store, address, zone_name, now, self.config)
                )
            if action == "save" and self.pages.common["ask_engagement"]:
                agree, who = form.get("engagement") == "yes", subscriber.email
                await self.store.run(lambda s: self.subscriptions.engage(s, who, agree, now))
            if self.newsletters and lists and action == "save":
                address = subscriber.email
                await self.store.run(
                    lambda store: newsletters.choose_from_form(store, address, lists, self.config)
                )
            given = form.get("language")
            if isinstance(given, str) and action == "save" and i18n.spoken(given):
                address, tag = subscriber.email, self.pages.to_store(given, None)
                subscriber = await self.store.run(
                    lambda store: apply_settings(store, address, now=now, language=tag)
                )
            if subscriber.status == "unsubscribed" and action == "unsubscribe":
                return self.page(
                    request,
                    "unsubscribed.html.j2",
                    reader=subscriber,
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
        rhythm = await self.store.run(lambda store: self.subscriptions.rhythm(store, address, now))
        agreed = await self.store.run(lambda s: self.subscriptions.engage(s, address, None, now))
        return self.page(
            request,
            "preferences.html.j2",
            reader=subscriber,
            form=True,
            email=subscriber.email,
            status=200,
            subscriber_status=subscriber.status,
            chosen=chosen_names,
            every=not chosen_names,
            receives=set(receives),
            frequency=rhythm.frequency,
            **zones.context(rhythm, self.config),
            # a switch not landed yet: the week in progress keeps the old cadence
            frequency_since=(
                rhythm.since.isoformat()
                if rhythm.since and rhythm.since > now.astimezone(self.config.tz).date()
                else None
            ),
            saved=saved,
            engagement=agreed,
            languages=i18n.names(i18n.catalogues(), self.pages.language(subscriber.language)),
            action=token_path("preferences", token),
        )

    async def webhook(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        body = await request.body()
        now = self.clock()
        try:
            # signatures and JSON are checked on a worker thread: a 1 MB body must not stop
            # the event loop (and every other request) while it is read
            delivery = await run_in_threadpool(
                read_webhook,
                provider,
                request.headers,
                body,
                self.config.serve.webhooks,
                now=now,
                max_depth=self.config.serve.max_json_depth,
            )
        except WebhookError as exc:
            log.info("refused a webhook for %s: %s", clean(provider, 40), clean(exc))
            if exc.spent:
                # Its signature verified: that signature is used up, whatever the body was,
                # so nobody can send it again with a body of their own.
                spent = exc.spent
                await self.store.run(
                    lambda store: store.claim_delivery(provider, spent, now=now, keep=self.keep)
                )
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
                # recorded all the same: the signature is spent (see above)
                await self.store.run(
                    lambda store: self.subscriptions.apply_delivery(
                        store, replace(delivery, events=[]), now, keep=self.keep
                    )
                )
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
            404: N_("Not found"),
            405: N_("Not allowed"),
            413: N_("Too large"),
        }
        title = titles.get(exc.status_code, N_("Request refused"))
        if request.url.path.startswith("/webhooks/") or exc.status_code == 413:
            return PlainTextResponse(title, status_code=exc.status_code)
        return self.page(request, "error.html.j2", status=exc.status_code, title=title, message="")

    async def client_left(self, request: Request, exc: Exception) -> Response:
        """The client went away (or was cut off by a read deadline) while sending its body:
        nobody is left to answer, and nothing is worth logging."""
        return Response(status_code=400)

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
    monotonic: Callable[[], float] | None = None,
    mailer: Mailer | None = None,
    next_issue: NextIssue | None = None,
) -> Starlette:
    """The ASGI app. Raises ConfigError when no server secret is set. ``next_issue(now)``
    says when the next issue goes out (the schedule's), for the welcome email."""
    handlers = Handlers(
        config, clock=clock, monotonic=monotonic, mailer=mailer, next_issue=next_issue
    )

    clicks = ClickRoute(config, clock=clock, monotonic=monotonic or time.monotonic)
    keep = KeepRoute(handlers)
    opens = OpenRoute(config, clicks.keys, clicks.counter, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("digest serve: links point at %s", public_base(config))
        clicks.start()
        try:
            yield
        finally:
            await clicks.stop()
            handlers.close()

    routes = [  # the counted links first: the routes most requests take
        Route(CLICK_ROUTE, clicks.follow, methods=["GET", "HEAD"]),
        Route(OPEN_ROUTE, opens.pixel, methods=["GET", "HEAD"]),
        Route("/", handlers.home),
        Route("/healthz", handlers.healthz),
        Route("/assets/serve.css", handlers.stylesheet),
        Route("/assets/zone.js", handlers.zone_script),
        Route("/subscribe", handlers.subscribe_form, methods=["GET"]),
        Route("/subscribe", handlers.subscribe, methods=["POST"]),
        Route(route("confirm"), handlers.confirm_page, methods=["GET"]),
        Route(route("confirm"), handlers.confirm, methods=["POST"]),
        Route(route("unsubscribe"), handlers.unsubscribe_page, methods=["GET"]),
        Route(route("unsubscribe"), handlers.unsubscribe, methods=["POST"]),
        Route(route("preferences"), handlers.preferences, methods=["GET", "POST"]),
        Route(route("keep"), keep.page, methods=["GET"]),
        Route(route("keep"), keep.keep, methods=["POST"]),
        Route("/webhooks/{provider}", handlers.webhook, methods=["POST"]),
        Route(f"{ARCHIVE_PATH}/feed.xml", handlers.feed, methods=["GET"]),
        Mount(ARCHIVE_PATH, app=Archive(archive_dir(config))),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: handlers.http_error,
            ClientDisconnect: handlers.client_left,
            Exception: handlers.server_error,
        },
        lifespan=lifespan,
    )
    app.state.handlers = handlers
    app.state.clicks = clicks
    app.add_middleware(BodyLimit, limit_for=_limit_for(config))
    if config.serve.allowed_origins:
        app.add_middleware(SubscribeCors, origins=list(config.serve.allowed_origins))
    app.add_middleware(SecurityHeaders)
    return app
