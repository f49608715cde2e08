"""Mailchimp's exports: the audience export files and the API's member list.

**Mailchimp** (audience export: ``subscribed_members_export``, ``unsubscribed_…``,
``cleaned_…``): ``Email Address``, ``First Name``, ``Last Name``, ``MEMBER_RATING``,
``OPTIN_TIME``, ``OPTIN_IP``, ``CONFIRM_TIME``, ``CONFIRM_IP``, …, ``LAST_CHANGED``,
``LEID``, ``EUID``, ``NOTES``, ``TAGS``. The unsubscribed file adds ``UNSUB_TIME``,
``UNSUB_CAMPAIGN_TITLE``, ``UNSUB_CAMPAIGN_ID``, ``UNSUB_REASON``, ``UNSUB_REASON_OTHER``;
the cleaned file ``CLEAN_TIME``, ``CLEAN_CAMPAIGN_TITLE``, ``CLEAN_CAMPAIGN_ID``. Which
file it is decides the status (active, unsubscribed, bounced). Times are UTC,
``2018-02-12 10:54:27``.

Also a member list as Mailchimp's Marketing API returns it (``GET /lists/{id}/members``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from digest.audience.imports.incoming import Platform
from digest.audience.imports.table import fold
from digest.audience.imports.values import cell_text, join_name, parse_time, status_word


def _mailchimp_kind(headers: set[str]) -> str:
    if "unsub time" in headers:
        return "unsubscribed"
    if "clean time" in headers:
        return "cleaned"
    return "subscribed"


def _mailchimp(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    status = {"unsubscribed": "unsubscribed", "cleaned": "bounced"}.get(kind, "active")
    if kind == "subscribed" and cell_text(record, "status"):
        status = status_word(record["status"])
    reason = None
    status_at = None
    if status == "unsubscribed":
        status_at = parse_time(record.get("unsub time"), "UNSUB_TIME")
        reason = cell_text(record, "unsub reason other", "unsub reason") or None
    elif status == "bounced":
        status_at = parse_time(record.get("clean time"), "CLEAN_TIME")
        reason = "cleaned by Mailchimp"
        campaign = cell_text(record, "clean campaign title")
        if campaign:
            reason += f" after {campaign}"
    optin = parse_time(record.get("optin time"), "OPTIN_TIME")
    confirm = parse_time(record.get("confirm time"), "CONFIRM_TIME")
    return {
        "email": record.get("email address"),
        "name": join_name(cell_text(record, "first name"), cell_text(record, "last name")),
        "status": status,
        "subscribed_at": optin or confirm,
        "confirmed_at": confirm,
        "status_at": status_at,
        "source_id": cell_text(record, "leid", "euid") or None,
        "reason": reason,
        "consent": {
            "at": optin,
            "ip": cell_text(record, "optin ip") or None,
            "confirm_ip": cell_text(record, "confirm ip") or None,
        },
        "timezone": cell_text(record, "timezone") or None,
    }


_MAILCHIMP_API = {
    "subscribed": "active",
    "pending": "pending",
    "unsubscribed": "unsubscribed",
    "cleaned": "bounced",
    "archived": "unsubscribed",
    "transactional": "unsubscribed",
}


def _mailchimp_api(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A member as Mailchimp's Marketing API returns it (``GET /lists/{id}/members``)."""
    raw = cell_text(record, "status") or "subscribed"
    status = _MAILCHIMP_API.get(raw.lower())
    if status is None:
        raise ValueError(f"status {raw!r} is not a Mailchimp status ({', '.join(_MAILCHIMP_API)})")
    merge = record.get("merge fields")
    merge = {fold(str(k)): v for k, v in merge.items()} if isinstance(merge, dict) else {}
    name = cell_text(record, "full name") or join_name(
        cell_text(merge, "fname"), cell_text(merge, "lname")
    )
    signup = parse_time(record.get("timestamp signup"), "timestamp_signup")
    opt = parse_time(record.get("timestamp opt"), "timestamp_opt")
    reason = None
    if status == "unsubscribed":
        reason = cell_text(record, "unsubscribe reason") or (
            None if raw.lower() == "unsubscribed" else f"{raw.lower()} in Mailchimp"
        )
    elif status == "bounced":
        reason = "cleaned by Mailchimp"
    return {
        "email": record.get("email address"),
        "name": name,
        "status": status,
        "subscribed_at": signup or opt,
        "confirmed_at": opt,
        "status_at": parse_time(record.get("last changed"), "last_changed")
        if status in ("unsubscribed", "bounced")
        else None,
        "source_id": cell_text(record, "unique email id", "id") or None,
        "reason": reason,
        "consent": {
            "at": signup or opt,
            "ip": cell_text(record, "ip signup") or None,
            "confirm_ip": cell_text(record, "ip opt") or None,
        },
    }


EXPORT = Platform(
    "mailchimp",
    "Mailchimp",
    lambda h: (
        "email address" in h
        and bool(h & {"member rating", "optin time", "confirm time", "leid", "euid"})
    ),
    _mailchimp,
    _mailchimp_kind,
)
API = Platform(
    "mailchimp-api",
    "Mailchimp (API JSON)",
    lambda h: (
        "email address" in h and bool(h & {"timestamp opt", "merge fields", "unique email id"})
    ),
    _mailchimp_api,
)
