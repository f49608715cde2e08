"""Which platform exported a file, told by its header row. The first whose columns match
wins, so the most particular come first and a plain list with an email column last."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from digest.audience.imports import buttondown, generic, ghost, listmonk, mailchimp, substack
from digest.audience.imports.incoming import Platform
from digest.audience.imports.table import fold
from digest.errors import StoreError

PLATFORMS: tuple[Platform, ...] = (
    mailchimp.EXPORT,
    mailchimp.API,
    ghost.PLATFORM,
    substack.PLATFORM,
    listmonk.PLATFORM,
    buttondown.PLATFORM,
    generic.PLATFORM,
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


def platform_named(name: str) -> Platform:
    for platform in PLATFORMS:
        if platform.name == name:
            return platform
    raise StoreError(f"unknown platform {name!r}; known: {', '.join(PLATFORM_NAMES)}")
