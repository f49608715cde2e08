"""A subscriber store and a send ledger with a known history, for the dashboard's tests.

Three weeks of November 2026: people arrive from the form, an import and the CLI; two
issues go out (2026-W46 on the 9th, 2026-W47 on the 16th); after the first, two people
unsubscribe and one mailbox bounces; after the second, one person complains and one
unsubscribes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from digest.audience import records
from digest.audience.subscribers import SubscriberStore
from digest.delivery.ledger import Ledger, Outcome


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Seeded:
    counts: dict[str, int]
    sources: dict[str, dict[str, int]]
    deliveries: dict[str, dict[str, int]]
    followed: dict[str, dict[str, int]]


PEOPLE = [
    # (email, day they arrived, source, sections)
    ("ann@example.com", 1, "serve", ["Work"]),
    ("bob@example.com", 1, "serve", []),
    ("cy@example.com", 2, "import:mailchimp", ["Tools", "Work"]),
    ("di@example.com", 2, "import:mailchimp", []),
    ("ed@example.com", 3, "import:mailchimp", ["Research"]),
    ("fay@example.com", 4, "serve", ["Tools"]),
    ("gus@example.com", 5, "cli", []),
    ("hal@example.com", 12, "serve", ["Work"]),
    ("ivy@example.com", 13, "serve", []),
    ("jo@example.com", 20, "serve", []),
]
LEAVING = [
    # (email, status, when): after W46 (9th) and after W47 (16th)
    ("bob@example.com", "unsubscribed", at(10)),
    ("di@example.com", "unsubscribed", at(11)),
    ("ed@example.com", "bounced", at(9, 15)),
    ("cy@example.com", "complained", at(17)),
    ("fay@example.com", "unsubscribed", at(18)),
]


CAUSES = {
    "unsubscribed": "webhook_unsubscribe",
    "bounced": "webhook_bounce",
    "complained": "webhook_complaint",
}


def seed(subscribers: Path, ledger_path: Path) -> Seeded:
    with SubscriberStore(subscribers) as store:
        for email, day, source, sections in PEOPLE:
            store.add(email, categories=sections, status="active", now=at(day))
            records.set_details(store.connection, email, source=source)
        store.add("kim@example.com", status="pending", now=at(21))
        records.set_details(store.connection, "kim@example.com", source="serve")
        ids = {s.email: s.id for s in store.list()}
        with Ledger(ledger_path) as ledger:
            for issue, started, recipients in (
                ("2026-W46", at(9, 9), [e for e, d, *_ in PEOPLE if d <= 5]),
                (
                    "2026-W47",
                    at(16, 9),
                    [
                        "ann@example.com",
                        "cy@example.com",
                        "fay@example.com",
                        "gus@example.com",
                        "hal@example.com",
                        "ivy@example.com",
                    ],
                ),
            ):
                ledger.start_run(issue, subject=f"Issue {issue}", provider="outbox", now=started)
                ledger.enqueue(issue, [(ids[e], e) for e in recipients], now=started)
                # what was attempted was claimed first; the skipped one never was
                skipped = recipients[5] if issue != "2026-W46" else None
                claimed = [ids[e] for e in recipients if e != skipped]
                ledger.claim(
                    issue,
                    claimed,
                    batch_key=f"seed-{issue}",
                    variant="all",
                    message_ids=[f"<{issue}.{i}@example.com>" for i in claimed],
                    now=started,
                )
                outcomes = [Outcome(ids[e], "sent") for e in recipients]
                if issue == "2026-W46":
                    outcomes[4] = Outcome(ids[recipients[4]], "failed-permanent", error="550")
                else:
                    outcomes[5] = Outcome(ids[recipients[5]], "skipped")
                ledger.record(issue, outcomes, now=started)
        for email, status, when in LEAVING:
            store.change_status(email, status, cause=CAUSES[status], now=when)
        counts = store.counts()
    return Seeded(
        counts=counts,
        sources={
            "cli": {"active": 1},
            "import:mailchimp": {"unsubscribed": 1, "bounced": 1, "complained": 1},
            "serve": {"active": 4, "pending": 1, "unsubscribed": 2},
        },
        deliveries={
            "2026-W46": {"sent": 6, "failed-permanent": 1},
            "2026-W47": {"sent": 5, "skipped": 1},
        },
        followed={
            "2026-W46": {"unsubscribed": 2, "bounced": 1, "complained": 0},
            "2026-W47": {"unsubscribed": 1, "bounced": 0, "complained": 1},
        },
    )
