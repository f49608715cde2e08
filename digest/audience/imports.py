"""Importing subscribers from another platform's export, recognised by its header row.

Each platform's columns and status values are taken from its documentation and from its
own export code (see docs/subscribers.md for the facts each map rests on):

- **Mailchimp** (audience export: ``subscribed_members_export``, ``unsubscribed_…``,
  ``cleaned_…``): ``Email Address``, ``First Name``, ``Last Name``, ``MEMBER_RATING``,
  ``OPTIN_TIME``, ``OPTIN_IP``, ``CONFIRM_TIME``, ``CONFIRM_IP``, …, ``LAST_CHANGED``,
  ``LEID``, ``EUID``, ``NOTES``, ``TAGS``. The unsubscribed file adds ``UNSUB_TIME``,
  ``UNSUB_CAMPAIGN_TITLE``, ``UNSUB_CAMPAIGN_ID``, ``UNSUB_REASON``, ``UNSUB_REASON_OTHER``;
  the cleaned file ``CLEAN_TIME``, ``CLEAN_CAMPAIGN_TITLE``, ``CLEAN_CAMPAIGN_ID``. Which
  file it is decides the status (active, unsubscribed, bounced). Times are UTC,
  ``2018-02-12 10:54:27``.
- **Substack** (subscriber list export): ``email``, ``active_subscription``, ``expiry``,
  ``email_disabled``, ``created_at`` (ISO); ``email_disabled`` true means no email is sent
  to them (unsubscribed). Addresses ``…@deletion-request.substack.com`` are people who
  asked to be deleted and are not imported.
- **Buttondown** (subscriber export): ``email`` (``email_address`` in newer files),
  ``subscriber_type`` (``type``), ``creation_date``, ``notes``, ``tags``, ``metadata``,
  ``referrer_url``, ``ip_address``, ``unsubscription_date``, ``undeliverability_date``.
  Types: regular, premium, trialed, unpaid, gifted, churning, paused, past_due (all
  receive email: active); unactivated (pending); unsubscribed; removed and spammy (kept as
  unsubscribed, never mailed); undeliverable (bounced).
- **listmonk** (subscribers export): ``uuid``, ``email``, ``name``, ``attributes`` (JSON),
  ``status`` (enabled, disabled, blocklisted), ``created_at``, ``updated_at`` in Go's
  ``2021-06-22 10:21:27.471456 +0000 UTC`` form. disabled and blocklisted are not mailed.
- **Ghost** (members export): ``id``, ``email``, ``name``, ``note``,
  ``subscribed_to_emails`` (true/false), ``complimentary_plan``, ``stripe_customer_id``,
  ``created_at``, ``deleted_at``, ``labels``, ``tiers`` (``products`` in older files).
- **digest** itself (``digest subscribers export``, JSON or CSV) and the first user's JSON
  (``id``, ``email``, ``subscribedAt``, ``isActive``, ``preferences``), and any CSV with an
  ``email`` column.

Headers are matched ignoring case, a byte-order mark, quotes, spaces, ``_`` and ``-``;
extra columns are ignored; the delimiter may be ``,``, ``;``, a tab or ``|``. For any other
file, ``--map email="Email Address",name="First Name"`` names the columns.

Every status goes through the subscriber store's rules: an import never brings back
someone who unsubscribed, bounced or complained, and never brings back an address erased
on request (``digest subscribers forget``).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Any

from digest.audience import records
from digest.audience.records import Consent, iso
from digest.audience.status import Cause, transition
from digest.audience.subscribers import (
    STATUSES,
    Categories,
    InvalidEmail,
    SubscriberStore,
    normalise_email,
)
from digest.errors import StoreError

FIELDS = (
    "email",
    "name",
    "first_name",
    "last_name",
    "status",
    "subscribed_at",
    "confirmed_at",
    "status_at",
    "categories",
    "id",
    "reason",
    "source",
)
"""What ``--map`` may name."""

EMAIL_COLUMNS = ("email", "email address", "e mail", "e mail address", "mail")
"""Headers (folded) a plain list's address may have."""

MAX_LISTED = 200  # changes listed one by one in a report; the counts are always complete

# --------------------------------------------------------------------------- reading files


@functools.lru_cache(maxsize=4096)
def fold(header: str) -> str:
    """``"Email Address"``, ``email_address`` and ``EMAIL-ADDRESS`` all become
    ``email address``."""
    text = header.replace("\ufeff", "").strip().strip('"').strip("'")
    return " ".join(re.split(r"[\s_\-]+", text.casefold())).strip()


def _decode(path: Path) -> tuple[str, str]:
    """The file's text and its encoding: UTF-8 (with or without a BOM), UTF-16 with a BOM,
    or, when the bytes are not UTF-8, Windows-1252 (what a spreadsheet on Windows saves)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read it: {exc}") from None
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return data.decode(encoding), encoding.removesuffix("-sig")
    except UnicodeDecodeError as exc:
        if encoding == "utf-16":
            raise StoreError(f"{path}: not UTF-16 text ({exc.reason})") from None
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        raise StoreError(
            f"{path}: neither UTF-8 nor Windows-1252 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8"
        ) from None


def _delimiter(first_line: str) -> str:
    best, most = ",", 0
    for candidate in (",", ";", "\t", "|"):
        fields = next(csv.reader([first_line], delimiter=candidate), [])
        if len(fields) > most:
            best, most = candidate, len(fields)
    return best


@dataclass
class Table:
    """The rows of one file: headers as written, and records keyed by folded header."""

    kind: str  # csv or json
    headers: list[str]
    rows: list[tuple[int, Mapping[str, Any] | None, str | None]]
    encoding: str = "utf-8"


def read_table(path: Path) -> Table:
    """Read a CSV or JSON file; rows are (number as a person counts them, record, problem)."""
    text, encoding = _decode(path)
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        if isinstance(data, dict):
            for key in ("subscribers", "members", "results", "data"):
                if isinstance(data.get(key), list):
                    data = data[key]
                    break
        if not isinstance(data, list):
            raise StoreError(f"{path}: expected a JSON list of subscribers")
        rows: list[tuple[int, Mapping[str, Any] | None, str | None]] = []
        headers: dict[str, None] = {}
        for number, item in enumerate(data, start=1):
            if isinstance(item, dict):
                record = {fold(str(k)): v for k, v in item.items()}
                headers.update(dict.fromkeys(str(k) for k in item))
                rows.append((number, record, None))
            else:
                rows.append((number, None, f"expected an object, got {type(item).__name__}"))
        return Table("json", list(headers), rows, encoding)
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if not first:
        raise StoreError(f"{path}: the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first))
    header: list[str] | None = None
    keys: list[str] = []
    rows = []
    for fields in reader:
        if header is None:
            if not any(f.strip() for f in fields):
                continue
            header = fields
            keys = [fold(h) for h in header]
            continue
        number = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) > len(header):
            if any(f.strip() for f in fields[len(header) :]):
                rows.append((number, None, "more fields than the header has"))
                continue
            fields = fields[: len(header)]
        fields = fields + [""] * (len(header) - len(fields))
        record = {k: v for k, v in zip(keys, fields, strict=True) if k}
        rows.append((number, record, None))
    return Table("csv", header or [], rows, encoding)


# --------------------------------------------------------------------------- values

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}
_GO_TIME = re.compile(
    r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?\s*([+-]\d\d:?\d\d|Z)?(\s+[A-Za-z]+)?"
    r"(\s+m=[+-][\d.]+)?$"
)


_DATE_FORMS = (
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    # Month first, as US platforms and spreadsheets write them (never day first: 03/04
    # would be ambiguous, and these platforms do not write it).
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y",
    "%b %d, %Y",
    "%B %d, %Y",
)


def parse_time(value: Any, column: str) -> str | None:
    """An ISO-8601 UTC timestamp from the forms platforms write; naive times are UTC."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    if not text:
        return None
    moment: datetime | None = None
    found = _GO_TIME.match(text)
    if found:
        date, clock, fraction, offset, _, _ = found.groups()
        stamp = f"{date}T{clock}{(fraction or '')[:7]}"
        if offset and offset != "Z":
            offset = offset if ":" in offset else f"{offset[:3]}:{offset[3:]}"
            stamp += offset
        try:
            moment = datetime.fromisoformat(stamp)
        except ValueError:
            moment = None
    if moment is None:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" UTC", ""))
        except ValueError:
            try:
                moment = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                moment = None
    if moment is None:
        for form in _DATE_FORMS:
            try:
                moment = datetime.strptime(text, form)
                break
            except ValueError:
                continue
    if moment is None and re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        moment = datetime.fromtimestamp(float(text), tz=timezone.utc)
    if moment is None:
        raise ValueError(f"{column} {text!r} is not a date such as 2026-08-02T10:15:00Z")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return iso(moment)


def _flag(value: Any, column: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{column} {value!r} is not true or false")


_STATUS_WORDS = {
    "active": "active",
    "subscribed": "active",
    "subscriber": "active",
    "enabled": "active",
    "confirmed": "active",
    "opted in": "active",
    "regular": "active",
    "free": "active",
    "paid": "active",
    "premium": "active",
    "comped": "active",
    "complimentary": "active",
    "gifted": "active",
    "trialed": "active",
    "trialing": "active",
    "churning": "active",
    "paused": "active",
    "past due": "active",
    "unpaid": "active",
    "pending": "pending",
    "unconfirmed": "pending",
    "unactivated": "pending",
    "unsubscribed": "unsubscribed",
    "unsubscribe": "unsubscribed",
    "inactive": "unsubscribed",
    "disabled": "unsubscribed",
    "opted out": "unsubscribed",
    "blocklisted": "unsubscribed",
    "blacklisted": "unsubscribed",
    "removed": "unsubscribed",
    "deleted": "unsubscribed",
    "archived": "unsubscribed",
    "spammy": "unsubscribed",
    "transactional": "unsubscribed",
    "bounced": "bounced",
    "cleaned": "bounced",
    "undeliverable": "bounced",
    "hard bounce": "bounced",
    "complained": "complained",
    "complaint": "complained",
    "spam": "complained",
    "spam complaint": "complained",
}


def status_word(value: Any) -> str:
    text = fold(str(value or ""))
    if not text:
        return "active"
    status = _STATUS_WORDS.get(text)
    if status is None:
        raise ValueError(
            f"status {value!r} is not one of {', '.join(STATUSES)} (or a platform's word "
            "for one, such as subscribed, cleaned or unconfirmed)"
        )
    return status


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Incoming:
    """One subscriber as an import file gives it, checked and in the store's terms."""

    email: str
    name: str = ""
    status: str = "active"
    subscribed_at: str | None = None
    confirmed_at: str | None = None
    status_at: str | None = None
    categories: tuple[str, ...] | None = None  # None: the file does not say
    source_id: str | None = None
    reason: str | None = None
    source: str | None = None
    consent: Consent | None = None


def _text(record: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            if not isinstance(value, (str, int, float)):
                raise ValueError(f"{name} is not text")
            return str(value).strip()
    return ""


def _join_name(first: str, last: str) -> str:
    return " ".join(p for p in (first.strip(), last.strip()) if p)


def _category_names(raw: Any) -> list[str]:
    if raw in (None, ""):
        return []
    if isinstance(raw, str):
        return raw.replace("|", ";").replace(",", ";").split(";")
    if isinstance(raw, list) and all(isinstance(c, str) for c in raw):
        return list(raw)
    raise ValueError("categories is not a list of names")


Converter = Callable[[Mapping[str, Any], str], dict[str, Any]]
"""(record by folded header, file kind) -> the fields of an :class:`Incoming` (raw)."""


@dataclass(frozen=True)
class Platform:
    name: str
    title: str
    matches: Callable[[set[str]], bool]
    convert: Converter
    kind: Callable[[set[str]], str] = lambda headers: ""


def _mailchimp_kind(headers: set[str]) -> str:
    if "unsub time" in headers:
        return "unsubscribed"
    if "clean time" in headers:
        return "cleaned"
    return "subscribed"


def _mailchimp(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    status = {"unsubscribed": "unsubscribed", "cleaned": "bounced"}.get(kind, "active")
    if kind == "subscribed" and _text(record, "status"):
        status = status_word(record["status"])
    reason = None
    status_at = None
    if status == "unsubscribed":
        status_at = parse_time(record.get("unsub time"), "UNSUB_TIME")
        reason = _text(record, "unsub reason other", "unsub reason") or None
    elif status == "bounced":
        status_at = parse_time(record.get("clean time"), "CLEAN_TIME")
        reason = "cleaned by Mailchimp"
        campaign = _text(record, "clean campaign title")
        if campaign:
            reason += f" after {campaign}"
    optin = parse_time(record.get("optin time"), "OPTIN_TIME")
    confirm = parse_time(record.get("confirm time"), "CONFIRM_TIME")
    return {
        "email": record.get("email address"),
        "name": _join_name(_text(record, "first name"), _text(record, "last name")),
        "status": status,
        "subscribed_at": optin or confirm,
        "confirmed_at": confirm,
        "status_at": status_at,
        "source_id": _text(record, "leid", "euid") or None,
        "reason": reason,
        "consent": {
            "at": optin,
            "ip": _text(record, "optin ip") or None,
            "confirm_ip": _text(record, "confirm ip") or None,
        },
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
    raw = _text(record, "status") or "subscribed"
    status = _MAILCHIMP_API.get(raw.lower())
    if status is None:
        raise ValueError(f"status {raw!r} is not a Mailchimp status ({', '.join(_MAILCHIMP_API)})")
    merge = record.get("merge fields")
    merge = {fold(str(k)): v for k, v in merge.items()} if isinstance(merge, dict) else {}
    name = _text(record, "full name") or _join_name(_text(merge, "fname"), _text(merge, "lname"))
    signup = parse_time(record.get("timestamp signup"), "timestamp_signup")
    opt = parse_time(record.get("timestamp opt"), "timestamp_opt")
    reason = None
    if status == "unsubscribed":
        reason = _text(record, "unsubscribe reason") or (
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
        "source_id": _text(record, "unique email id", "id") or None,
        "reason": reason,
        "consent": {
            "at": signup or opt,
            "ip": _text(record, "ip signup") or None,
            "confirm_ip": _text(record, "ip opt") or None,
        },
    }


def _substack(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    email = _text(record, "email")
    if email.lower().endswith("@deletion-request.substack.com"):
        raise ValueError("a Substack deletion request (the person asked to be deleted)")
    disabled = _flag(record.get("email disabled"), "email_disabled")
    return {
        "email": email,
        "name": _text(record, "name"),
        "status": "unsubscribed" if disabled else "active",
        "subscribed_at": parse_time(record.get("created at"), "created_at"),
        "reason": "email disabled in Substack" if disabled else None,
    }


_BUTTONDOWN = {
    "regular": "active",
    "premium": "active",
    "trialed": "active",
    "unpaid": "active",
    "gifted": "active",
    "churning": "active",
    "paused": "active",
    "past due": "active",
    "unactivated": "pending",
    "unsubscribed": "unsubscribed",
    "removed": "unsubscribed",
    "spammy": "unsubscribed",
    "undeliverable": "bounced",
}


def _buttondown(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    raw = _text(record, "subscriber type", "type", "status")
    status = _BUTTONDOWN.get(fold(raw)) if raw else "active"
    if status is None:
        raise ValueError(
            f"subscriber_type {raw!r} is not a Buttondown type ({', '.join(_BUTTONDOWN)})"
        )
    status_at = None
    reason = None
    if status == "unsubscribed":
        status_at = parse_time(record.get("unsubscription date"), "unsubscription_date")
        if fold(raw) != "unsubscribed":
            reason = f"{fold(raw)} in Buttondown"
    elif status == "bounced":
        status_at = parse_time(record.get("undeliverability date"), "undeliverability_date")
        reason = _text(record, "undeliverability reason") or "undeliverable in Buttondown"
    created = parse_time(
        record.get("creation date") or record.get("subscription date") or record.get("date"),
        "creation_date",
    )
    return {
        "email": record.get("email") or record.get("email address"),
        "name": _text(record, "name"),
        "status": status,
        "subscribed_at": created,
        "status_at": status_at,
        "source_id": _text(record, "id") or None,
        "reason": reason,
        "consent": {
            "at": created,
            "ip": _text(record, "ip address") or None,
            "origin": _text(record, "referrer url") or None,
        },
    }


_LISTMONK = {"enabled": "active", "disabled": "unsubscribed", "blocklisted": "unsubscribed"}


def _listmonk(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    raw = _text(record, "status")
    status = _LISTMONK.get(raw.lower()) if raw else "active"
    if status is None:
        raise ValueError(
            f"status {raw!r} is not a listmonk status (enabled, disabled, blocklisted)"
        )
    return {
        "email": record.get("email"),
        "name": _text(record, "name"),
        "status": status,
        "subscribed_at": parse_time(record.get("created at"), "created_at"),
        "status_at": parse_time(record.get("updated at"), "updated_at")
        if status != "active"
        else None,
        "source_id": _text(record, "uuid") or None,
        "reason": f"{raw.lower()} in listmonk" if status != "active" else None,
    }


def _ghost(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    subscribed = _flag(record.get("subscribed to emails", "true"), "subscribed_to_emails")
    deleted = parse_time(record.get("deleted at"), "deleted_at")
    status = "active" if subscribed and not deleted else "unsubscribed"
    reason = None
    if deleted:
        reason = "deleted in Ghost"
    elif not subscribed:
        reason = "not subscribed to emails in Ghost"
    return {
        "email": record.get("email"),
        "name": _text(record, "name"),
        "status": status,
        "subscribed_at": parse_time(record.get("created at"), "created_at"),
        "status_at": deleted,
        "source_id": _text(record, "id") or None,
        "reason": reason,
    }


def _digest(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """digest's own export, the flat CSV/JSON shape, the blog's JSON, and any list with an
    email column (common spellings of the other columns are recognised too)."""
    status = status_word(_first(record, STATUS_COLUMNS))
    left = parse_time(_first(record, LEFT_COLUMNS), "unsubscribed_at")
    if left and status in ("active", "pending") and not record.get("status"):
        status = "unsubscribed"  # a plain list that only says when someone left
    if "isactive" in record:
        status = "active" if _flag(record["isactive"], "isActive") else "unsubscribed"
    preferences = record.get("preferences")
    if preferences is not None and not isinstance(preferences, dict):
        raise ValueError("preferences is not an object")
    raw_categories: Any = record.get("categories")
    if isinstance(preferences, dict):
        frequency = preferences.get("frequency")
        if frequency not in (None, "", "weekly"):
            raise ValueError(f"frequency {frequency!r} is not supported (the digest is weekly)")
        if "categories" in preferences:
            raw_categories = preferences["categories"]
    consent: Any = record.get("consent")
    if isinstance(consent, str) and consent.strip():
        try:
            consent = json.loads(consent)
        except ValueError:
            raise ValueError("consent is not a JSON object") from None
    if consent in (None, ""):
        consent = {
            k[len("consent ") :]: v
            for k, v in record.items()
            if k.startswith("consent ") and v not in (None, "")
        }
    if not isinstance(consent, dict):
        raise ValueError("consent is not an object")
    name = _first(record, ("name", "full name", "display name"))
    if name is not None and not isinstance(name, str):
        raise ValueError("name is not text")
    return {
        "email": next((record[k] for k in EMAIL_COLUMNS if record.get(k)), None),
        "name": (name or "").strip()
        or _join_name(_text(record, "first name"), _text(record, "last name")),
        "status": status,
        "subscribed_at": parse_time(_first(record, SUBSCRIBED_COLUMNS), "subscribed_at"),
        "confirmed_at": parse_time(record.get("confirmed at"), "confirmed_at"),
        "status_at": parse_time(record.get("status at"), "status_at") or left,
        "categories": None if raw_categories is None else _category_names(raw_categories),
        "source_id": None if record.get("id") in (None, "") else str(record["id"]),
        "reason": _text(record, "reason") or None,
        "source": _text(record, "source") or None,
        "consent": consent,
    }


SUBSCRIBED_COLUMNS = (
    "subscribedat",
    "subscribed at",
    "created at",
    "created",
    "date added",
    "signup date",
    "sign up date",
    "subscription date",
    "subscribe date",
    "start date",
    "joined",
    "joined at",
)
STATUS_COLUMNS = ("status", "subscription status", "state")
LEFT_COLUMNS = ("unsubscribed at", "unsubscribe date", "unsubscription date")


def _first(record: Mapping[str, Any], names: Sequence[str]) -> Any:
    """The first of these columns that has a value."""
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            return value
    return None


PLATFORMS: tuple[Platform, ...] = (
    Platform(
        "mailchimp",
        "Mailchimp",
        lambda h: (
            "email address" in h
            and bool(h & {"member rating", "optin time", "confirm time", "leid", "euid"})
        ),
        _mailchimp,
        _mailchimp_kind,
    ),
    Platform(
        "mailchimp-api",
        "Mailchimp (API JSON)",
        lambda h: (
            "email address" in h and bool(h & {"timestamp opt", "merge fields", "unique email id"})
        ),
        _mailchimp_api,
    ),
    Platform(
        "ghost",
        "Ghost",
        lambda h: "email" in h and bool(h & {"subscribed to emails", "complimentary plan"}),
        _ghost,
    ),
    Platform(
        "substack",
        "Substack",
        lambda h: "email" in h and bool(h & {"email disabled", "active subscription"}),
        _substack,
    ),
    Platform(
        "listmonk",
        "listmonk",
        lambda h: {"uuid", "email", "status"} <= h and "attributes" in h,
        _listmonk,
    ),
    Platform(
        "buttondown",
        "Buttondown",
        lambda h: (
            bool(h & {"email", "email address"})
            and ("subscriber type" in h or ("type" in h and bool(h & {"creation date", "notes"})))
        ),
        _buttondown,
    ),
    Platform(
        "digest",
        "digest or a plain list",
        lambda h: bool(h & set(EMAIL_COLUMNS)),
        _digest,
    ),
)
PLATFORM_NAMES = tuple(p.name for p in PLATFORMS)


def detect(headers: Sequence[str], *, path: Path) -> Platform:
    folded = {fold(h) for h in headers}
    for platform in PLATFORMS:
        if platform.matches(folded):
            return platform
    shown = ", ".join(repr(h) for h in list(headers)[:8]) or "none"
    raise StoreError(
        f"{path}: cannot tell which platform exported it: no 'email' column among its "
        f"headers ({shown}); name the columns with --map "
        'email="Email Address",name="First Name"'
    )


def parse_mapping(text: str | Sequence[str] | None) -> dict[str, str]:
    """``email="Email Address",name="First Name"`` → {field: folded header}."""
    if not text:
        return {}
    parts: list[str] = []
    for item in [text] if isinstance(text, str) else list(text):
        parts.extend(next(csv.reader([item], skipinitialspace=True), []))
    mapping: dict[str, str] = {}
    for part in parts:
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = fold(key).replace(" ", "_")
        value = value.strip().strip('"').strip("'")
        if not sep or not value:
            raise StoreError(f'--map: {part!r} should be FIELD="Column name"')
        if key not in FIELDS:
            raise StoreError(f"--map: {key!r} is not one of {', '.join(FIELDS)}")
        mapping[key] = fold(value)
    return mapping


def _mapped(mapping: Mapping[str, str]) -> Converter:
    def convert(record: Mapping[str, Any], kind: str) -> dict[str, Any]:
        renamed = dict(record)
        for key, column in mapping.items():
            renamed[key.replace("_", " ")] = record.get(column)
        if ("first_name" in mapping or "last_name" in mapping) and "name" not in mapping:
            renamed["name"] = ""
        return _digest(renamed, kind)

    return convert


def to_incoming(
    raw: Mapping[str, Any],
    platform: str,
    categories: Categories,
    address: Callable[[str | None], str | None] = lambda ip: ip,
) -> tuple[Incoming, list[str]]:
    """Check the converted fields; raises ValueError with the reason a row is rejected."""
    value = raw.get("email")
    if not isinstance(value, str) or not value.strip():
        raise ValueError("no email address")
    value = value.strip().removeprefix("mailto:")
    display = ""
    if "<" in value and value.endswith(">"):  # "Ada Lovelace <ada@example.com>"
        display, value = parseaddr(value)
    try:
        email = normalise_email(value)
    except InvalidEmail as exc:
        raise ValueError(exc.message) from None
    warnings: list[str] = []
    given = raw.get("categories")
    known, unknown = categories.canonical(given or [])
    if unknown:
        left = ", ".join(known) if known else "every section"
        warnings.append(
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} "
            f"dropped; {email} gets {left}"
        )
    consent_data = {k: v for k, v in (raw.get("consent") or {}).items() if v}
    consent = None
    for key in ("ip", "confirm_ip"):
        if key in consent_data:
            consent_data[key] = address(str(consent_data[key]))
    if consent_data:
        consent_data.setdefault("method", f"import:{platform}")
        consent = Consent.from_dict(consent_data)
    status = raw.get("status") or "active"
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    source = raw.get("source") or f"import:{platform}"
    return (
        Incoming(
            email=email,
            name=(str(raw.get("name") or "").strip() or display)[:200],
            status=status,
            subscribed_at=raw.get("subscribed_at"),
            confirmed_at=raw.get("confirmed_at"),
            status_at=raw.get("status_at"),
            categories=None if given is None else known,
            source_id=raw.get("source_id"),
            reason=raw.get("reason"),
            source=source,
            consent=consent,
        ),
        warnings,
    )


# --------------------------------------------------------------------------- the import


@dataclass(frozen=True)
class Rejected:
    row: int
    reason: str
    email: str | None = None


@dataclass(frozen=True)
class Change:
    row: int
    email: str
    action: str  # add, update, keep
    detail: str


@dataclass
class ImportReport:
    path: str
    platform: str = ""
    encoding: str = "utf-8"
    dry_run: bool = False
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_inactive: int = 0  # rows that said "active" for someone who had left
    suppressed: int = 0  # rows for addresses erased on request
    by_status: dict[str, int] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    warnings: list[Rejected] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "platform": self.platform,
            "encoding": self.encoding,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "kept_inactive": self.kept_inactive,
            "suppressed": self.suppressed,
            "by_status": dict(self.by_status),
            "rejected": [r.__dict__ for r in self.rejected],
            "warnings": [w.__dict__ for w in self.warnings],
            "changes": [c.__dict__ for c in self.changes],
        }


def _platform_named(name: str) -> Platform:
    for platform in PLATFORMS:
        if platform.name == name:
            return platform
    raise StoreError(f"unknown platform {name!r}; known: {', '.join(PLATFORM_NAMES)}")


def iter_incoming(
    path: Path,
    categories: Categories,
    *,
    mapping: Mapping[str, str] | None = None,
    platform: str | None = None,
    report: ImportReport,
    address: Callable[[str | None], str | None] = lambda ip: ip,
) -> Iterator[tuple[int, Incoming]]:
    """The good rows of a file; rejected rows and warnings go into ``report``."""
    table = read_table(Path(path))
    report.encoding = table.encoding
    headers = set(fold(h) for h in table.headers)
    if mapping:
        missing = [column for column in mapping.values() if column not in headers]
        if missing and table.kind == "csv":
            raise StoreError(
                f"{path}: --map names column(s) the file does not have: "
                f"{', '.join(missing)} (its columns: {', '.join(table.headers)})"
            )
        chosen = Platform("mapped", "mapped columns", lambda h: True, _mapped(mapping))
    elif platform:
        chosen = _platform_named(platform)
    else:
        chosen = detect(table.headers, path=Path(path))
    report.platform = chosen.name
    kind = chosen.kind(headers)
    seen: dict[str, int] = {}
    for number, record, problem in table.rows:
        report.rows += 1
        if record is None:
            report.rejected.append(Rejected(number, problem or "unreadable row"))
            continue
        try:
            raw = chosen.convert(record, kind)
            incoming, warnings = to_incoming(raw, chosen.name, categories, address)
        except ValueError as exc:
            value = record.get("email") or record.get("email address")
            report.rejected.append(
                Rejected(number, str(exc), value if isinstance(value, str) else None)
            )
            continue
        if incoming.email in seen:
            report.rejected.append(
                Rejected(number, f"duplicate of row {seen[incoming.email]}", incoming.email)
            )
            continue
        seen[incoming.email] = number
        report.warnings.extend(Rejected(number, w, incoming.email) for w in warnings)
        yield number, incoming


def import_file(
    store: SubscriberStore,
    path: Path,
    categories: Categories,
    *,
    now: datetime,
    erasure_key: bytes | None,
    mapping: Mapping[str, str] | None = None,
    platform: str | None = None,
    dry_run: bool = False,
    address: Callable[[str | None], str | None] | None = None,
) -> ImportReport:
    """Add or update every good row of an export, in one transaction.

    Idempotent: importing the same file again changes nothing. A dry run does all of it
    and rolls back, so its report says exactly what would change. ``address`` turns an
    imported client address into its stored form (by default truncated to its network).
    """
    if address is None:
        address = lambda ip: records.stored_address(ip, "truncate", None)  # noqa: E731
    report = ImportReport(str(path), dry_run=dry_run)
    db = store.connection
    stamp = iso(now)
    with store.transaction(commit=not dry_run):
        # Checked once: with nothing erased there is nothing to recognise (and no key needed).
        check_erased = records.has_forgotten(db)
        for number, incoming in iter_incoming(
            path, categories, mapping=mapping, platform=platform, report=report, address=address
        ):
            erased = records.forgotten_at(db, incoming.email, erasure_key) if check_erased else None
            if erased is not None:
                report.suppressed += 1
                report.rejected.append(
                    Rejected(
                        number,
                        f"erased on request on {erased[:10]}; stays suppressed (only a new "
                        "confirmed subscription brings it back)",
                    )
                )
                continue
            _apply(store, number, incoming, report, stamp, now)
    return report


def _note(report: ImportReport, change: Change) -> None:
    if len(report.changes) < MAX_LISTED:
        report.changes.append(change)


def _apply(
    store: SubscriberStore,
    number: int,
    row: Incoming,
    report: ImportReport,
    stamp: str,
    now: datetime,
) -> None:
    db = store.connection
    existing = records.get_record(db, row.email, history=False)
    if existing is None:
        store.insert_imported(
            row.email,
            name=row.name,
            status=row.status,
            subscribed_at=row.subscribed_at or stamp,
            categories=row.categories or (),
            source_id=row.source_id,
            now=now,
            status_at=row.status_at,
            source=row.source or "",
        )
        records.set_details(
            db,
            row.email,
            consent=row.consent,
            confirmed_at=row.confirmed_at,
            reason=row.reason,
        )
        report.added += 1
        report.by_status[row.status] = report.by_status.get(row.status, 0) + 1
        _note(report, Change(number, row.email, "add", row.status))
        return
    # The status model decides: an import never makes a status weaker, so someone who
    # left is never brought back by one.
    decided = transition(existing.status, row.status, Cause.IMPORT)
    status = decided.after or existing.status
    kept = decided.outcome == "kept"
    name = row.name or existing.name
    source_id = row.source_id or existing.source_id
    changed: list[str] = []
    if status != existing.status:
        changed.append(f"status {existing.status} → {status}")
    if name != existing.name:
        changed.append("name")
    categories = existing.categories if row.categories is None else row.categories
    if categories != existing.categories:
        changed.append("categories")
    if source_id != existing.source_id:
        changed.append("id")
    new_consent = row.consent if existing.consent is None and row.consent else None
    if new_consent:
        changed.append("consent")
    new_confirmed = row.confirmed_at if not existing.confirmed_at and row.confirmed_at else None
    if new_confirmed:
        changed.append("confirmed_at")
    if kept:
        report.kept_inactive += 1
    if not changed:
        report.unchanged += 1
        if kept:
            _note(report, Change(number, row.email, "keep", f"stays {existing.status}"))
        return
    store.update_imported(row.email, name=name, categories=categories, source_id=source_id, now=now)
    if status != existing.status:
        store.change_status(row.email, status, cause=Cause.IMPORT, now=now)
    records.set_details(
        db,
        row.email,
        consent=new_consent,
        confirmed_at=new_confirmed,
        reason=row.reason if status != existing.status else None,
    )
    report.updated += 1
    _note(report, Change(number, row.email, "update", ", ".join(changed)))
