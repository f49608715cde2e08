"""One subscriber as an import file gives it, in the store's terms: what a platform's
converter produces, and the checks every row passes whatever its platform."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from digest.audience.records import Consent
from digest.audience.rhythm import FREQUENCIES, zone_or_default
from digest.audience.subscribers import (
    STATUSES,
    Categories,
    InvalidEmail,
    clean_name,
    normalise_email,
)


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
    language: str | None = None  # a checked tag (digest.i18n.normalise); None: not given
    frequency: str | None = None  # None: the file does not say
    timezone: str | None = None


Converter = Callable[[Mapping[str, Any], str], dict[str, Any]]
"""(record by folded header, file kind) -> the fields of an :class:`Incoming` (raw)."""


@dataclass(frozen=True)
class Platform:
    name: str
    title: str
    matches: Callable[[set[str]], bool]
    convert: Converter
    kind: Callable[[set[str]], str] = lambda headers: ""


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
    frequency, zone = _rhythm(raw, email, warnings)
    return (
        Incoming(
            email=email,
            name=clean_name(str(raw.get("name") or "")) or clean_name(display),
            status=status,
            subscribed_at=raw.get("subscribed_at"),
            confirmed_at=raw.get("confirmed_at"),
            status_at=raw.get("status_at"),
            categories=None if given is None else known,
            source_id=raw.get("source_id"),
            reason=raw.get("reason"),
            source=source,
            consent=consent,
            language=raw.get("language"),
            frequency=frequency,
            timezone=zone,
        ),
        warnings,
    )


def _rhythm(
    raw: Mapping[str, Any], email: str, warnings: list[str]
) -> tuple[str | None, str | None]:
    """The row's cadence (a bad one rejects the row) and zone (a bad one is dropped with a
    warning: the reader then gets the schedule's timezone)."""
    frequency = raw.get("frequency")
    if frequency in (None, ""):
        frequency = None
    else:
        frequency = str(frequency).strip().lower()
        if frequency not in FREQUENCIES:
            raise ValueError(
                f"frequency {raw.get('frequency')!r} is not one of {', '.join(FREQUENCIES)}"
            )
    given = raw.get("timezone")
    zone = zone_or_default(str(given)) if given not in (None, "") else None
    if given not in (None, "") and zone is None:
        warnings.append(
            f"unknown timezone {str(given)[:64]!r} dropped; {email} gets the schedule's"
        )
    return frequency, zone
