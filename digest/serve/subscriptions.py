"""What the web service does to the subscriber store, without any HTTP.

Every change runs on one thread that owns the store's SQLite connection
(:class:`~digest.serve.store_worker.StoreWorker`), so writes are serialised and none is
lost however many requests arrive at once; checking a token and acting on it happen in the
same call, so nothing can change in between. Every change is logged (never a token or a secret).

Status rules are the status model's (:mod:`digest.audience.status`); what the service adds:

- subscribe: a new address becomes ``pending`` and gets a confirmation email; a pending
  one gets the email again and nothing stored changes (not its name, sections, lists or
  consent: a pending subscription is its owner's); an ``unsubscribed`` or ``bounced`` one
  becomes ``pending`` and gets the email;
  an ``active`` one is unchanged and gets a short "you are already subscribed" email with
  its preferences link; a ``complained`` one is never mailed. The answer to the client is
  the same in every case.
- confirm (cause ``serve_confirm``, a POST: a GET only shows the button): ``pending`` →
  ``active``, nothing else (a link mailed before an unsubscribe or complaint stays dead).
- mail limit: at most ``serve.mail_per_address`` emails to one mailbox within
  ``serve.mail_window`` (counted in the store, so across restarts and processes); past it a
  subscribe gets the same answer and no mail. A confirmation holds no text from the request.
- webhook events (``webhook_*``) only make a status stronger, so a late bounce never undoes
  a complaint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from digest.audience.engagement import reader, with_engagement
from digest.audience.keys import link_keys
from digest.audience.lifecycle import address_form, erasure_key, record_confirmation
from digest.audience.links import token_path, token_url
from digest.audience.records import Consent, iso, set_details
from digest.audience.rhythm import FREQUENCIES, Rhythm, Rhythms, zone_or_default
from digest.audience.status import WEBHOOK_CAUSES, Cause, service_mail
from digest.audience.subscribers import Categories, InvalidEmail, Subscriber, SubscriberStore
from digest.audience.tokens import (
    Subject,
    make_token,
    signing_key,
    verify_token,
)
from digest.config import Config
from digest.delivery.engagement import choose
from digest.email.clicklinks import counts_readers
from digest.errors import StoreError
from digest.safelog import clean, log_change
from digest.serve.webhooks import WebhookDelivery, WebhookEvent

log = logging.getLogger(__name__)


def require_server_secret(config: Config) -> bytes:
    """The key that signs new links: the operator's secret, or the key file's current key
    (created once on first use; see :mod:`digest.audience.keys`)."""
    return link_keys(config).signing


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
    def takes_request(self) -> bool:
        """Whether this request's consent and choices are kept: only for a new address or
        one coming back, never for a pending one (that subscription is its owner's)."""
        return self.action in ("created", "reconfirm")

    @property
    def send_notice(self) -> bool:
        """An active subscriber is told so (with their preferences link), so that every
        address that can receive mail gets one: the answer and the work look the same."""
        return not self.limited and self.action == "active"


@dataclass(frozen=True)
class WebhookOutcome:
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
        self,
        now: datetime,
        *,
        client: str | None,
        origin: str | None,
        method: str,
        engagement: bool = False,
    ) -> Consent:
        """What a subscribe request agreed to: when, from where, to which text (and, with
        ``analytics.clicks: per_subscriber``, whether to per-reader engagement)."""
        consent = Consent(
            at=iso(now),
            ip=self.stored_address(client),
            origin=(origin or "")[:500] or None,
            text=self.config.serve.consent_text,
            method=method,
        )
        if engagement and counts_readers(self.config):
            consent = with_engagement(consent, now, "serve:subscribe")
        return consent

    def engage(self, store: SubscriberStore, email: str, agree: bool | None, now: datetime) -> bool:
        """Whether the reader agrees to per-reader engagement, after recording ``agree``
        (None: only asked). A no deletes their per-reader click rows."""
        if agree is not None and counts_readers(self.config):
            choose(self.config, store, email, agree=agree, now=now, origin="serve:preferences")
        found = reader(store.connection, email)
        return found is not None and found.consenting

    # -- tokens

    def key_for(self, store: SubscriberStore) -> Callable[[Subject], list[bytes] | None]:
        def key(subject: Subject) -> list[bytes] | None:
            found = store.named_by(subject)
            if found is None:
                return None
            return [signing_key(found.secret, server) for server in self.verifying]

        return key

    def token(
        self, subscriber: Subscriber, purpose: str, *, expires_at: datetime | None = None
    ) -> str:
        """A link token naming the subscriber by handle: no address in any URL."""
        key = signing_key(subscriber.secret, self.server)
        return make_token(purpose, subscriber.handle, key, expires_at=expires_at)

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
        subject = verify_token(token, purpose, self.key_for(store), now=now)
        found = store.named_by(subject)
        if found is None:  # removed between the two reads: impossible on one thread
            raise StoreError(f"no subscriber {subject}")
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
        timezone: str | None = None,
    ) -> SubscribeOutcome:
        """Raises InvalidEmail for an address that is not one. ``consent`` is recorded for
        a request that leads to a confirmation email (the confirmation completes it).
        ``timezone`` (the form's, from the browser) is kept for a new subscriber when it is
        a zone digest knows; anything else leaves the schedule's."""
        outcome = self._subscribe(store, email, name=name, categories=categories, now=now)
        if outcome.action == "suppressed":
            return outcome
        zone = zone_or_default(timezone)
        if outcome.action == "created" and zone is not None:
            Rhythms(store).imported(outcome.subscriber, None, zone)
        serve = self.config.serve
        if not store.reserve_mail(
            outcome.subscriber.email,
            now=now,
            window=serve.mail_window.total_seconds(),
            limit=serve.mail_per_address,
        ):
            log_change("mail_limited", email=outcome.subscriber.email, limit=serve.mail_per_address)
            return SubscribeOutcome(outcome.action, outcome.subscriber, limited=True)
        if consent is not None and outcome.takes_request:
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
        complained = store.mailbox_status(email, "complained")
        if complained is not None and service_mail("complained") is None:
            # the mailbox complained under another spelling (Gmail dots, a +tag, case):
            # suppressions compare canonical mailboxes, so it is not mailed either
            log.info(
                "subscribe: %s reaches a mailbox that complained; not mailed", clean(email, 100)
            )
            return SubscribeOutcome("suppressed", existing or complained)
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
            # a pending subscription is its owner's: a repeat request only re-sends the
            # confirmation (within the limits); name, sections, lists and consent stay
            log.info("subscribe: %s is pending; asked to confirm again", existing.email)
            return SubscribeOutcome("pending", existing)
        mail = service_mail(existing.status)
        if mail == "confirm":
            again, _ = store.change_status(
                existing.email, "pending", cause=Cause.SERVE_SUBSCRIBE, now=now
            )
            log.info("subscribe: %s was %s; asked to confirm", existing.email, existing.status)
            return SubscribeOutcome("reconfirm", again)
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

    def rhythm(
        self, store: SubscriberStore, email: str, now: datetime, frequency: str | None = None
    ) -> Rhythm:
        """The reader's cadence, after switching to ``frequency`` when it is one digest
        knows (public input: anything else changes nothing)."""
        if frequency in FREQUENCIES:
            return (
                Rhythms(store).set(email, frequency=frequency, now=now, config=self.config).rhythm
            )
        found = store.get(email)
        return Rhythm() if found is None else Rhythms(store).of(found)

    def apply_delivery(
        self, store: SubscriberStore, delivery: WebhookDelivery, now: datetime, *, keep: float
    ) -> WebhookOutcome:
        """Record the delivery and apply its events, together (one savepoint): a delivery
        the store has seen before — from this process or another, before a restart or a
        moment ago — is not applied again."""
        with store.atomic():
            if not store.claim_delivery(
                delivery.provider, delivery.delivery_id, now=now, keep=keep
            ):
                return WebhookOutcome(repeat=True, changed=0)
            changed = sum(self.apply_event(store, event, now) for event in delivery.events)
        log_change(
            "webhook",
            provider=delivery.provider,
            events=len(delivery.events),
            changed=changed,
        )
        return WebhookOutcome(repeat=False, changed=changed)

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
