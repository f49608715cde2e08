"""Feeds and folders loaded together, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from digest.config import Config, parse_config
from digest.content import pipeline
from digest.content.select import Reason
from digest.content.sources import feeds
from digest.errors import ContentError
from tests.feed_server import FEEDS, FeedServer, feed_server

pytestmark = pytest.mark.integration  # a feed server on loopback

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)  # Monday after 2026-W47

SECTIONS = {
    "sections": [
        {"name": "Work", "aliases": ["jobs"]},
        {"name": "Tools"},
        {"name": "Research"},
    ],
    "other_title": "Also this week",
}


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as http:
        yield http


def make_config(site: Path, sources: list[dict[str, Any]], **extra: Any) -> Config:
    # The feed server listens on loopback, which a feed may be fetched from only when the
    # source allows it.
    sources = [
        {**s, "allow_private_addresses": True} if str(s.get("feed", "")).startswith("http") else s
        for s in sources
    ]
    data = {
        "site": {"name": "T", "base_url": "https://example.com"},
        "sender": {"from_name": "T", "from_email": "t@example.com"},
        "timezone": "Europe/Berlin",
        "categories": SECTIONS,
        "limits": {"per_category": 10, "total": 40},
        "sources": sources,
        **extra,
    }
    site.mkdir(exist_ok=True)
    (site / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return parse_config(data, site / "config.yaml")


@pytest.fixture
def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of the feed parser, by the URL it parsed."""
    calls: list[str] = []
    real = feeds.parse_feed

    def counting(data: bytes, **kwargs: Any) -> feeds.ParsedFeed:
        calls.append(str(kwargs.get("base_url")))
        return real(data, **kwargs)

    monkeypatch.setattr(feeds, "parse_feed", counting)
    return calls


PLATFORMS = ["wordpress.xml", "ghost.atom", "substack.xml", "jsonfeed.json"]


def test_entries_selected_exactly_as_their_dates_say(
    tmp_path: Path, server: FeedServer, client: httpx.Client
) -> None:
    feeds = [{"feed": server.url(p)} for p in PLATFORMS]
    one_each = {"per_category": 10, "total": 40, "min_per_section": 1}  # no folding here
    config = make_config(tmp_path, feeds, limits=one_each)
    selection = pipeline.load_and_select(config, NOW, week="2026-W47", client=client).selection
    by_reason: dict[str, list[str]] = {}
    for decision in selection.decisions:
        by_reason.setdefault(decision.reason.value, []).append(decision.post.title)
    assert sorted(by_reason["selected"]) == sorted(
        [
            # WordPress, 22:30 UTC on the Sunday: 23:30 in Berlin, still in the week.
            "Compost & the cold: what still works in November",
            "Seed swaps, explained",  # 09:15 +01:00 on the Monday
            # Ghost, 23:30 -08:00 on Sunday 15th: 08:30 Monday in Berlin.
            "Why make still wins",
            "Meetings nobody asked for",  # Substack
            "Honest error bars & the people who read them",  # JSON Feed, -05:00
            "Ten participants, one claim",  # +09:00
            "A note without a title: preregistration is a letter to your future self, written…",
        ]
    )
    assert sorted(by_reason["out-of-window"]) == [
        "A second before midnight",  # 22:59:59Z on the 15th: 23:59:59 Sunday in Berlin
        "Late Sunday in Lisbon is Monday in Berlin",  # 23:30 UTC: 00:30 Monday in Berlin
    ]
    # The Substack cross-post links to the WordPress post: one post, the earlier kept.
    (duplicate,) = [d for d in selection.decisions if d.reason is Reason.DUPLICATE]
    assert duplicate.post.extra["feed"] == server.url("substack.xml")
    assert duplicate.duplicate_of is not None
    assert duplicate.duplicate_of.extra["feed"] == server.url("wordpress.xml")

    sections = {s.name: [p.title for p in s.posts] for s in selection.sections}
    assert sections["Work"] == ["Compost & the cold: what still works in November"]  # "jobs"
    assert sorted(sections["Research"]) == [
        "Honest error bars & the people who read them",
        "Ten participants, one claim",
    ]
    ghost = next(p for p in selection.posts if p.title == "Why make still wins")
    assert ghost.date.isoformat() == "2026-11-16T08:30:00+01:00"
    assert ghost.url == "https://quiet.example.net/why-make-still-wins/"
    assert ghost.cover_image == "https://quiet.example.net/content/images/2026/11/make.png"


def test_a_second_fetch_of_an_unchanged_feed_parses_nothing(
    tmp_path: Path, server: FeedServer, client: httpx.Client, count_parses: list[str]
) -> None:
    config = make_config(tmp_path, [{"feed": server.url(p)} for p in PLATFORMS])
    first = pipeline.load(config, now=NOW, client=client)
    assert len(count_parses) == 4 and first.feeds_parsed == 4
    assert [r.outcome for r in first.sources] == ["fetched"] * 4

    second = pipeline.load(config, now=NOW + timedelta(hours=1), client=client)
    assert count_parses == count_parses[:4]  # no new call
    assert second.feeds_parsed == 0
    assert [r.outcome for r in second.sources] == ["not-modified"] * 4
    assert sum(server.not_modified.values()) == 4
    assert sorted(p.title for p in second.posts) == sorted(p.title for p in first.posts)

    # A feed that changes is parsed again, and only that one.
    server.overrides["ghost.atom"] = (
        (FEEDS / "ghost.atom")
        .read_bytes()
        .replace(b"A second before midnight", b"A second before midnight (updated)")
    )
    third = pipeline.load(config, now=NOW + timedelta(hours=2), client=client)
    assert len(count_parses) == 5 and count_parses[-1] == server.url("ghost.atom")
    assert [r.outcome for r in third.sources] == [
        "not-modified", "fetched", "not-modified", "not-modified"
    ]  # fmt: skip


def test_a_server_that_ignores_validators_costs_a_download_but_no_parse(
    tmp_path: Path, server: FeedServer, client: httpx.Client, count_parses: list[str]
) -> None:
    server.ignore_validators.add("wordpress.xml")
    config = make_config(tmp_path, [{"feed": server.url("wordpress.xml")}])
    pipeline.load(config, now=NOW, client=client)
    again = pipeline.load(config, now=NOW, client=client)
    assert len(count_parses) == 1
    assert server.conditional["wordpress.xml"] == 1  # it was asked conditionally
    assert again.sources[0].outcome == "unchanged"


def test_a_feed_file_unchanged_on_disk_is_not_read_again(
    tmp_path: Path, count_parses: list[str]
) -> None:
    feed = tmp_path / "feeds" / "wordpress.xml"
    feed.parent.mkdir()
    feed.write_bytes((FEEDS / "wordpress.xml").read_bytes())
    config = make_config(tmp_path / "site", [{"feed": str(feed)}])
    first = pipeline.load(config, now=NOW)
    second = pipeline.load(config, now=NOW)
    assert len(count_parses) == 1
    assert (first.sources[0].outcome, second.sources[0].outcome) == ("fetched", "unchanged")
    assert len(second.posts) == 3


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_dead_feeds_do_not_stop_the_issue(
    tmp_path: Path, server: FeedServer, client: httpx.Client
) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/feed.xml"
    sources = [
        {"feed": server.url("error.xml"), "name": "five-oh-three"},
        {"feed": server.url("broken.xml"), "name": "login-page"},
        {"feed": server.url("huge.xml"), "name": "huge", "max_bytes": 1_000_000},
        {"feed": server.url("slow.xml"), "name": "slow", "timeout": "1s"},
        {"feed": server.url("loop.xml"), "name": "loop", "max_redirects": 3},
        {"feed": dead, "name": "gone"},
        {"feed": server.url("missing.xml"), "name": "not-found"},
        {"feed": server.url("redirect.xml"), "name": "moved"},  # two hops, then WordPress
    ]
    config = make_config(tmp_path, sources)
    loaded = pipeline.load_and_select(config, NOW, week="2026-W47", client=client)
    reports = {r.label: r for r in loaded.posts.sources}
    assert reports["moved"].outcome == "fetched" and reports["moved"].posts == 3
    assert reports["five-oh-three"].error == (
        f"HTTP 503 Service Unavailable from {server.url('error.xml')}"
    )
    assert reports["login-page"].error is not None
    assert reports["login-page"].error.startswith("not an RSS, Atom or JSON feed")
    assert reports["huge"].error == "the feed is over max_bytes (1,000,000 bytes); not read"
    assert reports["slow"].error is not None and "timed out after 1s" in reports["slow"].error
    assert reports["loop"].error == f"more than 3 redirects (last to {server.url('loop.xml')})"
    assert reports["gone"].error is not None and reports["gone"].error.startswith("unreachable")
    assert reports["not-found"].error == (f"HTTP 404 Not Found from {server.url('missing.xml')}")
    failed = sorted(r.label for r in loaded.posts.sources if r.outcome == "failed")
    assert failed == sorted(s["name"] for s in sources if s["name"] != "moved")
    assert sorted(str(p.path) for p in loaded.posts.problems) == failed
    assert sorted(p.title for p in loaded.selection.posts) == [
        "Compost & the cold: what still works in November",
        "Seed swaps, explained",
    ]


def test_every_source_failing_is_an_error(tmp_path: Path, server: FeedServer) -> None:
    config = make_config(tmp_path, [{"feed": server.url("error.xml"), "name": "down"}])
    with httpx.Client(trust_env=False) as http, pytest.raises(ContentError) as raised:
        pipeline.load(config, now=NOW, client=http)
    assert str(raised.value) == (
        f"every source failed: down: HTTP 503 Service Unavailable from {server.url('error.xml')}"
    )


def test_a_failing_feed_keeps_its_last_entries_and_counts_failures(
    tmp_path: Path, server: FeedServer, client: httpx.Client
) -> None:
    posts = tmp_path / "posts"
    posts.mkdir()
    config = make_config(
        tmp_path / "site",
        [{"path": str(posts)}, {"feed": server.url("ghost.atom"), "name": "ghost"}],
    )
    first = pipeline.load(config, now=NOW, client=client)
    assert first.sources[1].failures_in_row == 0 and len(first.posts) == 2
    server.down.add("ghost.atom")
    for run in range(1, 4):
        later = pipeline.load(config, now=NOW + timedelta(days=run), client=client)
        ghost = later.sources[1]
        assert (ghost.outcome, ghost.stale, ghost.failures_in_row) == ("failed", True, run)
        assert ghost.last_success == NOW.isoformat()
        assert len(later.posts) == 2  # the last good entries
    assert ghost.failing(3) and not ghost.failing(4)
    server.down.clear()
    recovered = pipeline.load(config, now=NOW + timedelta(days=5), client=client)
    assert recovered.sources[1].failures_in_row == 0
    assert recovered.sources[1].outcome == "not-modified"


def test_markdown_and_feeds_together_dedupe_by_link_guid_and_title(
    tmp_path: Path, server: FeedServer, client: httpx.Client
) -> None:
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "seed-swaps.md").write_text(
        "---\ntitle: Seed Swaps — Explained!\ndate: 2026-11-17\ncategory: Tools\n---\nBody.\n",
        encoding="utf-8",
    )
    (posts / "make.md").write_text(
        "---\ntitle: Make, revisited\ndate: 2026-11-18\ncategory: Tools\n"
        "source: https://quiet.example.net/why-make-still-wins\n---\nBody.\n",
        encoding="utf-8",
    )
    mirror = (FEEDS / "ghost.atom").read_bytes().replace(b"Why &lt;code&gt;make", b"Why GNU make")
    mirror = mirror.replace(b"2026-11-15T23:30:00-08:00", b"2026-11-16T23:30:00-08:00")
    server.overrides["mirror.atom"] = mirror.replace(
        b'href="why-make-still-wins/"', b'href="https://mirror.example.net/make/"'
    )
    config = make_config(
        tmp_path / "site",
        [
            {"path": str(posts)},
            {"feed": server.url("wordpress.xml")},
            {"feed": server.url("ghost.atom")},
            {"feed": server.url("mirror.atom")},  # same guids, other links and titles
        ],
    )
    selection = pipeline.load_and_select(config, NOW, week="2026-W47", client=client).selection
    duplicates = {
        (d.post.title, d.detail) for d in selection.decisions if d.reason is Reason.DUPLICATE
    }
    assert duplicates == {
        ("Seed Swaps — Explained!", "duplicate of seed-swaps (same title)"),
        ("Make, revisited", "duplicate of why-make-still-wins (same source)"),
        ("Why GNU make still wins", "duplicate of why-make-still-wins (same guid)"),
    }


def test_posts_dir_alone_is_one_markdown_source(tmp_path: Path) -> None:
    data = {
        "site": {"name": "T", "base_url": "https://example.com"},
        "sender": {"from_name": "T", "from_email": "t@example.com"},
        "content": {"posts_dir": "articles"},
    }
    config = parse_config(data, tmp_path / "config.yaml")
    (source,) = config.source_list
    assert (source.path, source.feed, source.file(config.root)) == (
        Path("articles"), None, tmp_path / "articles"
    )  # fmt: skip


def test_digest_check_shows_each_source_and_flags_one_failing_runs_in_a_row(
    tmp_path: Path, server: FeedServer
) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "one.md").write_text("---\ntitle: One\ndate: 2026-11-17\n---\nBody.\n")
    make_config(
        tmp_path / "site",
        [
            {"path": str(posts), "name": "blog"},
            {"feed": server.url("ghost.atom"), "name": "ghost"},
            {"feed": server.url("error.xml"), "name": "down"},
        ],
        content={"failing_after": 2},
    )
    config = str(tmp_path / "site" / "config.yaml")
    runner = CliRunner()
    first = runner.invoke(main, ["--config", config, "check"])
    assert first.exit_code == 4
    lines = first.output.splitlines()
    assert "  blog: ok, loaded, 1 post; last good just now" in lines
    assert "  ghost: ok, fetched, 2 posts; last good just now" in lines
    down = f"  down: failed: HTTP 503 Service Unavailable from {server.url('error.xml')}"
    assert f"{down}; last good never" in lines
    second = runner.invoke(main, ["--config", config, "check", "--json"])
    assert second.exit_code == 4
    report = {s["source"]: s for s in json.loads(second.stdout)["sources"]}
    assert report["ghost"]["outcome"] == "not-modified"
    assert (report["down"]["failures_in_row"], report["down"]["failing"]) == (2, True)
    assert report["blog"]["failing"] is False
    third = runner.invoke(main, ["--config", config, "check"])
    assert f"{down}; last good never  FAILING: 3 runs in a row" in third.output.splitlines()


def test_a_feed_that_turns_broken_is_not_remembered_as_good(
    tmp_path: Path, server: FeedServer, client: httpx.Client, count_parses: list[str]
) -> None:
    config = make_config(tmp_path, [{"feed": server.url("ghost.atom"), "name": "ghost"}])
    pipeline.load(config, now=NOW, client=client)
    server.overrides["ghost.atom"] = b"<html><body>Maintenance</body></html>"
    for _ in range(2):  # the broken answer has its own ETag; it must not become the cache's
        broken = pipeline.load(config, now=NOW, client=client)
        assert (broken.sources[0].outcome, broken.sources[0].stale) == ("failed", True)
    assert broken.sources[0].failures_in_row == 2
    assert server.not_modified["ghost.atom"] == 0


def test_feeds_are_fetched_at_the_same_time(tmp_path: Path, server: FeedServer) -> None:
    """Eight feeds that never finish, with a three-second timeout each: the server sees
    several of them at the same moment (one after the other, it would see one at a time)."""
    sources = [{"feed": server.url(f"slow.xml?n={n}"), "name": f"slow{n}", "timeout": "3s"}
               for n in range(8)]  # fmt: skip
    config = make_config(tmp_path, [*sources, {"feed": server.url("wordpress.xml")}])
    with httpx.Client(trust_env=False) as http:
        loaded = pipeline.load(config, now=NOW, client=http)
    assert [r.outcome for r in loaded.sources] == ["failed"] * 8 + ["fetched"]
    assert server.hits["slow.xml"] == 8
    assert server.max_in_flight >= 2
