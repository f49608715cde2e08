"""Which newsletters each subscriber receives, when a config has more than one.

A subscriber's choice is part of their preferences, kept beside the subscribers table in
the same database (table ``newsletter_choices``). Someone who never chose receives the
default newsletter (the config's first), exactly as before ``newsletters:`` existed;
someone who chose receives exactly the newsletters chosen, each once per issue (the
ledger is keyed by the issue id, which names the newsletter).

A choice is recorded against the subscriber's id *and* address, and goes when the
subscriber's row goes (removed, or forgotten on request): an id that SQLite hands out again
never inherits someone else's choice, and an erased address leaves nothing here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from digest.audience import rhythm
from digest.audience.imports.importer import iter_incoming
from digest.audience.imports.report import ImportReport
from digest.audience.subscribers import Categories, Subscriber, SubscriberStore
from digest.config import Config
from digest.content.window import Window
from digest.errors import StoreError


def check_names(config: Config, names: Iterable[str]) -> tuple[str, ...]:
    """``names`` in the config's order; an unknown one is a StoreError naming the known."""
    known = config.newsletter_names
    wanted = {n.strip() for n in names if n.strip()}
    unknown = sorted(wanted - set(known))
    if unknown:
        raise StoreError(
            f"no newsletter named {', '.join(unknown)}; the config has {', '.join(known)}"
        )
    return tuple(n for n in known if n in wanted)


class NewsletterChoices:
    """The newsletter_choices table of a subscriber store (its migration 4), read and
    written on the store's own connection, so it works on either backend."""

    def __init__(self, store: SubscriberStore) -> None:
        self.path = store.path
        self._db = store.connection

    def __enter__(self) -> NewsletterChoices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """The connection is the store's: it closes with the store."""

    def of(self, subscriber: Subscriber) -> tuple[str, ...]:
        """The newsletters the subscriber chose (empty: never chose)."""
        rows = self._db.execute(
            "SELECT newsletter FROM newsletter_choices WHERE subscriber_id = ? AND email = ?"
            " ORDER BY newsletter",
            (subscriber.id, subscriber.email),
        )
        return tuple(row[0] for row in rows)

    def receives(self, subscriber: Subscriber, config: Config) -> tuple[str, ...]:
        """The newsletters the subscriber receives, in the config's order."""
        chosen = set(self.of(subscriber))
        names = config.newsletter_names
        return tuple(n for n in names if n in chosen) if chosen else (names[0],)

    def choose(self, subscriber: Subscriber, names: Sequence[str]) -> None:
        """Replace the subscriber's choice with ``names`` (already checked)."""
        if not names:
            raise StoreError("choose at least one newsletter (or unsubscribe)")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "DELETE FROM newsletter_choices WHERE subscriber_id = ?", (subscriber.id,)
            )
            self._db.executemany(
                "INSERT INTO newsletter_choices VALUES (?, ?, ?)",
                [(subscriber.id, subscriber.email, name) for name in names],
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: the newsletter choice was not saved: {exc}") from None

    def assign(
        self, subscriber: Subscriber, names: Sequence[str], config: Config, *, new: bool
    ) -> None:
        """An import assigning newsletters: a new subscriber receives exactly ``names``;
        one who was there already keeps what they received and gains ``names``."""
        current = self.receives(subscriber, config) if not new else ()
        self.choose(subscriber, check_names(config, [*current, *names]))

    def chosen_map(self) -> dict[int, tuple[str, set[str]]]:
        """subscriber id -> (email, newsletters) for everyone who chose."""
        found: dict[int, tuple[str, set[str]]] = {}
        for sid, email, name in self._db.execute(
            "SELECT subscriber_id, email, newsletter FROM newsletter_choices"
        ):
            found.setdefault(sid, (email, set()))[1].add(name)
        return found


def recipients(
    config: Config,
    store: SubscriberStore,
    *,
    chunk: int = 1000,
    window: Window | None = None,
    due_by: datetime | None = None,
) -> Iterator[Subscriber]:
    """The active subscribers who receive ``config``'s newsletter, in id order; given the
    issue's ``window``, only those whose cadence it is (:func:`rhythm.receives_issue`), and
    with ``due_by`` only those whose local send time has come by then."""
    active = store.iter_active(chunk=chunk)
    if window is not None:
        active = rhythm.of_cadence(store, active, window, config, due_by=due_by)
    if len(config.newsletter_names) < 2:
        yield from active
        return
    with NewsletterChoices(store) as choices:
        chosen = choices.chosen_map()
    name = config.newsletter_name
    default = config.is_default_newsletter
    for subscriber in active:
        entry = chosen.get(subscriber.id)
        if entry is None or entry[0] != subscriber.email:
            if default:
                yield subscriber
        elif name in entry[1]:
            yield subscriber


def export_emails(
    path: Path,
    categories: Categories,
    *,
    mapping: Mapping[str, str] | None = None,
    platform: str | None = None,
) -> list[str]:
    """The addresses of the good rows of an export (read the way an import reads it)."""
    scratch = ImportReport(str(path))
    return [
        incoming.email
        for _, incoming in iter_incoming(
            path, categories, mapping=mapping, platform=platform, report=scratch
        )
    ]


def assign_imported(
    store: SubscriberStore,
    emails: Sequence[str],
    existed: set[str],
    config: Config,
    names: Sequence[str],
) -> None:
    """After an import, everyone in ``emails`` receives the newsletters ``names``: someone
    the import added receives exactly those; someone who was there already (``existed``)
    keeps what they received and gains ``names``."""
    chosen = check_names(config, names)
    if not chosen:
        return
    with NewsletterChoices(store) as choices:
        for email in dict.fromkeys(emails):
            subscriber = store.get(email)
            if subscriber is not None:
                choices.assign(subscriber, chosen, config, new=email not in existed)


def listed(config: Config) -> list[tuple[str, str, str]]:
    """(name, title, description) of every newsletter, for the subscriber pages; empty
    when the config has one (the pages then look as they always did)."""
    if len(config.newsletter_names) < 2:
        return []
    return [
        (name, config.newsletter_title(name), config.newsletter_description(name))
        for name in config.newsletter_names
    ]


def choose_from_form(
    store: SubscriberStore, email: str, names: Sequence[str], config: Config
) -> tuple[str, ...]:
    """Record what a subscriber ticked on a page: unknown names are ignored (it is public
    input), nothing ticked changes nothing. Returns what the subscriber now receives."""
    subscriber = store.get(email)
    if subscriber is None:
        return ()
    known = [n for n in config.newsletter_names if n in set(names)]
    with NewsletterChoices(store) as choices:
        if known:
            choices.choose(subscriber, known)
        return choices.receives(subscriber, config)


def receiving(store: SubscriberStore, email: str, config: Config) -> tuple[str, ...]:
    subscriber = store.get(email)
    if subscriber is None:
        return ()
    with NewsletterChoices(store) as choices:
        return choices.receives(subscriber, config)


def leave(
    store: SubscriberStore, subscriber: Subscriber, name: str, config: Config
) -> tuple[str, ...]:
    """Stop sending newsletter ``name`` to the subscriber; returns what they still receive.

    Empty: ``name`` was the last one. The choice is then left as it was (the caller
    unsubscribes them, and someone who subscribes again gets back what they had)."""
    with NewsletterChoices(store) as choices:
        current = choices.receives(subscriber, config)
        remaining = tuple(n for n in current if n != name)
        if remaining and remaining != current:
            choices.choose(subscriber, remaining)
        return remaining
