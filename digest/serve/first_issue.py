"""A new reader's first mail: the welcome with the latest issue already sent inside it.

With ``serve.welcome`` and ``serve.welcome_latest_issue``, confirming a subscription sends
the latest issue of each newsletter the reader receives through the send loop itself, as
``digest send --week <issue> --new-subscribers`` would, composed with a welcome block at
its top (:mod:`digest.delivery.welcome`): one message, one ledger row per (subscriber,
issue), so a rerun or a later ``--new-subscribers`` never repeats it, the reader's
sections and language pick the variant, and the next scheduled issue comes as it always
does. Everyone else who joined since that issue went out and has not had it gets it in the
same run (they are owed it by the same rule). When no issue has gone out yet, the plain
welcome email goes instead.
"""

from __future__ import annotations

import logging
from datetime import datetime

from digest.audience import newsletters
from digest.audience.subscribers import Subscriber, SubscriberStore
from digest.config import Config
from digest.delivery.ledger import Ledger
from digest.delivery.send import send_issue
from digest.delivery.welcome import WelcomeBlock, WelcomeComposer
from digest.email.message import PLACEHOLDERS
from digest.errors import DigestError, NothingToSend
from digest.i18n import SOURCE, catalogues, gettext, moment
from digest.safelog import clean
from digest.serve.pages import Pages
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


def welcome_blocks(pages: Pages, context: dict[str, str]) -> dict[str, WelcomeBlock]:
    """The welcome block in every language digest speaks (``context``: when the next issue
    comes, from :func:`digest.serve.mail.welcome_context`); its link is the preferences
    marker, which each recipient's own link fills."""
    blocks: dict[str, WelcomeBlock] = {}
    for language in catalogues():
        words = {**context, "url": PLACEHOLDERS["preferences_url"]}
        if language != SOURCE and context.get("next_issue_iso"):
            when = datetime.fromisoformat(context["next_issue_iso"])
            zone = context.get("next_issue_zone") or str(when.tzinfo)
            words["next_issue"] = moment(when, language, zone)
        site = pages.common["site_name"]
        blocks[language] = WelcomeBlock(
            subject=gettext(language, "Welcome to %(site)s", site=site),
            html=pages.render("welcome_block.html.j2", language=language, **words),
            text=pages.render("welcome_block.txt.j2", language=language, **words),
            site=site,
        )
    return blocks


def send_latest(
    config: Config,
    subscriber: Subscriber,
    now: datetime,
    welcome: dict[str, WelcomeBlock] | None = None,
) -> list[str]:
    """Send the latest issue of each newsletter ``subscriber`` receives to those who joined
    since it went out, with ``welcome`` (blocks by language) at its top; returns the issues
    sent. A failure is logged, never raised (this runs after the answer has gone)."""
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
            composer = WelcomeComposer(welcome, SOURCE) if welcome else None
            report = send_issue(one, now=now, week=issue, new_subscribers=True, composer=composer)
        except NothingToSend as exc:
            log.info("first issue for %s: %s", subscriber.email, clean(exc))
            continue
        except DigestError as exc:
            log.warning("first issue %s for %s not sent: %s", issue, subscriber.email, clean(exc))
            continue
        log.info("first issue %s: %d sent to those who joined since", issue, report.sent)
        sent.append(issue)
    return sent
