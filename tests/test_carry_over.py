"""limits.carry_over: thin periods the schedule skips roll into the next issue of their
cadence, and no post is ever in two sent issues (tests for content/carry.py, run through
the scheduler as `digest run` would)."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from digest.cli import main
from digest.config import Config
from digest.content import pipeline
from digest.content.carry import carried_from, mark_sent
from digest.content.window import day_window, week_window
from digest.schedule.runs import RunStore
from digest.schedule.scheduler import run_now
from digest.store.database import locate
from tests.helpers import edit_config, import_readers

BERLIN = ZoneInfo("Europe/Berlin")

# Week 2026-W44 is full, W45 and W46 are thin (one post each), W47 is full again.
WEEKS = {
    "2026-W44": ["2026-10-27", "2026-10-28", "2026-10-29"],
    "2026-W45": ["2026-11-04"],
    "2026-W46": ["2026-11-11"],
    "2026-W47": ["2026-11-16", "2026-11-17", "2026-11-18"],
}


class StepClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.moment += timedelta(seconds=seconds)


def _posts(site: Path, days: dict[str, list[str]]) -> None:
    """Replace the sample posts with one post per listed day (its slug names the day)."""
    folder = site / "content" / "posts"
    shutil.rmtree(folder)
    folder.mkdir()
    categories = ["Work", "Tools", "Research"]
    for label, dates in days.items():
        for n, day in enumerate(dates):
            slug = f"{label.lower()}-{day}-{n}"
            (folder / f"{slug}.md").write_text(
                f"---\ntitle: Notes of {day} number {n}\ndate: {day} 10:00\n"
                f"category: {categories[n % 3]}\nexcerpt: What happened on {day}.\n---\n"
                f"A post of {day}, {label}, the {n}th.\n",
                encoding="utf-8",
            )


def _site(sample_site: Path, *, carry: bool, **changes: object) -> Config:
    _posts(sample_site, WEEKS)
    limits = {"per_category": 5, "total": 20, "min_posts": 3, "carry_over": carry}
    config = edit_config(
        sample_site,
        limits=limits,
        schedule={"cron": "0 9 * * MON", "grace": "6h"},
        **changes,
    )
    import_readers(config, ["ada@example.com"], now=datetime(2026, 10, 1, tzinfo=BERLIN))
    return config


def _mondays(config: Config) -> list[tuple[str, str, str]]:
    """Run `digest run` at 09:01 each Monday from 2026-11-02 to 2026-11-23: (issue,
    outcome, detail) of each run."""
    done = []
    for day in (2, 9, 16, 23):
        clock = StepClock(datetime(2026, 11, day, 9, 1, tzinfo=BERLIN))
        report = run_now(config, clock, stop=threading.Event())
        assert report.run is not None
        done.append((report.run.issue_id, report.run.outcome, report.run.detail))
    return done


def _manifest(config: Config, issue_id: str) -> dict[str, object]:
    path = config.path(config.out_dir) / issue_id / "manifest.json"
    data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _slugs(manifest: dict[str, object]) -> list[str]:
    sections = manifest["sections"]
    assert isinstance(sections, list)
    return sorted(post["id"] for section in sections for post in section["posts"])


def test_thin_weeks_roll_into_the_next_full_one_with_carry_over(sample_site: Path) -> None:
    config = _site(sample_site, carry=True)
    assert _mondays(config) == [
        ("2026-W44", "sent", "1 message"),
        (
            "2026-W45",
            "skipped-empty",
            "2026-W45 has 1 post, under limits.min_posts (3); not sent "
            "(`digest send --force` sends it)",
        ),
        (
            "2026-W46",
            "skipped-empty",  # W45's post carried: two, still under three
            "2026-W46 has 2 posts, under limits.min_posts (3); not sent "
            "(`digest send --force` sends it)",
        ),
        ("2026-W47", "sent", "1 message"),
    ]
    w47 = _manifest(config, "2026-W47")
    assert _slugs(w47) == [
        "2026-w45-2026-11-04-0",
        "2026-w46-2026-11-11-0",
        "2026-w47-2026-11-16-0",
        "2026-w47-2026-11-17-1",
        "2026-w47-2026-11-18-2",
    ]
    assert w47["carried"] == {
        "from": "2026-11-02T00:00:00+01:00",
        "posts": ["2026-w45-2026-11-04-0", "2026-w46-2026-11-11-0"],
    }
    # nothing of W44 (sent) came again
    assert not set(_slugs(w47)) & set(_slugs(_manifest(config, "2026-W44")))
    # the skipped weeks are recorded with their reasons, and `digest status` says so
    with RunStore(locate(config, config.schedule.database)) as runs:
        outcomes = [(r.issue_id, r.outcome) for r in runs.all()]
    assert ("2026-W45", "skipped-empty") in outcomes
    result = CliRunner().invoke(
        main, ["--config", str(sample_site / "config.yaml"), "status", "--week", "2026-W45"]
    )
    assert result.exit_code == 0, result.output
    assert result.output == (
        "2026-W45: not sent; the schedule skipped it (2026-11-09 08:01 UTC): 2026-W45 has "
        "1 post, under limits.min_posts (3); not sent (`digest send --force` sends it)\n"
        "  limits.carry_over: its posts go out with the next issue\n"
    )


def test_without_carry_over_the_thin_weeks_posts_are_never_sent(sample_site: Path) -> None:
    config = _site(sample_site, carry=False)
    outcomes = [(issue, outcome) for issue, outcome, _ in _mondays(config)]
    assert outcomes == [
        ("2026-W44", "sent"),
        ("2026-W45", "skipped-empty"),
        ("2026-W46", "skipped-empty"),
        ("2026-W47", "sent"),
    ]
    w47 = _manifest(config, "2026-W47")
    assert _slugs(w47) == [
        "2026-w47-2026-11-16-0",
        "2026-w47-2026-11-17-1",
        "2026-w47-2026-11-18-2",
    ]
    assert "carried" not in w47


def test_select_explain_names_the_carried_posts(sample_site: Path) -> None:
    config = _site(sample_site, carry=True)
    out = config.path(config.out_dir)
    mark_sent(
        out / "2026-W44", week_window("2026-W44", BERLIN), datetime(2026, 11, 2, tzinfo=BERLIN)
    )
    now = datetime(2026, 11, 23, 12, tzinfo=BERLIN)
    selection = pipeline.load_and_select(config, now, week="2026-W47").selection
    assert sorted(p.slug for p in selection.carried) == [
        "2026-w45-2026-11-04-0",
        "2026-w46-2026-11-11-0",
    ]
    result = CliRunner().invoke(
        main,
        ["--config", str(sample_site / "config.yaml"), "select", "--week", "2026-W47", "--explain"],
    )
    assert result.exit_code == 0, result.output
    assert (
        "carried over (limits.carry_over): 2 posts dated after 2026-11-02 00:00, where the "
        "last sent issue ended\n" in result.output
    )
    lines = [line for line in result.output.splitlines() if "2026-w45-" in line]
    assert len(lines) == 1 and lines[0].endswith(
        "; carried over: dated after 2026-11-02 00:00, where the last sent issue ended"
    ), lines


def test_a_post_of_a_built_but_unsent_week_is_still_carried(sample_site: Path) -> None:
    """A thin week `digest send` built and refused leaves a manifest, not a sent mark: its
    post is carried, not left out as if an earlier issue had held it."""
    config = _site(sample_site, carry=True)
    out = config.path(config.out_dir)
    mark_sent(
        out / "2026-W44", week_window("2026-W44", BERLIN), datetime(2026, 11, 2, tzinfo=BERLIN)
    )
    refused = CliRunner().invoke(
        main, ["--config", str(sample_site / "config.yaml"), "send", "--week", "2026-W45"]
    )
    assert refused.exit_code == 5, refused.output
    assert (out / "2026-W45" / "manifest.json").is_file()
    now = datetime(2026, 11, 23, 12, tzinfo=BERLIN)
    selection = pipeline.load_and_select(config, now, week="2026-W47").selection
    assert "2026-w45-2026-11-04-0" in [p.slug for p in selection.carried]


def test_carried_from_is_the_end_of_the_last_sent_issue_of_the_cadence(tmp_path: Path) -> None:
    stamp = datetime(2026, 12, 1, tzinfo=BERLIN)
    w47 = week_window("2026-W47", BERLIN)
    assert carried_from(tmp_path, w47) is None  # nothing ever sent: no reach back
    mark_sent(tmp_path / "2026-W44", week_window("2026-W44", BERLIN), stamp)
    mark_sent(tmp_path / "2026-11-20", day_window(datetime(2026, 11, 20).date(), BERLIN), stamp)
    links = replace(week_window("2026-W46", BERLIN), issue_id="links-2026-W46")
    mark_sent(tmp_path / "links-2026-W46", links, stamp)  # another newsletter's
    assert carried_from(tmp_path, w47) == datetime(2026, 11, 2, tzinfo=BERLIN)
    mark_sent(tmp_path / "2026-W46", week_window("2026-W46", BERLIN), stamp)
    assert carried_from(tmp_path, w47) is None  # the week before was sent: nothing skipped
    day = day_window(datetime(2026, 11, 23).date(), BERLIN)
    assert carried_from(tmp_path, day) == datetime(2026, 11, 21, tzinfo=BERLIN)
    assert carried_from(tmp_path, w47, "links-") is None


DAYS = {
    "day": ["2026-11-16", "2026-11-16", "2026-11-17", "2026-11-19"],
}


def test_a_daily_newsletter_carries_thin_days(sample_site: Path) -> None:
    folder = sample_site / "content" / "posts"
    shutil.rmtree(folder)
    folder.mkdir()
    for n, day in enumerate(DAYS["day"]):
        (folder / f"post-{n}-{day}.md").write_text(
            f"---\ntitle: Day notes {n}\ndate: {day} 1{n}:00\ncategory: Work\n"
            f"excerpt: What happened on {day}.\n---\nA post of {day}.\n",
            encoding="utf-8",
        )
    config = edit_config(
        sample_site,
        period="day",
        limits={"per_category": 5, "total": 20, "min_posts": 2, "carry_over": True},
        schedule={"cron": "0 7 * * *", "grace": "6h"},
    )
    import_readers(config, ["ada@example.com"], now=datetime(2026, 10, 1, tzinfo=BERLIN))
    done = []
    for day in (17, 18, 19, 20):
        clock = StepClock(datetime(2026, 11, day, 7, 1, tzinfo=BERLIN))
        report = run_now(config, clock, stop=threading.Event())
        assert report.run is not None
        done.append((report.run.issue_id, report.run.outcome))
    assert done == [
        ("2026-11-16", "sent"),  # two posts
        ("2026-11-17", "skipped-empty"),  # one
        ("2026-11-18", "skipped-empty"),  # none, the 17th's carried: one
        ("2026-11-19", "sent"),  # the 17th's and its own
    ]
    last = _manifest(config, "2026-11-19")
    assert _slugs(last) == ["post-2-2026-11-17", "post-3-2026-11-19"]
    assert last["carried"] == {"from": "2026-11-17T00:00:00+01:00", "posts": ["post-2-2026-11-17"]}
    assert not set(_slugs(last)) & set(_slugs(_manifest(config, "2026-11-16")))
