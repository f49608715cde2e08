"""A subscriber's own settings beside their sections: how each is checked and stored.

``digest subscribers set``, imports and the pages change them through :func:`apply`, which
checks every value given before anything is stored (a bad one is a StoreError naming it,
and nothing changes). A setting left as None is not touched. Today that is the
language; another setting is one more keyword and one more check here.
"""

from __future__ import annotations

from datetime import datetime

from digest import i18n
from digest.audience.subscribers import Subscriber, SubscriberStore
from digest.errors import StoreError


def check_language(value: str) -> str:
    """A language tag as stored ('' for the site's); StoreError for anything else."""
    if value.strip().lower() in ("", "default", "site"):
        return ""
    tag = i18n.normalise(value)
    if tag is None:
        raise StoreError(
            f"--language {value!r} is not a language tag; use one such as "
            f"{', '.join(i18n.catalogues())}"
        )
    return tag


def apply(
    store: SubscriberStore, email: str, *, now: datetime, language: str | None = None
) -> Subscriber:
    """Check every setting given, then store them; returns the subscriber after it."""
    found = store.get(email)
    if found is None:
        raise StoreError(f"{email} is not a subscriber")
    checked_language = None if language is None else check_language(language)
    if checked_language is not None and checked_language != found.language:
        found = store.set_language(found.email, checked_language, now=now)
    return found
