"""The sunset flow (``analytics.sunset``, off by default): ask readers who stopped clicking
whether they want to stay, and unsubscribe those who do not answer.

``digest subscribers sunset`` does, in this order:

1. **End** each round whose re-permission mail went out ``grace_days`` ago or more and
   whose reader did not follow its "keep me subscribed" link and is still inactive: the
   reader is unsubscribed through the status model (cause ``sunset``, reason recorded) and
   the round is ``ended``, both in one commit. A reader who clicked a post since is kept.
2. **Mail** every consenting active reader with no click in their last ``after_issues``
   delivered issues (:func:`digest.delivery.engagement.inactive_readers`) who has no round
   for the newest of those issues yet, nothing waiting, and did not say "keep" after the
   oldest of them went out: the round is claimed in the store first, then the mail is sent
   (in the reader's language), so a rerun never mails a reader twice for one round. A mail
   the provider refuses releases the claim (the next run tries again); one whose fate is
   unknown stays claimed and is listed as ``uncertain`` (never mailed again, never ended).

Readers who did not agree to per-reader engagement are never looked at. ``--dry-run``
lists who would be mailed and who would be unsubscribed, and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from digest.audience import engagement
from digest.audience.links import token_url
from digest.audience.records import set_details
from digest.audience.status import Cause
from digest.audience.subscribers import SubscriberStore
from digest.audience.tokens import make_token, signing_key, token_secret
from digest.config import Config
from digest.config.analytics import SunsetConfig
from digest.delivery.engagement import Inactive, inactive_readers
from digest.errors import ConfigError
from digest.safelog import log_change
from digest.serve.mail import SUNSET_TEMPLATE, Mailer
from digest.serve.pages import Pages
from digest.store.database import locate

REASON = "sunset: no answer to the re-permission mail within {days} days"


@dataclass
class SunsetReport:
    dry_run: bool
    after_issues: int
    grace_days: int
    ended: list[str] = field(default_factory=list)  # (would be) unsubscribed
    mailed: list[str] = field(default_factory=list)  # (would be) mailed
    failed: list[dict[str, str]] = field(default_factory=list)  # refused: tried again
    uncertain: list[str] = field(default_factory=list)  # a claim whose mail may have gone
    waiting: int = 0  # mailed, within their grace days
    considered: int = 0
    not_consenting: int = 0
    too_few_issues: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "after_issues": self.after_issues,
            "grace_days": self.grace_days,
            "unsubscribed": self.ended,
            "mailed": self.mailed,
            "failed": self.failed,
            "uncertain": self.uncertain,
            "waiting": self.waiting,
            "considered": self.considered,
            "not_consenting": self.not_consenting,
            "too_few_issues": self.too_few_issues,
        }


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _end(
    store: SubscriberStore,
    sunset: SunsetConfig,
    still: set[int],
    now: datetime,
    report: SunsetReport,
) -> None:
    """Unsubscribe the readers whose grace days are over (step 1); ``still`` holds the ids
    of the readers who are inactive now (one who clicked a post since is kept instead)."""
    db = store.connection
    due: list[engagement.Round] = []
    unsure: list[int] = []
    for found in engagement.rounds(db):
        mailed = _when(found.mailed_at)
        if found.state == "mailing":
            unsure.append(found.subscriber_id)
        elif found.state == "mailed" and mailed is not None:
            if mailed + timedelta(days=sunset.grace_days) <= now:
                due.append(found)
            else:
                report.waiting += 1
    people = store.get_many(sorted({r.subscriber_id for r in due} | set(unsure)))
    report.uncertain = [people[i].email for i in unsure if i in people]
    for found in due:
        reader = people.get(found.subscriber_id)
        if reader is None:
            continue
        if found.subscriber_id not in still:  # they read again: nothing to ask any more
            if not report.dry_run:
                engagement.settle_round(
                    db, found.subscriber_id, found.round, before="mailed", after="kept", now=now
                )
            continue
        if report.dry_run:
            report.ended.append(reader.email)
            continue
        with store.atomic():
            if not engagement.settle_round(
                db, found.subscriber_id, found.round, before="mailed", after="ended", now=now
            ):
                continue  # another run ended it, or the reader said keep in between
            store.change_status(reader.email, "unsubscribed", cause=Cause.SUNSET, now=now)
            set_details(db, reader.email, reason=REASON.format(days=sunset.grace_days))
        report.ended.append(reader.email)


def _due(db: Any, reader: Inactive) -> bool:
    """Whether this inactive reader gets a mail for this round."""
    oldest = _when(reader.issues[-1].started_at)
    for found in engagement.rounds(db, reader.id):
        if found.round == reader.round or found.state in ("mailing", "mailed"):
            return False
        settled = _when(found.settled_at)
        if found.state == "kept" and settled and oldest and settled >= oldest:
            return False  # they said keep after some of these issues went out
    return True


def keep_url(config: Config, secret: bytes, handle: str, expires_at: datetime) -> str:
    key = signing_key(secret, token_secret(config))
    return token_url(config, "keep", make_token("keep", handle, key, expires_at=expires_at))


def _mail(
    config: Config,
    store: SubscriberStore,
    inactive: list[Inactive],
    mailer: Mailer | None,
    now: datetime,
    report: SunsetReport,
) -> None:
    """Mail the readers who stopped clicking (step 2)."""
    db = store.connection
    deadline = now + timedelta(days=report.grace_days)
    for reader in inactive:
        if not _due(db, reader):
            continue
        if report.dry_run:
            report.mailed.append(reader.email)
            continue
        subscriber = store.get(reader.email)
        if subscriber is None or not engagement.claim_round(db, reader.id, reader.round):
            continue
        if mailer is None:
            raise ValueError("a sunset run that mails needs a mailer")
        url = keep_url(config, subscriber.secret, subscriber.handle, deadline)
        extra = {"issues": str(report.after_issues), "days": str(report.grace_days)}
        result = mailer.send(subscriber, url, now, SUNSET_TEMPLATE, extra)
        if result.state == "sent":
            engagement.settle_round(
                db, reader.id, reader.round, before="mailing", after="mailed", now=now
            )
            report.mailed.append(reader.email)
        elif result.state == "uncertain":
            report.uncertain.append(reader.email)
        else:
            engagement.release_round(db, reader.id, reader.round)
            report.failed.append({"email": reader.email, "reason": result.reason or result.state})
        log_change("sunset_mail", email=reader.email, round=reader.round, state=result.state)


def run_sunset(
    config: Config, *, now: datetime, dry_run: bool = False, mailer: Mailer | None = None
) -> SunsetReport:
    """One pass of the sunset flow (see the module's docstring)."""
    sunset = config.analytics.sunset
    if sunset is None:
        raise ConfigError(
            "analytics.sunset is not set: the sunset flow is off (set analytics.sunset: "
            "{after_issues: N, grace_days: D} with clicks: per_subscriber; docs/analytics.md)"
        )
    report = SunsetReport(dry_run, sunset.after_issues, sunset.grace_days)
    own = mailer is None and not dry_run
    if own:
        mailer = Mailer(config, Pages(config))
    found = inactive_readers(config, issues=sunset.after_issues)
    report.considered = found.considered
    report.not_consenting = found.not_consenting
    report.too_few_issues = found.too_few_issues
    try:
        with SubscriberStore(locate(config, config.subscribers.database)) as store:
            _end(store, sunset, {r.id for r in found.readers}, now, report)
            _mail(config, store, found.readers, mailer, now, report)
    finally:
        if own and mailer is not None:
            mailer.close()
    return report
