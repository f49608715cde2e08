from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.config import parse_config
from digest.content.posts import Post
from digest.content.select import (
    Reason,
    Rules,
    WindowError,
    last_complete_week,
    range_window,
    resolve_window,
    select_posts,
    week_window,
)

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)

BASE = {
    "site": {"name": "T", "base_url": "https://example.com"},
    "sender": {"from_name": "T", "from_email": "t@example.com"},
    "timezone": "Europe/Berlin",
    "categories": {
        "sections": [
            {"name": "Work", "aliases": ["jobs"]},
            {"name": "Tools"},
            {"name": "Research", "limit": 1},
        ]
    },
    "limits": {"per_category": 2, "total": 10},
}


def rules(**overrides: object) -> Rules:
    data = {**BASE}
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value  # type: ignore[dict-item]
    return Rules.from_config(parse_config(data))


def make(slug: str, when: str, category: str | None = "Work", **fields: object) -> Post:
    moment = datetime.fromisoformat(when)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BERLIN)
    return Post(
        path=Path(f"{slug}.md"),
        slug=slug,
        title=fields.pop("title", slug.replace("-", " ")),  # type: ignore[arg-type]
        date=moment.astimezone(BERLIN),
        category=category,
        **fields,
    )  # type: ignore[arg-type]


W47 = week_window("2026-W47", BERLIN)


def reasons(selection: object) -> dict[str, str]:
    return {d.post.slug: d.reason.value for d in selection.decisions}  # type: ignore[attr-defined]


def test_an_iso_week_in_the_site_timezone() -> None:
    assert W47.start == datetime(2026, 11, 16, tzinfo=BERLIN)
    assert W47.end == datetime(2026, 11, 23, tzinfo=BERLIN)
    assert W47.issue_id == "2026-W47"
    assert W47.describe() == "2026-11-16 to 2026-11-22"


def test_week_start_shifts_the_window() -> None:
    sunday = week_window("2026-W47", BERLIN, "sunday")
    assert sunday.start == datetime(2026, 11, 15, tzinfo=BERLIN)
    assert sunday.end == datetime(2026, 11, 22, tzinfo=BERLIN)


def test_the_default_is_the_last_complete_week() -> None:
    assert last_complete_week(NOW, BERLIN) == W47
    # Sunday 23:30 in Berlin is still inside W47, so W46 is the last complete week.
    late_sunday = datetime(2026, 11, 22, 22, 30, tzinfo=timezone.utc)
    assert last_complete_week(late_sunday, BERLIN).issue_id == "2026-W46"


def test_week_1_and_53_and_bad_weeks() -> None:
    assert week_window("2026-W53", BERLIN).start.date() == date(2026, 12, 28)
    with pytest.raises(WindowError, match="2025 has no week 53"):
        week_window("2025-W53", BERLIN)
    with pytest.raises(WindowError, match="expected an ISO week"):
        week_window("week 34", BERLIN)


def test_since_until_window_includes_both_days() -> None:
    window = range_window(date(2026, 11, 1), date(2026, 11, 3), BERLIN)
    assert window.end == datetime(2026, 11, 4, tzinfo=BERLIN)
    assert window.issue_id == "2026-11-01_2026-11-03"
    with pytest.raises(WindowError, match="before --since"):
        range_window(date(2026, 11, 3), date(2026, 11, 1), BERLIN)
    config = parse_config(BASE)
    with pytest.raises(WindowError, match="not both"):
        resolve_window(config, NOW, week="2026-W47", since=date(2026, 11, 1))


def test_a_week_boundary_crossing_midnight_in_a_non_utc_timezone() -> None:
    # 23:30 on Sunday in Berlin is 22:30 UTC: W46 in both. 00:15 on Monday in Berlin is
    # 23:15 UTC on Sunday: W47 in Berlin, although W46 in UTC.
    before = make("sunday-late", "2026-11-15T23:30:00+01:00")
    after = make("monday-early", "2026-11-15T23:15:00+00:00")
    selection = select_posts([before, after], W47, rules(), NOW)
    assert reasons(selection) == {"sunday-late": "out-of-window", "monday-early": "selected"}
    (out,) = [d for d in selection.decisions if d.post.slug == "sunday-late"]
    assert out.explain() == (
        "out of window: 2026-11-15T23:30+01:00 is before 2026-11-16T00:00+01:00"
    )
    in_utc = week_window("2026-W47", ZoneInfo("UTC"))
    utc_rules = Rules.from_config(parse_config({**BASE, "timezone": "UTC"}))
    assert reasons(select_posts([before, after], in_utc, utc_rules, NOW)) == {
        "sunday-late": "out-of-window",
        "monday-early": "out-of-window",
    }


def test_draft_and_future_posts_are_out_with_their_reason() -> None:
    posts = [
        make("draft", "2026-11-17 10:00", draft=True),
        make("future", "2026-11-24 10:00"),
    ]
    window = range_window(date(2026, 11, 16), date(2026, 11, 30), BERLIN)
    assert reasons(select_posts(posts, window, rules(), NOW)) == {
        "draft": "draft",
        "future": "future",
    }


def test_categories_in_any_case_and_aliases_map_to_sections() -> None:
    posts = [
        make("a", "2026-11-17 10:00", "WORK"),
        make("b", "2026-11-17 11:00", "jobs"),
        make("c", "2026-11-17 12:00", " tools "),
        make("d", "2026-11-17 13:00", "Gardening"),
        make("e", "2026-11-17 14:00", None),
    ]
    selection = select_posts(posts, W47, rules(limits={"min_per_section": 1}), NOW)
    assert [(s.name, [p.slug for p in s.posts]) for s in selection.sections] == [
        ("Work", ["b", "a"]),
        ("Tools", ["c"]),
        ("More", ["e", "d"]),
    ]
    skip = rules(categories={"unlisted": "skip"}, limits={"min_per_section": 1})
    skipping = select_posts(posts, W47, skip, NOW)
    assert reasons(skipping)["d"] == "category-unlisted"
    assert [s.name for s in skipping.sections] == ["Work", "Tools"]


def test_include_exclude_and_tag_filters() -> None:
    posts = [
        make("w", "2026-11-17 10:00", "Work", tags=("meetings",)),
        make("t", "2026-11-17 11:00", "Tools", tags=("AI",)),
        make("r", "2026-11-17 12:00", "Research"),
    ]
    excluded = select_posts(posts, W47, rules(categories={"exclude": ["tools"]}), NOW)
    assert reasons(excluded) == {"w": "selected", "t": "category-excluded", "r": "selected"}
    included = select_posts(posts, W47, rules(categories={"include": ["Work"]}), NOW)
    assert reasons(included)["r"] == "category-not-included"
    tagged = select_posts(posts, W47, rules(filters={"tags_exclude": ["ai"]}), NOW)
    assert reasons(tagged)["t"] == "tag-filtered"
    only = select_posts(posts, W47, rules(filters={"tags_include": ["Meetings"]}), NOW)
    assert [d.post.slug for d in only.decisions if d.selected] == ["w"]


def test_duplicates_by_source_and_by_normalised_title() -> None:
    posts = [
        make("original", "2026-11-16 09:00", source="https://www.example.org/story/"),
        make("copy", "2026-11-17 09:00", "Tools", source="http://example.org/story?utm_source=x"),
        make("standups", "2026-11-18 09:00", title="Why Standups Run Long"),
        make("stand-ups", "2026-11-19 09:00", title="Why stand-ups run long!"),
    ]
    selection = select_posts(posts, W47, rules(), NOW)
    by_slug = {d.post.slug: d for d in selection.decisions}
    assert by_slug["copy"].explain() == "duplicate of original (same source)"
    assert by_slug["stand-ups"].explain() == "duplicate of standups (same title)"
    assert by_slug["stand-ups"].duplicate_of is posts[2]
    assert sum(1 for d in selection.decisions if d.selected) == 2


def test_a_featured_duplicate_wins_over_the_earlier_one() -> None:
    posts = [
        make("early", "2026-11-16 09:00", title="Same Title"),
        make("featured", "2026-11-18 09:00", title="Same title.", featured=True),
    ]
    assert reasons(select_posts(posts, W47, rules(), NOW)) == {
        "early": "duplicate",
        "featured": "selected",
    }


def test_order_is_featured_first_then_newest_and_limits_count_what_was_left_out() -> None:
    posts = [make(f"w{i}", f"2026-11-{16 + i} 09:00") for i in range(5)]
    posts[0] = replace(posts[0], featured=True)
    posts += [
        make("r1", "2026-11-17 09:00", "Research"),
        make("r2", "2026-11-18 09:00", "Research"),
    ]
    selection = select_posts(posts, W47, rules(limits={"min_per_section": 1}), NOW)
    work, research = selection.sections
    assert [p.slug for p in work.posts] == ["w0", "w4"]
    assert work.more == 3
    assert [p.slug for p in research.posts] == ["r2"]  # the section's own limit is 1
    assert research.more == 1
    by_slug = {d.post.slug: d for d in selection.decisions}
    assert by_slug["w1"].explain() == "over the Work limit (2): rank 5; score 0.14 (0.14 newest)"
    assert by_slug["r1"].reason is Reason.OVER_SECTION_LIMIT


def test_the_total_limit_is_shared_round_robin() -> None:
    posts = [make(f"w{i}", f"2026-11-17 0{i}:00") for i in range(3)]
    posts += [make(f"t{i}", f"2026-11-18 0{i}:00", "Tools") for i in range(3)]
    selection = select_posts(
        posts, W47, rules(limits={"per_category": None, "total": 3, "min_per_section": 1}), NOW
    )
    assert [(s.name, [p.slug for p in s.posts], s.more) for s in selection.sections] == [
        ("Work", ["w2", "w1"], 1),
        ("Tools", ["t2"], 2),
    ]
    over = [d for d in selection.decisions if d.reason is Reason.OVER_TOTAL_LIMIT]
    assert {d.post.slug for d in over} == {"w0", "t1", "t0"}
    assert over[0].explain() == (
        "over the total limit (3): rank 3; score -1.10 (0.10 newest − 1.20 same day)"
    )


def test_every_post_in_the_window_has_exactly_one_decision() -> None:
    posts = [
        make(f"p{i}", f"2026-11-{16 + i % 7} 1{i % 10}:00", ["Work", "Tools", "X"][i % 3])
        for i in range(40)
    ]
    selection = select_posts(posts, W47, rules(), NOW)
    assert sorted(d.post.slug for d in selection.in_window) == sorted(p.slug for p in posts)
    assert selection.count == sum(1 for d in selection.decisions if d.selected)


def test_only_keeps_the_sections_a_subscriber_chose() -> None:
    posts = [make("w", "2026-11-17 10:00"), make("t", "2026-11-17 10:00", "Tools")]
    selection = select_posts(posts, W47, rules(limits={"min_per_section": 1}), NOW)
    assert [s.name for s in selection.only(["tools"]).sections] == ["Tools"]
    assert selection.only([]) is selection
    assert selection.only(None) is selection


def test_thin_sections_fold_into_also_this_week_and_preferences_still_find_them() -> None:
    posts = [
        make("w1", "2026-11-17 10:00"),
        make("w2", "2026-11-18 10:00"),
        make("t", "2026-11-17 10:00", "Tools"),
        make("r", "2026-11-19 10:00", "Research"),
    ]
    selection = select_posts(posts, W47, rules(), NOW)
    assert [(s.title, [p.slug for p in s.posts]) for s in selection.sections] == [
        ("Work", ["w2", "w1"]),
        ("Also this week", ["t", "r"]),
    ]
    assert selection.sections[1].origins == ("Tools", "Research")
    tools = selection.only(["Tools"])  # the folded section comes whole
    assert [(s.title, [p.slug for p in s.posts]) for s in tools.sections] == [
        ("Also this week", ["t", "r"])
    ]
    assert [s.title for s in selection.only(["Work"]).sections] == ["Work"]
    named = select_posts(posts, W47, rules(limits={"also_title": "In brief"}), NOW)
    assert named.sections[-1].title == "In brief"


def test_a_lone_thin_section_takes_the_smallest_other_section_with_it() -> None:
    """The folded section is held to the floor too: one thin section alone would only be
    renamed, so the smallest other section (the last on a tie) joins it."""
    posts = [
        make("w1", "2026-11-17 10:00"),
        make("w2", "2026-11-18 10:00"),
        make("t1", "2026-11-17 11:00", "Tools"),
        make("t2", "2026-11-18 11:00", "Tools"),
        make("r", "2026-11-19 10:00", "Research"),
        make("x1", "2026-11-16 10:00", "X"),
        make("x2", "2026-11-16 11:00", "X"),
        make("x3", "2026-11-16 12:00", "X"),
    ]
    chosen = rules(
        categories={"sections": [{"name": n} for n in ("Work", "X", "Research", "Tools")]},
        limits={"per_category": 3},
    )
    selection = select_posts(posts, W47, chosen, NOW)
    assert [(s.title, [p.slug for p in s.posts]) for s in selection.sections] == [
        ("Work", ["w2", "w1"]),
        ("X", ["x3", "x2", "x1"]),
        ("Also this week", ["r", "t2", "t1"]),
    ]
    assert selection.sections[-1].origins == ("Research", "Tools", "Tools")
    assert [s.title for s in selection.only(["Research"]).sections] == ["Also this week"]
    assert [s.title for s in selection.only(["Tools"]).sections] == ["Also this week"]
    assert min(len(s.posts) for s in selection.sections) == 2
    # Folding every section would only rename the issue: a short issue keeps its sections.
    alone = select_posts(posts[:3], W47, rules(), NOW)
    assert [s.title for s in alone.sections] == ["Work", "Tools"]
    every = select_posts([posts[0], posts[2], posts[4]], W47, rules(), NOW)
    assert [s.title for s in every.sections] == ["Work", "Tools", "Research"]
    one_each = select_posts(posts, W47, rules(limits={"min_per_section": 1}), NOW)
    assert "Also this week" not in [s.title for s in one_each.sections]


# --------------------------------------------------------------------------- one story once

W47 = week_window("2026-W47", BERLIN)
FILLER = (
    "The field of {topic} continues to evolve at an unprecedented pace. Recent developments "
    "have shown remarkable progress in both theoretical understanding and practical "
    "applications. Researchers and practitioners are finding new ways to leverage these "
    "technologies for real world solutions across many industries and sectors today."
)


def _sketch(text: str) -> tuple[int, ...]:
    from digest.content.text import sketch

    return sketch(text.casefold().split())


def test_near_duplicates_collapse_to_the_earliest_with_their_score() -> None:
    posts = [
        make("vision", "2026-11-17 09:00", sketch=_sketch(FILLER.format(topic="vision"))),
        make("robots", "2026-11-18 09:00", sketch=_sketch(FILLER.format(topic="robots"))),
        make("news", "2026-11-19 09:00", sketch=_sketch(
            "Ford executives said they hired 350 veteran engineers after automated systems "
            "failed to deliver the quality the company wanted on its lines this spring, and "
            "more hiring is expected in the coming months across its plants in the region."
        )),
    ]  # fmt: skip
    selection = select_posts(posts, W47, rules(), NOW)
    by_slug = {d.post.slug: d for d in selection.decisions}
    assert by_slug["robots"].reason is Reason.NEAR_DUPLICATE
    assert by_slug["robots"].duplicate_of is not None
    assert by_slug["robots"].duplicate_of.slug == "vision"
    assert by_slug["robots"].explain().startswith("near-duplicate of vision (0.")
    assert sorted(p.slug for p in selection.posts) == ["news", "vision"]
    # The threshold is the user's: at 1.0 only identical bodies collapse.
    roomy = {"per_category": 10}
    strict = select_posts(posts, W47, rules(dedupe={"near_duplicates": 1.0}, limits=roomy), NOW)
    assert sorted(p.slug for p in strict.posts) == ["news", "robots", "vision"]
    off = select_posts(posts, W47, rules(dedupe={"near_duplicates": None}, limits=roomy), NOW)
    assert len(off.posts) == 3


def test_a_post_of_an_earlier_issue_is_left_out() -> None:
    from digest.content.memory import Remembered

    earlier = [
        Remembered("2026-W46", "old-title", "same story", None),
        Remembered("2026-W46", "old-source", "x", "example.org/story"),
        Remembered("2026-W45", "old-body", "y", None, _sketch(FILLER.format(topic="vision"))),
    ]
    posts = [
        make("again", "2026-11-17 09:00", title="Same Story!"),
        make("moved", "2026-11-17 10:00", source="https://www.example.org/story/?utm=x"),
        make("copy", "2026-11-17 11:00", sketch=_sketch(FILLER.format(topic="vision"))),
        make("fresh", "2026-11-17 12:00"),
    ]
    selection = select_posts(posts, W47, rules(limits={"per_category": 10}), NOW, earlier)
    by_slug = {d.post.slug: d for d in selection.decisions}
    assert by_slug["again"].reason is Reason.EARLIER_ISSUE
    assert by_slug["again"].explain() == "already in 2026-W46 (same title)"
    assert by_slug["moved"].explain() == "already in 2026-W46 (same source)"
    assert by_slug["copy"].explain() == "already in 2026-W45 (near-duplicate of old-body (1.00))"
    assert [p.slug for p in selection.posts] == ["fresh"]


def test_rank_order_is_configurable_and_explained() -> None:
    posts = [
        make("new-no-source", "2026-11-20 09:00"),
        make("old-with-source", "2026-11-17 09:00", source="https://a.example/1"),
        make("mid-featured", "2026-11-18 09:00", featured=True),
    ]
    default = select_posts(posts, W47, rules(), NOW)
    assert [p.slug for p in default.posts] == ["mid-featured", "old-with-source"]
    by_slug = {d.post.slug: d for d in default.decisions}
    assert (
        by_slug["mid-featured"].explain() == "selected: rank 1 (featured); score 0.24 (0.24 newest)"
    )
    assert (
        by_slug["old-with-source"].explain()
        == "selected: rank 2 (source); score 0.14 (0.14 newest)"
    )
    assert (
        by_slug["new-no-source"].explain()
        == "over the Work limit (2): rank 3; score 0.44 (0.44 newest)"
    )
    assert by_slug["new-no-source"].rank == 3
    newest = select_posts(posts, W47, rules(limits={"rank": ["newest"]}), NOW)
    assert [p.slug for p in newest.posts] == ["new-no-source", "mid-featured"]


def test_memory_reads_only_issues_before_the_window(tmp_path: Path) -> None:
    import json

    from digest.content.memory import earlier_issues

    for issue, start in (("2026-W45", "2026-11-02"), ("2026-W46", "2026-11-09"),
                         ("2026-W47", "2026-11-16"), ("2026-W48", "2026-11-23")):  # fmt: skip
        folder = tmp_path / issue
        folder.mkdir()
        manifest = {
            "issue_id": issue,
            "window": {"start": f"{start}T00:00:00+01:00"},
            "memory": [{"slug": f"p-{issue}", "title": "t", "source": None, "sketch": [1, 2]}],
        }
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (tmp_path / "archive").mkdir()  # not an issue
    found = earlier_issues(tmp_path, W47.start, limit=1)
    assert [(r.issue_id, r.slug, r.sketch) for r in found] == [("2026-W46", "p-2026-W46", (1, 2))]
    assert len(earlier_issues(tmp_path, W47.start, limit=8)) == 2
    assert earlier_issues(tmp_path, W47.start, limit=0) == []


def test_sketches_pack_and_unpack() -> None:
    from digest.content.memory import pack_sketch, unpack_sketch

    sketch = _sketch(FILLER.format(topic="vision"))
    assert unpack_sketch(pack_sketch(sketch)) == sketch
    assert unpack_sketch([1, 2]) == (1, 2)
    assert unpack_sketch("not base64!") == ()
    assert unpack_sketch(None) == ()
