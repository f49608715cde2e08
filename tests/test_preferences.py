"""Preference variants while sending (digest/delivery/preferences.py): which variant each
subscriber's sections pick, and the variants a send holds with the batches made from them.

Sending whole issues with preferences, end to end, is tests/test_send_variants.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from digest.audience.subscribers import Subscriber
from digest.content.select import Section, Selection, Window
from digest.delivery import preferences
from digest.delivery.issue import Issue
from digest.delivery.preferences import ALL, MIXED, Variants, variant_of
from digest.delivery.providers.base import Recipient, idempotency_key

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ISSUE = "2026-W47"
SELECTION = Selection(
    Window(NOW - timedelta(days=7), NOW, ISSUE),
    (
        Section("Work", "Work", ()),
        Section("Tools", "Tools & Gadgets", ()),
        Section("Research", "Research", ()),
    ),
    (),
)


def _reader(*categories: str) -> Subscriber:
    return Subscriber(1, "ada@example.com", "Ada", "active", NOW.isoformat(), categories, b"s")


@pytest.mark.parametrize(
    ("categories", "variant"),
    [
        ((), ALL),
        (("work",), "Work"),
        (("Research", "WORK"), "Work+Research"),  # in the issue's order, not the reader's
        (("tools & gadgets",), "Tools"),  # a section's title counts as its name
        (("Work", "Tools", "Research"), ALL),
        (("Healthcare",), None),  # nothing this week in the reader's sections
    ],
)
def test_variant_of_names_the_sections_a_reader_chose(
    categories: tuple[str, ...], variant: str | None
) -> None:
    assert variant_of(_reader(*categories), SELECTION) == variant


def test_a_reader_who_chose_only_another_newsletters_sections_gets_this_one_whole() -> None:
    sections = (frozenset({"work", "tools", "research"}), frozenset({"recipes"}))
    assert variant_of(_reader("Recipes"), SELECTION, sections) == ALL
    assert variant_of(_reader("Recipes", "Work"), SELECTION, sections) == "Work"
    assert variant_of(_reader("Knitting"), SELECTION, sections) is None


class Composer:
    """Composes a variant as a string naming its sections; counts what it composed."""

    def __init__(self, *, wire: bool = True) -> None:
        self.composed: list[str] = []
        if wire:
            self.wire_template = self._wire_template

    def compose(self, config: Any, issue: Issue, selection: Selection, *, now: datetime) -> str:
        name = "+".join(s.name for s in selection.sections)
        self.composed.append(name)
        return f"email:{name}"

    def render(self, composed: Any, **kwargs: Any) -> Any:
        return (composed, kwargs["to"])

    def _wire_template(
        self, composed: str, *, date: datetime | None
    ) -> Callable[[Recipient], bytes]:
        return lambda recipient: f"{composed} to {recipient.email}".encode()


def _variants(composer: Composer) -> Variants:
    issue = Issue(SELECTION, "email:all")  # type: ignore[arg-type]
    return Variants(None, issue, composer, now=NOW)  # type: ignore[arg-type]


def _recipient(n: int) -> Recipient:
    values: Mapping[str, str] = {}
    return Recipient(n, f"r{n}@example.com", values, f"<{n}@x>")


def test_the_whole_issue_is_the_built_email_and_each_variant_is_composed_once() -> None:
    composer = Composer()
    variants = _variants(composer)

    assert variants.get(ALL)[0] == "email:all"
    assert variants.get("Work+Tools")[0] == "email:Work+Tools"
    assert variants.get("Work+Tools")[0] == "email:Work+Tools"
    assert composer.composed == ["Work+Tools"]


def test_only_the_most_recently_used_variants_are_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preferences, "VARIANTS_HELD", 2)
    composer = Composer()
    variants = _variants(composer)

    for name in ("Work", "Tools", "Work", "Research", "Tools"):
        variants.get(name)

    # Work was used again before Research came, so Tools was the one dropped
    assert composer.composed == ["Work", "Tools", "Research", "Tools"]
    assert list(variants.held) == ["Research", "Tools"]


def test_a_batch_carries_its_variant_and_the_key_of_its_recipients() -> None:
    variants = _variants(Composer())
    recipients = [_recipient(1), _recipient(2)]

    batch = variants.batch("Work", recipients)

    assert (batch.issue_id, batch.variant, batch.composed) == (ISSUE, "Work", "email:Work")
    assert batch.recipients == tuple(recipients)
    assert batch.idempotency_key == idempotency_key(
        ISSUE, "Work", [1, 2], ["r1@example.com", "r2@example.com"]
    )
    assert batch.wire is not None and batch.wire(recipients[0]) == b"email:Work to r1@example.com"
    assert variants.batch("Work", recipients, "kept").idempotency_key == "kept"


def test_a_mixed_batch_renders_each_message_from_its_own_variant() -> None:
    variants = _variants(Composer())
    parts = [("Work", _recipient(1)), ("Tools", _recipient(2)), ("Work", _recipient(3))]

    batch = variants.mixed_batch(parts)

    assert batch is not None
    assert batch.variant == MIXED
    assert batch.idempotency_key == idempotency_key(ISSUE, MIXED, [1, 2, 3])
    assert batch.wire is not None
    assert [batch.wire(r) for r in batch.recipients] == [
        b"email:Work to r1@example.com",
        b"email:Tools to r2@example.com",
        b"email:Work to r3@example.com",
    ]
    single = variants.mixed_batch([("Tools", _recipient(4))])
    assert single is not None and single.variant == "Tools"


def test_no_mixed_batch_without_wire_templates() -> None:
    variants = _variants(Composer(wire=False))
    assert variants.mixed_batch([("Work", _recipient(1)), ("Tools", _recipient(2))]) is None
    assert variants.batch("Work", [_recipient(1)]).wire is None
