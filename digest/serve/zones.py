"""The time zone choice on the preferences page: IANA zones grouped by region (a
``<select>`` that works without script), and the check of what comes back.

The zones are those the zone database on this machine knows (:mod:`zoneinfo`), less the
old aliases outside the regions (``US/Eastern``, ``Etc/GMT+5``, ``EST``): each reader picks
a place, and ``UTC`` stands on its own. What a form posts is public input: a name the
database does not know is refused with a message (400), never stored and never a 500.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import available_timezones

from digest.audience.rhythm import Rhythm, RhythmError, Rhythms, check_timezone, default_zone
from digest.audience.subscribers import SubscriberStore
from digest.config import Config
from digest.i18n import N_

# The regions of the zone database, in the order the page lists them; their names are
# translated on the page.
REGIONS = {
    "Africa": N_("Africa"),
    "America": N_("America"),
    "Antarctica": N_("Antarctica"),
    "Arctic": N_("Arctic"),
    "Asia": N_("Asia"),
    "Atlantic": N_("Atlantic"),
    "Australia": N_("Australia"),
    "Europe": N_("Europe"),
    "Indian": N_("Indian Ocean"),
    "Pacific": N_("Pacific"),
}
UTC = "UTC"


@lru_cache(maxsize=1)
def zone_groups() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """(region's title msgid, ((zone name, label), ...)) for every region, zones sorted by
    label; the label is the place, as a reader reads it (``America/Argentina/Buenos_Aires``
    -> ``Argentina / Buenos Aires``)."""
    by_region: dict[str, list[tuple[str, str]]] = {region: [] for region in REGIONS}
    for name in available_timezones():
        region, _, place = name.partition("/")
        if region in by_region and place:
            by_region[region].append((name, place.replace("_", " ").replace("/", " / ")))
    return tuple(
        (REGIONS[region], tuple(sorted(zones, key=lambda zone: zone[1])))
        for region, zones in by_region.items()
        if zones
    )


# The 400 page's words for a zone the database does not know.
REFUSED = (
    N_("That is not a time zone we know"),
    N_("Choose your time zone from the list and save again."),
)


def posted(value: object) -> str | Literal[False] | None:
    """The zone a preferences form posted: its checked name, None when none came (a form
    without the field, another action), False when it is not a zone the database knows
    (checked before anything of the form is saved)."""
    if value is None:
        return None
    if not isinstance(value, str):
        return False
    try:
        return check_timezone(value)
    except RhythmError:
        return False


def save_zone(store: SubscriberStore, email: str, zone: str, now: datetime, config: Config) -> None:
    """Set the reader's zone (checked by :func:`posted` before anything was saved). A
    reader without one who saves the page as shown (the schedule's zone selected) keeps
    none, so they follow the schedule's zone should it change."""
    rhythms = Rhythms(store)
    found = store.get(email)
    if found is not None and rhythms.of(found).timezone is None and zone == default_zone(config):
        return
    rhythms.set(email, timezone=zone, now=now, config=config)


def context(rhythm: Rhythm, config: Config) -> dict[str, Any]:
    """What the page's select needs: the groups, the reader's zone (the schedule's when
    they chose none), and whether the list shows it (an alias such as ``US/Eastern`` from
    an import is offered on its own, selected, so saving keeps it)."""
    zone = rhythm.zone(default_zone(config))
    listed = zone == UTC or any(zone == name for _, zones in zone_groups() for name, _ in zones)
    return {"zone": zone, "zone_listed": listed, "zone_groups": zone_groups()}


__all__ = ["REFUSED", "UTC", "context", "posted", "save_zone", "zone_groups"]
