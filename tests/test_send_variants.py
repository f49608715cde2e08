"""Sending to subscribers with category preferences: each gets their variant, assembled once,
in full batches, with few variants held at a time."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from digest.audience.subscribers import SubscriberStore
from digest.audience.tokens import token_secret
from digest.config import Config
from digest.content import pipeline
from digest.content.intro import load_intro
from digest.delivery import preferences
from digest.delivery.issue import BuildComposer
from digest.delivery.ledger import PENDING, SENT, Ledger
from digest.delivery.send import send_issue
from digest.email.compose import compose
from digest.email.message import fill, recipient_values
from tests.helpers import edit_config

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WEEK = "2026-W47"
SECTIONS = ("Work", "Productivity", "Tools", "Research", "Healthcare", "Ethics")


def _site(sample_site: Path, batch_size: int = 10) -> Config:
    return edit_config(sample_site, send={"batch_size": batch_size})


def _populate(config: Config, n: int, seed: int = 14) -> dict[str, tuple[str, ...]]:
    """``n`` readers, each with 1–4 random sections (some with none: everything)."""
    rng = random.Random(seed)
    chosen: dict[str, tuple[str, ...]] = {}
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        for i in range(n):
            cats = () if i % 7 == 0 else tuple(rng.sample(SECTIONS, rng.randint(1, 4)))
            email = f"reader{i:03d}@example.com"
            store.add(email, name=f"Reader {i}", categories=cats, now=NOW)
            chosen[email] = cats
    return chosen


def _html(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    content: str = part.get_content()
    return content.replace("\r\n", "\n")  # the part's lines end in CRLF on the wire


class CountingComposer(BuildComposer):
    def __init__(self) -> None:
        super().__init__()
        self.composed: list[str] = []

    def compose(self, config: Config, issue: Any, selection: Any, *, now: datetime) -> Any:
        self.composed.append("+".join(s.name for s in selection.sections))
        return super().compose(config, issue, selection, now=now)


@pytest.mark.slow  # seconds of work even alone: outside the fast lane
def test_each_reader_gets_what_composing_their_sections_gives(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _site(sample_site)
    chosen = _populate(config, 40)
    monkeypatch.setattr(preferences, "VARIANTS_HELD", 2)  # fewer than the variants
    composer = CountingComposer()
    report = send_issue(config, now=NOW, week=WEEK, composer=composer)
    assert (report.sent, report.complete) == (40, True)

    # Every variant was assembled once: rows come grouped by variant.
    assert len(composer.composed) == len(set(composer.composed))
    assert sorted(composer.composed) == sorted(v for v in report.variants if v != "all")

    # Each message's HTML is the variant composed from scratch, with the reader's values.
    selection = pipeline.load_and_select(config, NOW, week=WEEK).selection
    intro = load_intro(config, WEEK)
    server = token_secret(config)
    outbox = config.path(config.out_dir) / WEEK / "outbox"
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        for path in outbox.glob("*.eml"):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(message, EmailMessage)
            subscriber = store.get(str(message["To"]))
            assert subscriber is not None
            whole = compose(config, selection.only(chosen[subscriber.email]), now=NOW, intro=intro)
            values = recipient_values(config, subscriber, server)
            assert _html(message) == fill(whole.html, values, html=True)
            assert str(message["Subject"]) == whole.subject


def test_outbox_batches_mix_variants_and_rows_keep_their_own(sample_site: Path) -> None:
    config = _site(sample_site, batch_size=10)
    chosen = _populate(config, 40)
    report = send_issue(config, now=NOW, week=WEEK)
    assert len(report.variants) > 10  # more variants than batches
    with Ledger(config.path(config.ledger.database)) as ledger:
        rows = [d for chunk in ledger.iter_state(WEEK, [SENT]) for d in chunk]
    assert len(rows) == 40
    assert len({d.batch_key for d in rows}) == 4  # 40 readers in batches of 10
    for row in rows:
        cats = set(chosen[row.email])
        expected = "all" if not cats or cats == set(SECTIONS) else "+"
        if expected == "all":
            assert row.variant == "all"
        else:  # the sections they chose, in the issue's order
            assert row.variant == "+".join(s for s in SECTIONS if s in cats)


def test_rows_are_read_grouped_by_variant(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        rows = [(i, f"r{i}@example.com", ["b", "a", "c"][i % 3]) for i in range(1, 31)]
        ledger.enqueue(WEEK, rows, now=NOW)
        seen = [
            (d.variant, d.subscriber_id)
            for chunk in ledger.iter_state(WEEK, [PENDING], chunk=7, by_variant=True)
            for d in chunk
        ]
        assert seen == sorted((v, i) for i, _, v in rows)
        plain = [d.subscriber_id for c in ledger.iter_state(WEEK, [PENDING]) for d in c]
        assert plain == list(range(1, 31))
