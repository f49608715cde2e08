"""Unsubscribing from one newsletter, when a config has several.

Each newsletter's mail carries an unsubscribe link that names it, sealed with the
subscriber's key (``/unsubscribe/<token>?newsletter=links&seal=...``; see
:func:`digest.email.message.recipient_values`). A one-click POST to it (RFC 8058) ends that
newsletter only; the page it opens offers that, and "all newsletters" as a second button.
Leaving the last newsletter someone receives is unsubscribing: their status becomes
``unsubscribed`` (cause ``serve_unsubscribe``) and their choice stays as it was.

A seal that does not hold is a bad link; a sealed name the config no longer has (the
newsletter was removed) is read as the whole unsubscribe the link asked for at the time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from digest.audience import newsletters
from digest.audience.links import token_path, with_query
from digest.audience.subscribers import Subscriber, SubscriberStore
from digest.audience.tokens import TokenError, seal_holds, signing_key
from digest.serve.subscriptions import Subscriptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Left:
    """What an unsubscribe did: the subscriber after it, the newsletter ended alone (None:
    everything was), and the newsletters they still receive."""

    subscriber: Subscriber
    newsletter: str | None = None
    still: tuple[str, ...] = ()


def named(query: Mapping[str, str]) -> tuple[str, str] | None:
    """(newsletter, seal) from a link's query, or None for a link that names none."""
    name, seal = query.get("newsletter"), query.get("seal")
    if not name or not seal:
        return None
    return name[:100], seal[:100]


class Leaving:
    """The unsubscribe page's and POST's work on the store's thread."""

    def __init__(self, subscriptions: Subscriptions) -> None:
        self.subscriptions = subscriptions
        self.config = subscriptions.config

    def newsletter(self, subscriber: Subscriber, scope: tuple[str, str] | None) -> str | None:
        """The newsletter a link's query names, its seal checked; None: the link names none,
        or one the config no longer has."""
        if scope is None or len(self.config.newsletter_names) < 2:
            return None
        name, seal = scope
        keys = [signing_key(subscriber.secret, s) for s in self.subscriptions.verifying]
        if not seal_holds(seal, keys, subscriber.handle, name):
            raise TokenError("this unsubscribe link was altered: its newsletter does not match")
        return name if name in self.config.newsletter_names else None

    def check(
        self, store: SubscriberStore, token: str, scope: tuple[str, str] | None, now: datetime
    ) -> tuple[Subscriber, str | None]:
        subscriber = self.subscriptions.check(store, token, "unsubscribe", now)
        return subscriber, self.newsletter(subscriber, scope)

    def unsubscribe(
        self,
        store: SubscriberStore,
        token: str,
        scope: tuple[str, str] | None,
        now: datetime,
        *,
        everything: bool = False,
    ) -> Left:
        """End the newsletter the link names (or, ``everything``, every one of them)."""
        subscriber, name = self.check(store, token, scope, now)
        if name is None or everything:
            return Left(self.subscriptions.unsubscribe(store, token, now))
        still = newsletters.leave(store, subscriber, name, self.config)
        if not still:
            subscriber = self.subscriptions.unsubscribe(store, token, now)
        else:
            log.info("unsubscribe: %s no longer gets %s", subscriber.email, name)
        return Left(subscriber, name, still)

    def action(self, token: str, scope: tuple[str, str] | None) -> str:
        """Where the page's form posts: the link itself, with the newsletter it names."""
        path = token_path("unsubscribe", token)
        return (
            with_query(path, dict(zip(("newsletter", "seal"), scope, strict=True)))
            if scope
            else path
        )

    def titles(self, names: tuple[str, ...]) -> str:
        return ", ".join(self.config.newsletter_title(n) for n in names)
