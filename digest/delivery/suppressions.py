"""Pull bounces, complaints and unsubscribes from the provider into the subscriber store.

A provider that keeps such lists exposes ``fetch_suppressions()`` (Postmark, SendGrid,
Mailgun, Brevo). Each suppressed address that is a subscriber gets the matching status
(``bounced``, ``complained``, ``unsubscribed``) through the status model (cause
``suppression_sync``), so the next send skips it. A status only gets stronger: an
unsubscribed subscriber the provider reports as complained becomes ``complained``, a
complaint is never downgraded to a bounce; an address that is not a subscriber is counted
and left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from digest.audience.status import Cause, transition
from digest.audience.subscribers import SubscriberStore, normalise_email
from digest.config import Config
from digest.delivery.providers.http import Suppression
from digest.delivery.providers.registry import get_provider_class
from digest.errors import ConfigError
from digest.store.database import locate


@runtime_checkable
class SupportsSuppressions(Protocol):
    def fetch_suppressions(self) -> Iterator[Suppression]: ...


@dataclass
class SyncReport:
    provider: str
    fetched: int = 0  # distinct suppressed addresses
    changed: dict[str, str] = field(default_factory=dict)  # email -> new status
    already: int = 0  # subscribers whose status is already as strong
    unknown: int = 0  # suppressed addresses that are not subscribers
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "fetched": self.fetched,
            "changed": self.changed,
            "already_inactive": self.already,
            "not_subscribers": self.unknown,
            "dry_run": self.dry_run,
        }


def sync_suppressions(
    config: Config, *, now: datetime, dry_run: bool = False, provider: Any = None
) -> SyncReport:
    """Apply the configured provider's suppression lists to the subscriber store."""
    if provider is None:
        provider_class = get_provider_class(config.provider.name)
        if not hasattr(provider_class, "fetch_suppressions"):
            raise ConfigError(
                f"provider.name: {config.provider.name} keeps no suppression list digest can "
                "read; suppressions sync works with postmark, sendgrid, mailgun, brevo and ses"
            )
        provider = provider_class.from_config(config)
    report = SyncReport(provider.name, dry_run=dry_run)
    try:
        with SubscriberStore(locate(config, config.subscribers.database)) as store:
            seen: set[str] = set()
            for item in provider.fetch_suppressions():
                email = normalise_email(item.email)
                if email in seen:  # e.g. on Postmark's suppression dump and bounce list
                    continue
                seen.add(email)
                report.fetched += 1
                subscriber = store.get(email)
                if subscriber is None:
                    report.unknown += 1
                elif not transition(subscriber.status, item.kind, Cause.SUPPRESSION_SYNC).changed:
                    report.already += 1
                elif dry_run:
                    report.changed[email] = item.kind
                else:
                    _, change = store.change_status(
                        email, item.kind, cause=Cause.SUPPRESSION_SYNC, now=now
                    )
                    if change.changed:
                        report.changed[email] = item.kind
                    else:
                        report.already += 1
    finally:
        provider.close()
    return report
