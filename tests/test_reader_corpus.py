"""What a reader sees of the real blog's weeks: clean excerpts, true titles, each story once,
an email that fits as sent.

Each week is built after the week before it (13 sections, 3 per category, 30 in all), so
the earlier issue's manifest is there to be remembered. The checks here are written
independently of the cleaning rules: plain patterns for what a reader would notice, and
exact shingle overlap for duplicates.
"""

from __future__ import annotations

import email
import email.policy
import html
import itertools
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import html as lxml_html

from digest.audience.links import subscriber_urls
from digest.audience.tokens import handle_of, make_token
from digest.config import Config, load_config
from digest.content.memory import normalise_source
from digest.content.posts import Post
from digest.content.text import body_words, normalise_title
from digest.email.build import BuildResult, build_issue
from digest.email.message import to_message

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
CATEGORIES = [
    "Work", "General AI", "Healthcare", "Ethics", "Tools", "Finance", "Technology",
    "Research", "Business", "Productivity", "Transportation", "Smart Home", "Education",
]  # fmt: skip
WEEKS = [("2026-W25", "2026-W26"), ("2026-W29", "2026-W30"), ("2026-W01", "2026-W02")]

# What a reader would call scraped junk, matched without the cleaner's own patterns.
JUNK = {
    "byline": re.compile(r"\bBy [A-Z][a-z]+ [A-Z][a-z]+\b.{0,20}\b20\d\d\b"),
    "timestamp": re.compile(r"\b\d{1,2}:\d{2}\s*(?:[ap]\.?m\.?|[AP]M)\b|\bPosted:"),
    "credit": re.compile(r"Image Credits?:|Photo:|Getty Images|Shutterstock", re.IGNORECASE),
    "breadcrumb": re.compile(r"\b(\w+) Home \1\b|^\w+ Home\b"),
}
ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z]+\d*);", re.IGNORECASE)


def _config(tmp_path: Path, corpus_dir: Path, per_category: int, total: int) -> Config:
    data = {
        "site": {"name": "AIVibe Weekly", "base_url": "https://aivibe.example.com"},
        "sender": {
            "from_name": "AIVibe Weekly",
            "from_email": "weekly@aivibe.example.com",
            "unsubscribe_mailto": "unsubscribe@aivibe.example.com",
            "postal_address": "AIVibe, 1 Example Road, Springfield",
        },
        "timezone": "UTC",
        "content": {"posts_dir": str(corpus_dir), "cache_dir": str(tmp_path / "cache")},
        "categories": {"sections": [{"name": c} for c in CATEGORIES], "unlisted": "skip"},
        "limits": {"per_category": per_category, "total": total},
        "serve": {"public_url": "https://aivibe.example.com"},
        "out_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_config(path)


def _shingles(post: Post) -> set[tuple[str, ...]]:
    text = post.path.read_text(encoding="utf-8").split("\n---", 2)[-1]
    words = body_words(text)
    return {tuple(words[i : i + 4]) for i in range(len(words) - 3)}


def _jaccard(a: set[Any], b: set[Any]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _sent_html(config: Config, result: BuildResult) -> bytes:
    """The HTML part exactly as a subscriber's message carries it (personalised, encoded)."""
    address = "a.long.subscriber.address.for.testing@example-mail-provider.com"
    key = b"k" * 32
    values = {
        **subscriber_urls(
            config,
            unsubscribe_token=make_token("unsubscribe", handle_of(key), key),
            preferences_token=make_token("preferences", handle_of(key), key),
        ),
        "name": "Subscriber",
    }
    message = to_message(result.composed, to=address, values=values)
    part = message.get_payload()[1]
    body: bytes = part.as_bytes().split(b"\r\n\r\n", 1)[1]
    return body


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path
) -> dict[str, tuple[Config, BuildResult, BuildResult]]:
    """(config, previous week's build, the week's build) per week under test."""
    results = {}
    for previous, week in WEEKS:
        tmp = tmp_path_factory.mktemp(week)
        config = _config(tmp, corpus_dir, 3, 30)
        before = build_issue(config, now=NOW, week=previous)
        results[week] = (config, before, build_issue(config, now=NOW, week=week))
    return results


@pytest.mark.parametrize("week", [w for _, w in WEEKS])
def test_excerpts_and_titles_are_clean(
    built: dict[str, tuple[Config, BuildResult, BuildResult]], week: str
) -> None:
    _, _, result = built[week]
    assert result.composed.post_count >= 12  # a real week fills most sections
    problems = []
    for post in result.selection.posts:
        for name, pattern in JUNK.items():
            if pattern.search(post.excerpt):
                problems.append(f"{post.slug}: {name} in {post.excerpt!r}")
    assert problems == []
    # No character reference shown as text: in headings, links, alt, the text part, the
    # subject and the preheader.
    tree = lxml_html.document_fromstring(result.composed.html)
    shown = " ".join(tree.xpath("//body//text()")) + " ".join(tree.xpath("//img/@alt"))
    for where, text in (
        ("html", shown),
        ("text", result.composed.text),
        ("subject", result.composed.subject),
        ("preheader", result.composed.preheader),
    ):
        assert ENTITY.findall(text) == [], where
    # Nothing is escaped twice in the markup either.
    assert "&amp;#" not in result.composed.html and "&amp;amp;" not in result.composed.html


@pytest.mark.parametrize("week", [w for _, w in WEEKS])
def test_each_story_once(
    built: dict[str, tuple[Config, BuildResult, BuildResult]], week: str
) -> None:
    _, before, result = built[week]
    posts = result.selection.posts
    shingles = {p.slug: _shingles(p) for p in posts}
    close = [
        (a.slug, b.slug, round(_jaccard(shingles[a.slug], shingles[b.slug]), 2))
        for a, b in itertools.combinations(posts, 2)
        if _jaccard(shingles[a.slug], shingles[b.slug]) >= 0.8
    ]
    assert close == []
    titles = [normalise_title(p.title) for p in posts]
    assert len(set(titles)) == len(titles)
    # Nothing from the previous issue: not the post, its title or its source.
    earlier = before.selection.posts
    shown_before = {s for _, s, _ in before.composed.posts}
    earlier = [p for p in earlier if p.slug in shown_before]
    assert earlier
    assert {p.slug for p in posts} & {p.slug for p in earlier} == set()
    assert {normalise_title(p.title) for p in posts} & {
        normalise_title(p.title) for p in earlier
    } == set()
    sources = {normalise_source(p.source) for p in earlier if p.source}
    assert {normalise_source(p.source) for p in posts if p.source} & sources == set()
    reasons = {d.reason.value for d in result.selection.decisions}
    # The machine-made filler collapsed: into this week's first one, or last week's.
    assert reasons & {"near-duplicate", "in-earlier-issue"}


@pytest.mark.parametrize("week", [w for _, w in WEEKS])
def test_the_email_as_sent_fits(
    built: dict[str, tuple[Config, BuildResult, BuildResult]], week: str
) -> None:
    config, _, result = built[week]
    body = _sent_html(config, result)
    assert len(body) < 100_000
    composed = result.composed
    shown = composed.post_count
    # Subject, preheader, masthead and text part agree with what is shown.
    # The subject is written from the lead's whole headline, or says how many stories.
    lead = result.selection.posts[0].title
    assert composed.subject in (
        f"AIVibe Weekly: {lead} and {shown - 1} more",
        f"AIVibe Weekly: {lead}",
        f"AIVibe Weekly: {shown} stories this week",
    )
    assert len(composed.subject) <= 70
    assert composed.preheader.startswith(f"{shown} posts")
    assert f"· {shown} posts" in composed.text.splitlines()[2]
    parsed = email.message_from_bytes(body, policy=email.policy.default)
    assert parsed is not None
    assert html.unescape(composed.subject) == composed.subject


def test_fifty_per_category_still_fits_as_sent(tmp_path: Path, corpus_dir: Path) -> None:
    config = _config(tmp_path, corpus_dir, 50, 650)
    result = build_issue(config, now=NOW, week="2026-W26", write=False)
    body = _sent_html(config, result)
    assert len(body) < 100_000
    composed = result.composed
    assert composed.sent_size is not None and len(body) <= composed.sent_size
    shown = composed.post_count
    assert composed.trimmed  # it had to trim
    tree = lxml_html.document_fromstring(composed.html)
    masthead = tree.xpath("//p[@class='issue-dates']/text()")[0]
    assert masthead.endswith(f" · {shown} posts")
    assert composed.preheader.startswith(f"{shown} posts")
    more = sum(int(t.split()[0]) for t in tree.xpath("//td[contains(@class,'more')]//a/text()"))
    assert shown + more == result.selection.count + sum(s.more for s in result.selection.sections)
