"""Where excerpts end, and the promotional lines they drop (content/excerpts.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.content.excerpts import PROMOTION, cut_at_boundary
from digest.content.text import DEFAULT_CLEANER


def test_a_long_excerpt_ends_after_its_last_whole_sentence() -> None:
    text = "The council voted on Tuesday. The plan adds night buses to four routes. " * 3
    cut = cut_at_boundary(text, 100)
    assert cut == "The council voted on Tuesday. The plan adds night buses to four routes."
    assert not cut.endswith(".…")


def test_an_abbreviation_is_not_a_sentence_end() -> None:
    text = "Prices rise on Aug. 9 for every plan sold in the region, the company said today."
    assert cut_at_boundary(text, 40) == "Prices rise on Aug. 9 for every plan…"


def test_without_a_sentence_it_ends_at_a_clause_then_a_word_never_inside_one() -> None:
    clause = "A long opening clause about the harbour and its many boats, then another part"
    assert cut_at_boundary(clause, 70) == (
        "A long opening clause about the harbour and its many boats…"
    )
    words = "Apple’s smallest phone arrives with a bigger battery and a brighter screen"
    cut = cut_at_boundary(words, 30)
    assert cut == "Apple’s smallest phone arrives…"
    assert words.startswith(cut[:-1])
    assert cut_at_boundary("Short enough.", 30) == "Short enough."


@pytest.mark.parametrize(
    "line",
    [
        "This is The Stepback, a weekly newsletter breaking down one essential story.",
        "Disclosure: the parent company has a lawsuit against the lab.",
        "(Disclosure: Ziff Davis filed a lawsuit.)",
        "By Adnan Ahmed Aug. 9, 2026",
        "Regular Studio/Top Hat Studios, Inc.",
    ],
)
def test_promotional_and_disclosure_lines_are_excerpt_rules(line: str) -> None:
    assert any(re.search(p, line, re.IGNORECASE) for p in PROMOTION)
    story = "The city opened its first tidal power station on the northern shore this week."
    cleaned = DEFAULT_CLEANER.tidy(f"{line} {story}", "Harbour news")
    assert cleaned.text == story
    assert {r.rule for r in cleaned.removed} <= {"boilerplate", "byline"}
    assert cleaned.removed


def test_a_long_word_is_never_split() -> None:
    address = "https://example.com/" + "a" * 80
    assert cut_at_boundary(f"Read it at {address} today", 40) == "Read it at…"
    assert cut_at_boundary(f"{address} is where", 40) == f"{address}…"


_WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz’.,;:!?-—\"'()", min_size=1, max_size=14)


@settings(max_examples=400, deadline=None)
@given(st.lists(_WORDS, min_size=1, max_size=60), st.integers(min_value=20, max_value=300))
def test_an_excerpt_never_ends_inside_a_word_or_with_a_stop_and_an_ellipsis(
    words: list[str], limit: int
) -> None:
    text = " ".join(words)
    cut = cut_at_boundary(text, limit)
    assert not cut.endswith(".…")
    kept = cut.removesuffix("…")
    assert text.startswith(kept)
    following = text[len(kept) : len(kept) + 1]
    assert following in ("", " ") or not following.isalnum() or not kept[-1:].isalnum(), (
        f"{text!r} cut inside a word at {len(kept)}: {cut!r}"
    )
