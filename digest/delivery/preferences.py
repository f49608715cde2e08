"""Preference variants while sending: which variant each subscriber's chosen sections
pick, and the variants a send holds (each composed when its first row comes up) with the
batches made from them.

A variant is named by its sections (``Work+Tools``), or ``all`` for the whole issue, and
for a reader in another language than the site's, by that language first (``de:all``,
``de:Work+Tools``); composing one from the issue's parts is :mod:`digest.email.variants`' job.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from digest import i18n
from digest.audience.subscribers import Subscriber
from digest.audience.tokens import token_secret
from digest.config import Config
from digest.content.select import Selection
from digest.delivery.issue import Composer, Issue
from digest.delivery.providers.base import Batch, Recipient, idempotency_key
from digest.email.clicklinks import count_clicks, counts_clicks
from digest.email.message import ComposedEmail
from digest.email.openpixel import add_open_pixel, counts_opens

ALL = "all"
MIXED = "mixed"  # the variant of a batch whose recipients have several (ledger rows say which)
# Variants (composed email and wire template) held at once. Queued rows are read grouped by
# variant, so each is assembled about once; the bound keeps memory flat however many
# distinct preference sets subscribers have.
VARIANTS_HELD = 8


def variant_of(
    subscriber: Subscriber,
    selection: Selection,
    sections: tuple[frozenset[str], frozenset[str]] | None = None,
    site: str | None = None,
) -> str | None:
    """The subscriber's variant key: ``all``, ``Work+Tools``, or None for nothing to send;
    with ``site`` (the site's language), prefixed by the reader's own when it differs.

    ``sections`` (with several newsletters): the casefolded spellings of this newsletter's
    sections and of the other newsletters' sections. A subscriber whose categories name
    only other newsletters' sections chose within those, and receives this one whole.
    """
    key = _sections_key(subscriber, selection, sections)
    if key is None or site is None:
        return key
    language = i18n.language_of(subscriber.language, site)
    return key if language == i18n.language_of(None, site) else f"{language}:{key}"


def split_variant(variant: str) -> tuple[str | None, str]:
    """(the language of a variant key, or None for the site's; its sections key)."""
    head, sep, rest = variant.partition(":")
    if sep and head in i18n.catalogues():
        return head, rest
    return None, variant


def in_language(config: Config, language: str | None) -> Config:
    """``config`` as a reader in ``language`` sees it (None: as it is)."""
    if language is None:
        return config
    return config.model_copy(update={"site": config.site.model_copy(update={"language": language})})


def _sections_key(
    subscriber: Subscriber,
    selection: Selection,
    sections: tuple[frozenset[str], frozenset[str]] | None,
) -> str | None:
    if not subscriber.categories:
        return ALL
    wanted = {c.casefold() for c in subscriber.categories}
    if sections is not None and not wanted & sections[0] and wanted & sections[1]:
        return ALL
    names = [s.name for s in selection.sections if s.chosen_by(wanted)]
    if not names:
        return None
    if len(names) == len(selection.sections):
        return ALL
    return "+".join(names)


def section_names(config: Config) -> tuple[frozenset[str], frozenset[str]] | None:
    """Every spelling of this newsletter's sections and of the other newsletters' (see
    :func:`variant_of`), casefolded; None with one newsletter."""
    if len(config.newsletter_names) < 2:
        return None

    def spellings(one: Config) -> frozenset[str]:
        return frozenset(
            spelling.casefold()
            for section in one.categories.sections
            for spelling in (section.name, section.title, *section.aliases)
        )

    own = spellings(config)
    others = frozenset().union(
        *(
            spellings(config.for_newsletter(name))
            for name in config.newsletter_names
            if name != config.newsletter_name
        )
    )
    return own, others - own


Wire = Callable[[Recipient], bytes]


class Variants:
    """One issue's variants for one send: composed when first needed, held while recently
    used, and made into batches."""

    def __init__(self, config: Config, issue: Issue, composer: Composer, *, now: datetime) -> None:
        self.config = config
        self.issue = issue
        self.issue_id = issue.selection.issue_id
        self.composer = composer
        self.now = now
        # variant → (composed email, wire template or None); the least recently used goes.
        self.held: OrderedDict[str, tuple[Any, Wire | None]] = OrderedDict()
        # analytics.clicks: each variant's post links are counted (digest.email.clicklinks);
        # composers that stand in for the build stage may come without a config
        counting = config is not None and (counts_clicks(config) or counts_opens(config))
        self.click_key = token_secret(config) if counting else None

    def get(self, variant: str) -> tuple[Any, Wire | None]:
        """The variant's composed email and wire template (None: the composer has no fast
        path), built when first needed and held while recently used."""
        held = self.held.get(variant)
        if held is not None:
            self.held.move_to_end(variant)
            return held
        language, key = split_variant(variant)
        if key == ALL and language is None:
            composed = self.issue.composed
        else:
            selection = self.issue.selection
            chosen = selection if key == ALL else selection.only(key.split("+"))
            config = in_language(self.config, language)
            composed = self.composer.compose(config, self.issue, chosen, now=self.now)
        if self.click_key is not None and isinstance(composed, ComposedEmail):
            composed = count_clicks(
                self.config,
                composed,
                variant=variant,
                issue_posts=self.issue.composed.posts,
                key=self.click_key,
            )
            composed = add_open_pixel(
                self.config, composed, variant=variant, sent=self.now, key=self.click_key
            )
        make = getattr(self.composer, "wire_template", None)
        held = (composed, make(composed, date=self.now) if make is not None else None)
        self.held[variant] = held
        if len(self.held) > VARIANTS_HELD:
            self.held.popitem(last=False)
        return held

    def batch(self, variant: str, recipients: Sequence[Recipient], key: str | None = None) -> Batch:
        ids = [r.subscriber_id for r in recipients]
        composed, wire = self.get(variant)
        return Batch(
            issue_id=self.issue_id,
            variant=variant,
            composed=composed,
            recipients=tuple(recipients),
            idempotency_key=key
            or idempotency_key(self.issue_id, variant, ids, [r.email for r in recipients]),
            renderer=self.composer.render,
            date=self.now,
            wire=wire,
        )

    def mixed_batch(self, parts: Sequence[tuple[str, Recipient]]) -> Batch | None:
        """One batch for recipients of several variants, each message from its own
        variant's wire template (providers that send each message on its own); None when
        the composer has no wire templates."""
        held: dict[str, tuple[Any, Wire | None]] = {}
        wires: dict[int, Wire] = {}
        for variant, recipient in parts:
            if variant not in held:  # the batch holds its variants, whatever the cache drops
                held[variant] = self.get(variant)
            wire = held[variant][1]
            if wire is None:
                return None
            wires[recipient.subscriber_id] = wire
        variant = parts[0][0] if len(held) == 1 else MIXED
        recipients = tuple(r for _, r in parts)

        def wire_of(recipient: Recipient) -> bytes:
            return wires[recipient.subscriber_id](recipient)

        return Batch(
            issue_id=self.issue_id,
            variant=variant,
            composed=held[parts[0][0]][0],
            recipients=recipients,
            idempotency_key=idempotency_key(
                self.issue_id, variant, [r.subscriber_id for r in recipients]
            ),
            renderer=self.composer.render,
            date=self.now,
            wire=wire_of,
        )
