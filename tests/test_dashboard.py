"""The audience report and its dashboard page, drawn from seeded stores."""

from __future__ import annotations

import json
import re
from pathlib import Path

from digest.delivery.reports import audience_report
from digest.preview.dashboard import render_dashboard

from .audience_seed import at, seed
from .test_imports import cli


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def test_the_report_equals_the_stores(tmp_path: Path) -> None:
    seeded = seed(tmp_path / "subs.sqlite", tmp_path / "ledger.sqlite")
    report = audience_report(tmp_path / "subs.sqlite", tmp_path / "ledger.sqlite", now=at(23))
    assert report.counts == seeded.counts
    assert nonzero(report.counts) == {
        "active": 5,
        "pending": 1,
        "unsubscribed": 3,
        "bounced": 1,
        "complained": 1,
    }
    assert {k: nonzero(v) for k, v in report.sources.items()} == seeded.sources
    assert report.preferences == {"": 3, "Work": 2}
    assert report.step == "day"
    # The timeline's last point is the store as it is; a point in between is the past.
    last = report.timeline[-1]
    assert {s: last[s] for s in seeded.counts} == seeded.counts
    ninth = next(p for p in report.timeline if p["at"] == "2026-11-09T00:00:00Z")
    assert (ninth["active"], ninth["bounced"], ninth["unsubscribed"]) == (6, 1, 0)
    tenth = next(p for p in report.timeline if p["at"] == "2026-11-10T00:00:00Z")
    assert (tenth["active"], tenth["bounced"], tenth["unsubscribed"]) == (5, 1, 1)
    assert report.timeline[0]["at"] == "2026-11-01T00:00:00Z"
    assert report.arrivals[0] == {
        "at": "2026-11-01T00:00:00Z",
        "cli": 0,
        "import:mailchimp": 0,
        "serve": 2,
    }
    assert sum(a.get("serve", 0) for a in report.arrivals) == 7
    assert sum(a.get("import:mailchimp", 0) for a in report.arrivals) == 3
    assert [i.issue_id for i in report.issues] == ["2026-W46", "2026-W47"]
    for issue in report.issues:
        assert nonzero(issue.states) == seeded.deliveries[issue.issue_id]
        assert issue.followed == seeded.followed[issue.issue_id]


def test_the_page_draws_every_chart_with_the_stores_numbers(tmp_path: Path) -> None:
    seed(tmp_path / "subs.sqlite", tmp_path / "ledger.sqlite")
    report = audience_report(tmp_path / "subs.sqlite", tmp_path / "ledger.sqlite", now=at(23))
    html = render_dashboard(report, site_name="Field <Notes>")
    charts = re.findall(r'<svg [^>]*data-chart="([a-z]+)"', html)
    assert charts == ["timeline", "arrivals", "sources", "preferences", "deliveries", "followed"]
    assert "Field &lt;Notes&gt;" in html and "<script" not in html
    assert 'data-testid="count-total"><strong>11</strong>' in html
    assert '<g data-group="2026-W46" data-total="7">' in html
    assert 'data-series="active" data-last="5"' in html


def test_no_stores_yet(tmp_path: Path) -> None:
    report = audience_report(tmp_path / "none.sqlite", tmp_path / "no-ledger.sqlite", now=at(23))
    assert report.total == 0 and report.issues == [] and report.timeline == []
    assert not (tmp_path / "none.sqlite").exists()
    assert "No subscribers yet." in render_dashboard(report, site_name="x")


def test_cli_stats(sample_site: Path) -> None:
    seeded = seed(
        sample_site / "data" / "subscribers.sqlite", sample_site / "data" / "ledger.sqlite"
    )
    as_json = cli(sample_site, "subscribers", "stats", "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["counts"] == seeded.counts and data["total"] == 11
    assert [(i["issue_id"], i["followed"]) for i in data["issues"]] == list(seeded.followed.items())
    text = cli(sample_site, "subscribers", "stats")
    lines = text.output.splitlines()
    assert lines[0] == (
        "11 subscribers: 5 active, 1 pending, 3 unsubscribed, 1 bounced, 1 complained"
    )
    assert "2026-W46: 6 sent, 1 failed-permanent; after it: 2 unsubscribed, 1 bounced" in lines
    assert "2026-W47: 5 sent, 1 skipped; after it: 1 unsubscribed, 1 complained" in lines
    shown = cli(sample_site, "subscribers", "show", "ed@example.com")
    assert "  status:        bounced since 2026-11-09T15:00:00Z" in shown.output.splitlines()
    assert "    2026-11-09T15:00:00Z  bounced (webhook_bounce)" in shown.output.splitlines()
    # The last point of the timeline is today: the store as it is now.
    over_time = lines.index(next(line for line in lines if line.startswith("over time")))
    assert lines[over_time + 8].endswith(
        "  5 active, 1 pending, 3 unsubscribed, 1 bounced, 1 complained"
    )
    assert "sections chosen by active subscribers:" in lines
