"""What the web service does to the subscriber store, without any HTTP.

Every change runs on one thread that owns the store's SQLite connection
(:class:`StoreWorker`), so writes are serialised and none is lost however many requests
arrive at once; checking a token and acting on it happen in the same call, so nothing can
change in between. Every change is logged (never a token or a secret).

Status rules:

Status rules are the status model's (:mod:`digest.audience.status`); what the service adds:

- subscribe: a new address becomes ``pending`` and gets a confirmation email; a pending,
  ``unsubscribed`` or ``bounced`` one gets the email and keeps its status until it confirms;
  an ``active`` one is unchanged and gets a short "you are already subscribed" email with
  its preferences link; a ``complained`` one is never mailed. The answer to the client is
  the same in every case.
- confirm (cause ``serve_confirm``, a POST: a GET only shows the button): any status →
  ``active``.
- mail limit: at most ``serve.mail_per_address`` emails to one mailbox within
  ``serve.mail_window`` (counted in the store, so across restarts and processes); past it a
  subscribe gets the same answer and no mail. A confirmation holds no text from the request.
- webhook events (``webhook_*``) only make a status stronger, so a late bounce never undoes
  a complaint.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Any, Literal, TypeVar, cast

from digest.audience.keys import link_keys
from digest.audience.lifecycle import address_form, erasure_key, record_confirmation
from digest.audience.links import token_path, token_url
from digest.audience.records import Consent, iso, set_details
from digest.audience.status import WEBHOOK_CAUSES, Cause, service_mail
from digest.audience.subscribers import Categories, InvalidEmail, Subscriber, SubscriberStore
from digest.audience.tokens import (
    TokenError,
    make_token,
    signing_key,
    verify_token,
)
from digest.config import Config
from digest.delivery.providers.base import Batch, Provider, Recipient, Result, idempotency_key
from digest.delivery.providers.registry import make_provider
from digest.errors import StoreError
from digest.safelog import clean, log_change
from digest.serve.pages import Pages
from digest.serve.webhooks import Delivery, WebhookEvent
from digest.store.database import Target

log = logging.getLogger(__name__)

T = TypeVar("T")

CONFIRM_ISSUE = "confirmations"
"""The provider sees confirmation emails as this issue (outbox: out/confirmations/outbox/)."""
WELCOME_ISSUE = "welcome"
"""… and welcome emails as this one (outbox: out/welcome/outbox/)."""

CONFIRM_TEMPLATE = "confirm_email"
NOTICE_TEMPLATE = "already_subscribed_email"
WELCOME_TEMPLATE = "welcome_email"


def require_server_secret(config: Config) -> bytes:
    """The key that signs new links: the operator's secret, or the key file's current key
    (created once on first use; see :mod:`digest.audience.keys`)."""
    return link_keys(config).signing


class StoreWorker:
    """One thread that owns the subscriber store; ``await run(fn)`` calls ``fn(store)`` there.

    Calls that queue up while the thread is busy are run together in one transaction (group
    commit): one fsync for the lot instead of one each, and every caller gets its answer only
    after that commit. A call that fails with :data:`CLEAN_FAILURES` (raised before it writes
    anything) fails alone; any other failure rolls the batch back and its calls are run again
    one by one, so one bad call never takes another's write with it.
    """

    def __init__(self, path: Target, *, max_batch: int = 64) -> None:
        self.path = path
        self.max_batch = max_batch
        self.commits = 0  # how many commits carried more than one call (for the curious)
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        opened: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._loop, args=(opened,), name="digest-store", daemon=True
        )
        self._thread.start()
        opened.result()  # a bad path fails here, at start-up, not on the first request

    def call(self, fn: Callable[[SubscriberStore], T]) -> T:
        """Run ``fn`` on the store's thread and wait (for code that is not async)."""
        future: Future[Any] = Future()
        self._queue.put((fn, future))
        return cast(T, future.result())

    async def run(self, fn: Callable[[SubscriberStore], T]) -> T:
        future: Future[Any] = Future()
        self._queue.put((fn, future))
        return cast(T, await asyncio.wrap_future(future))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _loop(self, opened: Future[None]) -> None:
        try:
            store = SubscriberStore(self.path)
        except BaseException as exc:
            opened.set_exception(exc)
            return
        opened.set_result(None)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        following = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if following is None:
                        stopping = True
                        break
                    batch.append(following)
                self._run_batch(store, batch)
        finally:
            store.close()

    @staticmethod
    def _run_one(store: SubscriberStore, call: _Call) -> None:
        fn, future = call
        try:
            future.set_result(fn(store))
        except BaseException as exc:
            future.set_exception(exc)

    def _run_batch(self, store: SubscriberStore, batch: list[_Call]) -> None:
        if len(batch) == 1:
            self._run_one(store, batch[0])
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            with store.transaction():
                for fn, _ in batch:
                    try:
                        outcomes.append((True, fn(store)))
                    except CLEAN_FAILURES as exc:
                        outcomes.append((False, exc))
        except BaseException:
            log.debug("a batch of %d store calls failed; running them one by one", len(batch))
            for call in batch:
                self._run_one(store, call)
            return
        self.commits += 1
        for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


_Call = tuple[Callable[[SubscriberStore], Any], "Future[Any]"]
CLEAN_FAILURES: tuple[type[Exception], ...] = (TokenError, InvalidEmail)
"""Failures raised before a call writes anything: they do not spoil the calls batched with it."""


# --------------------------------------------------------------------------- operations

SubscribeAction = Literal["created", "pending", "reconfirm", "active", "suppressed"]


@dataclass(frozen=True)
class SubscribeOutcome:
    action: SubscribeAction
    subscriber: Subscriber
    limited: bool = False  # the mailbox had its serve.mail_per_address already

    @property
    def send_confirmation(self) -> bool:
        return not self.limited and self.action in ("created", "pending", "reconfirm")

    @property
    def send_notice(self) -> bool:
        """An active subscriber is told so (with their preferences link), so that every
        address that can receive mail gets one: the answer and the work look the same."""
        return not self.limited and self.action == "active"


@dataclass(frozen=True)
class DeliveryOutcome:
    """What applying one webhook delivery did."""

    repeat: bool  # seen before: nothing applied
    changed: int


class Subscriptions:
    """The operations the routes call; all of them run on the store's thread."""

    def __init__(self, config: Config, server_secret: bytes) -> None:
        self.config = config
        self.server = server_secret
        # links signed before a `digest keys rotate` keep verifying for the grace period
        self.verifying = (
            server_secret,
            *tuple(k for k in link_keys(config).verifying if k != server_secret),
        )
        self.categories = Categories.from_config(config)
        self.erasure_key = erasure_key(config)
        self.stored_address = address_form(config)

    def consent(
        self, now: datetime, *, client: str | None, origin: str | None, method: str
    ) -> Consent:
        """What a subscribe request agreed to: when, from where, to which text."""
        return Consent(
            at=iso(now),
            ip=self.stored_address(client),
            origin=(origin or "")[:500] or None,
            text=self.config.serve.consent_text,
            method=method,
        )

    # -- tokens

    def key_for(self, store: SubscriberStore) -> Callable[[str], list[bytes] | None]:
        def key(email: str) -> list[bytes] | None:
            found = store.get(email)
            if found is None:
                return None
            return [signing_key(found.secret, server) for server in self.verifying]

        return key

    def token(
        self, subscriber: Subscriber, purpose: str, *, expires_at: datetime | None = None
    ) -> str:
        key = signing_key(subscriber.secret, self.server)
        return make_token(purpose, subscriber.email, key, expires_at=expires_at)

    def link(self, subscriber: Subscriber, purpose: str, *, now: datetime | None = None) -> str:
        expires = None
        if purpose == "confirm" and now is not None:
            expires = now + self.config.serve.confirm_ttl
        return token_url(self.config, purpose, self.token(subscriber, purpose, expires_at=expires))

    def page_path(self, subscriber: Subscriber, purpose: str) -> str:
        """The same link as a path on this service, for its own pages."""
        return token_path(purpose, self.token(subscriber, purpose))

    def check(self, store: SubscriberStore, token: str, purpose: str, now: datetime) -> Subscriber:
        """The subscriber a valid token names; raises TokenError otherwise."""
        email = verify_token(token, purpose, self.key_for(store), now=now)
        found = store.get(email)
        if found is None:  # removed between the two reads: impossible on one thread
            raise StoreError(f"no subscriber {email}")
        return found

    # -- changes

    def subscribe(
        self,
        store: SubscriberStore,
        email: str,
        *,
        name: str,
        categories: Sequence[str],
        now: datetime,
        consent: Consent | None = None,
    ) -> SubscribeOutcome:
        """Raises InvalidEmail for an address that is not one. ``consent`` is recorded for
        a request that leads to a confirmation email (the confirmation completes it)."""
        outcome = self._subscribe(store, email, name=name, categories=categories, now=now)
        if outcome.action == "suppressed":
            return outcome
        serve = self.config.serve
        if not store.reserve_mail(
            outcome.subscriber.email,
            now=now,
            window=serve.mail_window.total_seconds(),
            limit=serve.mail_per_address,
        ):
            log_change("mail_limited", email=outcome.subscriber.email, limit=serve.mail_per_address)
            return SubscribeOutcome(outcome.action, outcome.subscriber, limited=True)
        if consent is not None and outcome.send_confirmation:
            set_details(
                store.connection,
                outcome.subscriber.email,
                consent=consent,
                source="serve" if outcome.action == "created" else None,
            )
        return outcome

    def _subscribe(
        self,
        store: SubscriberStore,
        email: str,
        *,
        name: str,
        categories: Sequence[str],
        now: datetime,
    ) -> SubscribeOutcome:
        known, unknown = self.categories.canonical(categories)
        if unknown:
            log.info("subscribe: ignoring unknown categories %s", clean(", ".join(unknown), 100))
        existing = store.get(email)
        if existing is None:
            created, _ = store.add(
                email,
                name=name,
                categories=known,
                status="pending",
                now=now,
                cause=Cause.SERVE_SUBSCRIBE,
            )
            log.info("subscribe: %s added as pending", created.email)
            return SubscribeOutcome("created", created)
        if existing.status == "pending":
            updated, _ = store.add(
                email,
                name=name or existing.name,
                categories=known,
                status="pending",
                now=now,
                cause=Cause.SERVE_SUBSCRIBE,
            )
            log.info("subscribe: %s is pending; asked to confirm again", updated.email)
            return SubscribeOutcome("pending", updated)
        mail = service_mail(existing.status)
        if mail == "confirm":
            log.info("subscribe: %s is %s; asked to confirm", existing.email, existing.status)
            return SubscribeOutcome("reconfirm", existing)
        if mail == "notice":
            log.info("subscribe: %s is already active; nothing changed", existing.email)
            return SubscribeOutcome("active", existing)
        log.info("subscribe: %s is %s; not mailed", existing.email, existing.status)
        return SubscribeOutcome("suppressed", existing)

    def confirm(
        self, store: SubscriberStore, token: str, now: datetime, *, client: str | None = None
    ) -> Subscriber:
        subscriber = self.check(store, token, "confirm", now)
        subscriber, change = store.change_status(
            subscriber.email, "active", cause=Cause.SERVE_CONFIRM, now=now
        )
        if change.changed:
            record_confirmation(
                store,
                subscriber.email,
                now=now,
                erasure_key=self.erasure_key,
                confirm_ip=self.stored_address(client),
            )
            log.info("confirm: %s is now active", subscriber.email)
        return subscriber

    def unsubscribe(
        self, store: SubscriberStore, token: str, now: datetime, *, purpose: str = "unsubscribe"
    ) -> Subscriber:
        subscriber = self.check(store, token, purpose, now)
        return self._unsubscribe(store, subscriber, now, how=purpose)

    def _unsubscribe(
        self, store: SubscriberStore, subscriber: Subscriber, now: datetime, *, how: str
    ) -> Subscriber:
        changed, change = store.change_status(
            subscriber.email, "unsubscribed", cause=Cause.SERVE_UNSUBSCRIBE, now=now
        )
        if change.changed:
            log.info("unsubscribe (%s): %s is now unsubscribed", how, changed.email)
        return changed

    def save_preferences(
        self,
        store: SubscriberStore,
        token: str,
        now: datetime,
        *,
        action: str,
        categories: Sequence[str],
    ) -> Subscriber:
        subscriber = self.check(store, token, "preferences", now)
        if action == "unsubscribe":
            return self._unsubscribe(store, subscriber, now, how="preferences")
        known, _ = self.categories.canonical(categories)
        if set(known) >= {s.name for s in self.config.categories.sections}:
            known = ()  # every section chosen: the same as none, and new sections come too
        if known != subscriber.categories:
            subscriber = store.set_categories(subscriber.email, known, now=now)
            log.info(
                "preferences: %s now gets %s",
                subscriber.email,
                ", ".join(known) if known else "every section",
            )
        if action == "resubscribe":
            subscriber, change = store.change_status(
                subscriber.email, "active", cause=Cause.SERVE_RESUBSCRIBE, now=now
            )
            if change.changed:
                log.info("preferences: %s subscribed again", subscriber.email)
        return subscriber

    def apply_delivery(
        self, store: SubscriberStore, delivery: Delivery, now: datetime, *, keep: float
    ) -> DeliveryOutcome:
        """Record the delivery and apply its events, together (one savepoint): a delivery
        the store has seen before — from this process or another, before a restart or a
        moment ago — is not applied again."""
        with store.atomic():
            if not store.claim_delivery(
                delivery.provider, delivery.delivery_id, now=now, keep=keep
            ):
                return DeliveryOutcome(repeat=True, changed=0)
            changed = sum(self.apply_event(store, event, now) for event in delivery.events)
        log_change(
            "webhook",
            provider=delivery.provider,
            events=len(delivery.events),
            changed=changed,
        )
        return DeliveryOutcome(repeat=False, changed=changed)

    def apply_event(self, store: SubscriberStore, event: WebhookEvent, now: datetime) -> bool:
        """Apply one webhook event; True when a status changed."""
        try:
            found = store.get(event.email)
        except InvalidEmail:
            found = None
        if found is None:
            log.info("webhook %s: %s for an unknown address ignored", event.provider, event.kind)
            return False
        _, change = store.change_status(
            found.email, event.kind, cause=WEBHOOK_CAUSES[event.kind], now=now
        )
        if not change.changed:
            return False
        log.info(
            "webhook %s: %s is now %s (%s)",
            event.provider,
            found.email,
            event.kind,
            clean(event.detail, 80),
        )
        return True


# --------------------------------------------------------------------------- confirmation


@dataclass(frozen=True)
class ConfirmationEmail:
    """The confirmation message; has what a provider needs from a composed email."""

    issue_id: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    from_address: str


def render_message(
    composed: Any,
    *,
    to: str,
    values: Any = None,
    message_id: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) for one recipient."""
    message = EmailMessage()
    message["From"] = composed.from_address
    message["To"] = to
    message["Subject"] = composed.subject
    if date is not None:
        message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id or make_msgid()
    for name, value in composed.headers.items():
        message[name] = value
    message.set_content(composed.text)
    message.add_alternative(composed.html, subtype="html")
    return message


class Mailer:
    """Sends confirmation emails through the configured provider (outbox by default)."""

    def __init__(self, config: Config, pages: Pages, provider: Provider | None = None) -> None:
        self.config = config
        self.pages = pages
        self.provider = provider or make_provider(config)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-mail")

    def compose(
        self,
        subscriber: Subscriber,
        url: str,
        template: str = CONFIRM_TEMPLATE,
        extra: dict[str, Any] | None = None,
    ) -> ConfirmationEmail:
        """``template``: confirm_email (``url`` confirms), already_subscribed_email or
        welcome_email (``url`` is the preferences page); ``extra`` adds to the context."""
        # A confirmation goes to an address nobody has confirmed yet: it holds nothing the
        # request wrote (no name), so a stranger cannot put words in mail from the site.
        name = subscriber.name if template != CONFIRM_TEMPLATE else ""
        context = {"url": url, "email": subscriber.email, "name": name}
        context.update(extra or {})
        sender = self.config.sender
        headers = {"Auto-Submitted": "auto-generated"}
        if sender.reply_to:
            headers["Reply-To"] = sender.reply_to
        return ConfirmationEmail(
            issue_id=WELCOME_ISSUE if template == WELCOME_TEMPLATE else CONFIRM_ISSUE,
            subject=self.pages.render(f"{template}.subject.j2", **context).strip(),
            html=self.pages.render(f"{template}.html.j2", **context),
            text=self.pages.render(f"{template}.txt.j2", **context),
            headers=headers,
            from_address=formataddr((sender.from_name, sender.from_email)),
        )

    def send(
        self,
        subscriber: Subscriber,
        url: str,
        now: datetime,
        template: str = CONFIRM_TEMPLATE,
        extra: dict[str, Any] | None = None,
    ) -> Result:
        email = self.compose(subscriber, url, template, extra)
        domain = parseaddr(self.config.sender.from_email)[1].rpartition("@")[2]
        recipient = Recipient(
            subscriber_id=subscriber.id,
            email=subscriber.email,
            values={},
            message_id=make_msgid("confirm", domain=domain or None),
        )
        batch = Batch(
            issue_id=email.issue_id,
            variant="confirm",
            composed=email,
            recipients=(recipient,),
            idempotency_key=idempotency_key(
                f"{email.issue_id}-{now.isoformat()}", "confirm", [subscriber.id]
            ),
            renderer=render_message,
            date=now,
        )
        outcome: Result | None = None
        for event in self.provider.send(batch):
            if isinstance(event, Result):
                outcome = event
        if outcome is None:
            outcome = Result(subscriber.id, "failed-retryable", reason="no result from provider")
        log_change("mail", template=template, email=subscriber.email, state=outcome.state)
        if outcome.state != "sent":
            log.warning(
                "%s to %s: %s %s",
                template.replace("_", " "),
                subscriber.email,
                outcome.state,
                clean(outcome.reason or "", 300),
            )
        return outcome

    async def send_async(
        self,
        subscriber: Subscriber,
        url: str,
        now: datetime,
        template: str = CONFIRM_TEMPLATE,
        extra: dict[str, Any] | None = None,
    ) -> Result:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.send, subscriber, url, now, template, extra
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.provider.close()


# --------------------------------------------------------------------------- welcome


def welcome_context(next_issue: datetime | None) -> dict[str, str]:
    """The welcome email's words for when the next issue goes out (in the schedule's zone)."""
    if next_issue is None:
        return {"next_issue": "", "next_issue_iso": ""}
    zone = str(next_issue.tzinfo)
    return {
        "next_issue": f"{next_issue:%A} {next_issue.day} {next_issue:%B %Y} at "
        f"{next_issue:%H:%M} ({zone})",
        "next_issue_iso": next_issue.isoformat(),
    }
