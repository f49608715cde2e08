"""What ``digest status`` says about an issue's local-time waves (``schedule.local_time``):
for each due instant, the zones it reaches, how many of their readers the issue is for,
and how many of those the ledger holds as sent."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from digest.audience.newsletters import recipients
from digest.audience.rhythm import Rhythm, Rhythms, default_zone
from digest.audience.subscribers import SubscriberStore
from digest.config import Config
from digest.content.wallclock import local_due, parse_wall_time
from digest.content.window import Window
from digest.delivery.ledger import SENT, Ledger
from digest.store.database import locate


def wave_status(config: Config, window: Window, now: datetime) -> list[dict[str, Any]]:
    """One entry per wave of the issue of ``window``, earliest first (empty without
    ``schedule.local_time``): ``due`` (UTC, ISO), ``zones``, ``readers``, ``sent`` and
    ``state`` (``sent``: every reader of it sent; ``due``: its time has come; ``to come``)."""
    if config.schedule.local_time is None:
        return []
    at = parse_wall_time(config.schedule.local_time)
    fallback = default_zone(config)
    with (
        SubscriberStore(locate(config, config.subscribers.database)) as store,
        Ledger(locate(config, config.ledger.database)) as ledger,
    ):
        rhythms = Rhythms(store).all()
        sent = {
            row.subscriber_id
            for chunk in ledger.iter_state(window.issue_id, [SENT])
            for row in chunk
        }
        readers: dict[str, int] = defaultdict(int)
        done: dict[str, int] = defaultdict(int)
        for subscriber in recipients(config, store, window=window):
            zone = rhythms.get(subscriber.id, Rhythm()).zone(fallback)
            readers[zone] += 1
            done[zone] += subscriber.id in sent
    waves: dict[datetime, list[str]] = defaultdict(list)
    for zone in readers:
        waves[local_due(window.end, at, ZoneInfo(zone))].append(zone)
    found: list[dict[str, Any]] = []
    for due in sorted(waves):
        zones = sorted(waves[due])
        total = sum(readers[z] for z in zones)
        count = sum(done[z] for z in zones)
        state = "sent" if count == total else "due" if due <= now else "to come"
        found.append(
            {
                "due": due.astimezone(timezone.utc).isoformat(),
                "zones": zones,
                "readers": total,
                "sent": count,
                "state": state,
            }
        )
    return found
