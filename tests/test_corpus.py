"""The real blog's 12,763 posts: what `digest select` makes of them must be exactly right."""

from __future__ import annotations

import collections
import json
import re
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from digest.cli import main

pytestmark = pytest.mark.corpus

CATEGORIES = [
    "Work", "General AI", "Healthcare", "Ethics", "Tools", "Finance", "Technology",
    "Research", "Business", "Productivity", "Transportation", "Smart Home", "Education",
]  # fmt: skip


def corpus_config(tmp_path: Path, corpus_dir: Path) -> Path:
    data = {
        "site": {"name": "AIVibe", "base_url": "https://aivibe.example.com"},
        "sender": {"from_name": "AIVibe", "from_email": "news@aivibe.example.com"},
        "timezone": "UTC",
        "content": {"posts_dir": str(corpus_dir), "cache_dir": str(tmp_path / "cache")},
        "categories": {"sections": [{"name": c} for c in CATEGORIES], "unlisted": "skip"},
        "limits": {"per_category": 8, "total": 60},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def direct_count(corpus_dir: Path, year: int, week: int) -> collections.Counter[str]:
    """Per-category counts of the files dated in an ISO week, read with plain regexes."""
    counts: collections.Counter[str] = collections.Counter()
    date_line = re.compile(r"^date:\s*['\"]?(\d{4}-\d{2}-\d{2})", re.MULTILINE)
    category_line = re.compile(r"^category:\s*['\"]?([^'\"\n]+)", re.MULTILINE)
    for path in corpus_dir.glob("*.md"):
        head = path.read_text(encoding="utf-8")[:3000]
        found = date_line.search(head)
        assert found, path
        if date.fromisoformat(found.group(1)).isocalendar()[:2] == (year, week):
            category = category_line.search(head)
            assert category, path
            counts[category.group(1).strip()] += 1
    return counts


def test_week_30_holds_exactly_the_posts_dated_in_it(tmp_path: Path, corpus_dir: Path) -> None:
    config = corpus_config(tmp_path, corpus_dir)
    result = CliRunner().invoke(
        main, ["--config", str(config), "select", "--week", "2026-W30", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["problems"] == []

    in_window = [d for d in data["decisions"] if d["reason"] != "out-of-window"]
    expected = direct_count(corpus_dir, 2026, 30)
    assert sum(expected.values()) > 150  # a real week of this blog
    by_category = collections.Counter(d["category"] for d in in_window)
    assert by_category == expected

    # Every post is accounted for: in the issue, or out with a reason that names why.
    reasons = collections.Counter(d["reason"] for d in in_window)
    assert set(reasons) <= {
        "selected", "duplicate", "near-duplicate", "over-section-limit", "over-total-limit",
        "filler", "same-story", "earlier-story",
    }  # fmt: skip
    # The filler collapses into one post per template, which is then dropped as filler;
    # ten reports are another outlet's telling, or a later day's, of a story already in
    # the issue (five of them the breach story told from Monday to Sunday).
    assert (reasons["filler"], reasons["same-story"]) == (2, 10)
    assert reasons["selected"] == data["count"] == 48
    for decision in in_window:
        if decision["reason"] in ("duplicate", "near-duplicate"):
            assert decision["duplicate_of"]
            assert decision["detail"].startswith(
                f"{decision['reason']} of {decision['duplicate_of']}"
            )
    # Sections hold the selected posts; "more" counts what the limits left out.
    left_out = sum(1 for d in in_window if d["reason"].startswith("over-"))
    assert sum(s["more"] for s in data["sections"]) == left_out
    # Five categories hold nothing but the machine-made filler this week: those sections
    # stay empty. Education keeps a single post, so it folds into "Also this week", which
    # takes the smallest other section (Smart Home, the last of three with five) with it.
    assert {s["name"] for s in data["sections"]} == set(CATEGORIES) - {
        "Business", "Ethics", "Research", "Technology", "Tools", "Smart Home", "Education",
    } | {"Also this week"}  # fmt: skip

    window_start = datetime.fromisoformat(data["window"]["start"])
    assert window_start == datetime(2026, 7, 20, tzinfo=timezone.utc)


def test_every_post_parses_with_a_real_title_and_a_known_category(
    tmp_path: Path, corpus_dir: Path
) -> None:
    from digest.config import load_config
    from digest.content import pipeline
    from digest.content.select import Rules

    config = load_config(corpus_config(tmp_path, corpus_dir))
    result = pipeline.load(config)
    assert len(result.posts) == 12_763
    assert result.problems == []
    rules = Rules.from_config(config)
    assert {rules.section_of(p.category) for p in result.posts} == set(CATEGORIES)
    assert not [p for p in result.posts if not p.title.strip() or p.title.startswith(">")]
    assert not [p for p in result.posts if "\n" in p.title or "  " in p.title]
    assert sum(1 for p in result.posts if not p.excerpt) == 0
