"""A new reader's first issue: the latest one already sent, right after the welcome.

With ``serve.welcome`` and ``serve.welcome_latest_issue``, confirming a subscription sends
the latest issue of each newsletter the reader receives through the send loop itself, as
``digest send --week <issue> --new-subscribers`` would: one ledger row per (subscriber,
issue), so a rerun or a later ``--new-subscribers`` never repeats it, the reader's sections
and language pick the variant, and the next scheduled issue comes as it always does.
Everyone else who joined since that issue went out and has not had it gets it in the same
run (they are owed it by the same rule).
"""

from __future__ import annotations

import logging
from datetime import datetime

from digest.audience import newsletters
from digest.audience.subscribers import Subscriber, SubscriberStore
from digest.config import Config
from digest.delivery.ledger import Ledger
from digest.delivery.send import send_issue
from digest.errors import DigestError, NothingToSend
from digest.safelog import clean
from digest.store.database import locate

log = logging.getLogger(__name__)


def latest_sent(config: Config) -> str | None:
    """The newsletter's issue completed last (None: none has been sent)."""
    with Ledger(locate(config, config.ledger.database)) as ledger:
        done = [
            (state["completed_at"], issue)
            for issue in ledger.issues()
            if config.owns_issue(issue)
            and (state := ledger.issue(issue)) is not None
            and state["completed_at"]
        ]
    return max(done)[1] if done else None


def send_latest(config: Config, subscriber: Subscriber, now: datetime) -> list[str]:
    """Send the latest issue of each newsletter ``subscriber`` receives to those who joined
    since it went out; returns the issues sent. A failure is logged, never raised (this
    runs after the answer has gone)."""
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        names = newsletters.receiving(store, subscriber.email, config) or (
            config.newsletter_names[0],
        )
    sent: list[str] = []
    for name in names:
        one = config.for_newsletter(name)
        issue = latest_sent(one)
        if issue is None:
            continue
        try:
            report = send_issue(one, now=now, week=issue, new_subscribers=True)
        except NothingToSend as exc:
            log.info("first issue for %s: %s", subscriber.email, clean(exc))
            continue
        except DigestError as exc:
            log.warning("first issue %s for %s not sent: %s", issue, subscriber.email, clean(exc))
            continue
        log.info("first issue %s: %d sent to those who joined since", issue, report.sent)
        sent.append(issue)
    return sent
