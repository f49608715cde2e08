"""The reader_interest ranking trait (content/interest.py): sections' share of kept clicks
over the last issues nudges which sections fill an issue's total, and `--explain` says so."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from digest.cli import main
from digest.config import Config, parse_config
from digest.content.interest import OFF, reader_interest
from digest.content.posts import Post
from digest.content.select import Reason, Rules, select_posts, week_window
from digest.delivery.clicks import ClickStore, Tally

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
W47 = week_window("2026-W47", BERLIN)
EARLIER = ["2026-W43", "2026-W44", "2026-W45", "2026-W46"]


def config_at(root: Path, **selection: object) -> Config:
    data: dict[str, Any] = {
        "site": {"name": "T", "base_url": "https://example.com"},
        "sender": {"from_name": "T", "from_email": "t@example.com"},
        "timezone": "Europe/Berlin",
        "categories": {"sections": [{"name": "Work"}, {"name": "Tools"}]},
        "limits": {"per_category": None, "total": 4, "min_per_section": 1},
        "selection": {"reader_interest": True, "interest_issues": 3, **selection},
    }
    return parse_config(data, root / "config.yaml")


def write_issue(root: Path, issue_id: str, sections: dict[str, int]) -> None:
    """A built issue's manifest: ``sections`` maps a section to how many post links."""
    start = week_window(issue_id, BERLIN).start
    folder = root / "out" / issue_id
    folder.mkdir(parents=True)
    manifest = {
        "issue_id": issue_id,
        "window": {"start": start.isoformat(), "end": (start + timedelta(days=7)).isoformat()},
        "sections": [
            {"name": name, "posts": [{"id": f"{name}{i}", "url": f"https://x/{name}/{i}"}
                                     for i in range(count)]}
            for name, count in sections.items()
        ],
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))


def seed(root: Path, clicks: dict[tuple[str, int], tuple[int, int]]) -> None:
    """Counts through the click store's own API: (issue, post) -> (kept, filtered)."""
    tally = Tally.empty()
    for (issue_id, post), (kept, filtered) in clicks.items():
        for _ in range(kept):
            tally.add(issue_id, post, "all", "2026-11-01", kept=True)
        for _ in range(filtered):
            tally.add(issue_id, post, "all", "2026-11-01", kept=False)
    with ClickStore(root / "data" / "clicks.sqlite") as store:
        store.add(tally)


def make(slug: str, when: str, category: str) -> Post:
    moment = datetime.fromisoformat(when).replace(tzinfo=BERLIN)
    return Post(path=Path(f"{slug}.md"), slug=slug, title=slug, date=moment, category=category)


POSTS = [make(f"w{i}", f"2026-11-17 0{i}:00", "Work") for i in range(3)] + [
    make(f"t{i}", f"2026-11-18 0{i}:00", "Tools") for i in range(3)
]


def chosen(config: Config, *, with_interest: bool = True) -> dict[str, list[str]]:
    rules = Rules.from_config(config)
    if with_interest:
        rules = replace(rules, interest=reader_interest(config, W47.start))
    selection = select_posts(POSTS, W47, rules, NOW)
    return {s.name: [p.slug for p in s.posts] for s in selection.sections}


def site_with_clicks(root: Path) -> None:
    # Work and Tools each hold 2 of 4 links per issue; readers follow Tools 4 times as often.
    # The filtered (scanner) clicks all land on Work and must not count; W43 is one issue
    # too old to count.
    for issue_id in EARLIER:
        write_issue(root, issue_id, {"Work": 2, "Tools": 2})
    seed(root, {(i, p): (1, 50) for i in EARLIER[1:] for p in (0, 1)})
    seed(root, {(i, p): (4, 0) for i in EARLIER[1:] for p in (2, 3)})
    seed(root, {("2026-W43", 0): (100, 0)})


def test_clicks_give_the_room_to_the_section_readers_follow(tmp_path: Path) -> None:
    site_with_clicks(tmp_path)
    config = config_at(tmp_path)
    interest = reader_interest(config, W47.start)
    assert interest.active
    assert interest.issues == ("2026-W46", "2026-W45", "2026-W44")
    assert interest.lift("Tools") == 1.6  # 80% of the kept clicks for 50% of the links
    assert interest.lift("Work") == 0.4
    assert interest.summary == (
        "reader interest: weight 1.0, 30 kept clicks over the last 3 issues "
        "(2026-W46, 2026-W45, 2026-W44); lift Tools ×1.60, Work ×0.40"
    )
    # Round-robin (today's order): two of each. With the trait, after each section's best
    # post, Tools' second and third (depth 1 − 0.6, 2 − 0.6) come before Work's second
    # (depth 1 + 0.6).
    assert chosen(config, with_interest=False) == {"Work": ["w2", "w1"], "Tools": ["t2", "t1"]}
    assert chosen(config) == {"Work": ["w2"], "Tools": ["t2", "t1", "t0"]}


def test_explain_shows_the_trait_per_post(tmp_path: Path) -> None:
    site_with_clicks(tmp_path)
    config = config_at(tmp_path)
    rules = replace(Rules.from_config(config), interest=reader_interest(config, W47.start))
    by_slug = {d.post.slug: d for d in select_posts(POSTS, W47, rules, NOW).decisions}
    assert by_slug["t0"].reason is Reason.SELECTED
    assert (
        by_slug["t0"]
        .explain()
        .endswith(
            "; reader interest +0.60 (Tools: 80% of 30 kept clicks for 50% of the links, "
            "last 3 issues)"
        )
    )
    assert by_slug["w1"].reason is Reason.OVER_TOTAL_LIMIT
    assert (
        by_slug["w1"]
        .explain()
        .endswith(
            "; reader interest −0.60 (Work: 20% of 30 kept clicks for 50% of the links, "
            "last 3 issues)"
        )
    )


def test_off_or_without_data_the_selection_is_todays(tmp_path: Path) -> None:
    today = {"Work": ["w2", "w1"], "Tools": ["t2", "t1"]}
    off = config_at(tmp_path, reader_interest=False)
    assert reader_interest(off, W47.start) is OFF
    assert chosen(off) == today
    on = config_at(tmp_path)
    # no issues in out/ yet
    assert reader_interest(on, W47.start).summary == (
        "reader interest: on, no data (0 of the 3 issues it needs are in out_dir); "
        "the rank order alone"
    )
    for issue_id in EARLIER:
        write_issue(tmp_path, issue_id, {"Work": 2, "Tools": 2})
    store = tmp_path / "data" / "clicks.sqlite"
    assert reader_interest(on, W47.start).summary == (
        f"reader interest: on, no data (no click store at {store}); the rank order alone"
    )
    assert not store.exists()  # reading never creates the store
    seed(tmp_path, {("2026-W46", 0): (0, 9)})  # only filtered clicks
    assert reader_interest(on, W47.start).summary == (
        "reader interest: on, no data (no kept clicks in the last 3 issues); the rank order alone"
    )
    assert chosen(on) == today
    site_with_clicks_weight0 = config_at(tmp_path, weight_interest=0)
    seed(tmp_path, {("2026-W46", 2): (5, 0)})
    assert reader_interest(site_with_clicks_weight0, W47.start).active
    assert chosen(site_with_clicks_weight0) == today


def test_select_explain_names_the_trait(tmp_path: Path, sample_site: Path) -> None:
    config_file = sample_site / "config.yaml"
    text = config_file.read_text()
    config_file.write_text(text + "\nselection:\n  reader_interest: true\n")
    result = CliRunner().invoke(
        main, ["--config", str(config_file), "select", "--week", "2026-W47", "--explain"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "reader interest: on, no data (0 of the 4 issues it needs are in out_dir); "
        "the rank order alone" in result.output
    )
