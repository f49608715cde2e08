"""digest report (delivery/click_report.py, cli/report.py): clicks per post, section and
issue from the click store and the manifest, beside what the ledger and the subscriber
records say about the issue; digest status warns above 0.1% complaints."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from digest.audience.subscribers import SubscriberStore
from digest.cli import main
from digest.config import Config
from digest.delivery.click_report import click_report
from digest.delivery.clicks import ClickStore, Tally
from digest.delivery.send import send_issue
from tests.helpers import edit_config
from tests.test_clicklinks import NOW, WEEK

READERS = [f"reader{i}@example.com" for i in range(4)]


def _site(sample_site: Path) -> Config:
    config = edit_config(sample_site, analytics={"clicks": "aggregate"})
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        for email in READERS:
            store.add(email, name="", now=NOW)
    assert send_issue(config, now=NOW, week=WEEK).sent == 4
    tally = Tally.empty()
    for kept in (True, True, True, False):
        tally.add(WEEK, 0, "all", "2026-11-23", kept=kept)
    tally.add(WEEK, 2, "all", "2026-11-24", kept=True)
    with ClickStore(config.path(config.analytics.database)) as clicks:
        clicks.add(tally)
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.set_status(
            READERS[0], "complained", cause="webhook_complaint", now=NOW + timedelta(hours=1)
        )
    return config


def test_the_report_adds_up_clicks_and_outcomes(sample_site: Path) -> None:
    config = _site(sample_site)
    manifest = json.loads((config.path(config.out_dir) / WEEK / "manifest.json").read_text())
    first, third = manifest["sections"][0]["posts"][0], None
    places = [(s["name"], p) for s in manifest["sections"] for p in s["posts"]]
    third = places[2]
    report = click_report(config, now=NOW + timedelta(hours=2), issue_id=WEEK)
    (issue,) = report.issues
    assert (issue.delivered, issue.kept, issue.filtered) == (4, 4, 1)
    assert (issue.click_rate, issue.complained, issue.complaint_rate) == (1.0, 1, 0.25)
    assert issue.complaint_level == "alarm"
    assert [(p.post_id, p.kept, p.filtered) for p in issue.posts if p.kept or p.filtered] == [
        (first["id"], 3, 1),
        (third[1]["id"], 1, 0),
    ]
    expected_sections = {name: 0 for name, _ in places}
    expected_sections[places[0][0]] += 3
    expected_sections[third[0]] += 1
    assert issue.sections == expected_sections
    assert issue.days == [
        {"day": "2026-11-23", "kept": 3, "filtered": 1},
        {"day": "2026-11-24", "kept": 1, "filtered": 0},
    ]

    runner = CliRunner()
    result = runner.invoke(
        main, ["--config", str(sample_site / "config.yaml"), "report", "--issue", WEEK, "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [(i["issue_id"], i["delivered"], i["kept"], i["filtered"]) for i in data["issues"]] == [
        (WEEK, 4, 4, 1)
    ]
    assert (data["issues"][0]["complaint_rate"], data["complaint_alarm"]) == (0.25, 0.003)

    status = runner.invoke(
        main, ["--config", str(sample_site / "config.yaml"), "status", "--week", WEEK]
    )
    assert status.exit_code == 0, status.output
    assert (
        "  1 complaints after 4 sent (25.00%): above the 0.10% Google asks senders to stay "
        "under, and Gmail refuses bulk mail from 0.30%\n"
    ) in status.output


def test_a_site_that_counts_nothing_reports_so_and_creates_no_store(sample_site: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(sample_site / "config.yaml"), "report"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "analytics.clicks is off: no clicks are counted (see docs/analytics.md)\nno issues yet\n"
    )
    assert not (sample_site / "data" / "clicks.sqlite").exists()


def test_forget_removes_the_readers_click_rows_and_only_theirs(sample_site: Path) -> None:
    from digest.delivery.erasure import erase

    config = edit_config(sample_site, analytics={"clicks": "aggregate"})
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        ann = store.add("ann@example.com", name="", now=NOW)[0]
        bob = store.add("bob@example.com", name="", now=NOW)[0]
    tally = Tally.empty()
    for handle in (ann.handle, bob.handle):
        tally.add(WEEK, 0, "all", "2026-11-23", kept=True, handle=handle)
    with ClickStore(config.path(config.analytics.database)) as clicks:
        clicks.add(tally)
    report = erase(config, "ann@example.com", now=NOW)
    assert report.click_rows == 1
    assert "  click store: 1 reader row(s) removed" in report.lines()
    with ClickStore(config.path(config.analytics.database)) as clicks:
        assert clicks.readers([WEEK]) == {bob.handle: {WEEK}}
        assert [(c.kept, c.filtered) for c in clicks.links(WEEK)] == [(2, 0)]  # aggregate stays


def test_forget_on_a_site_without_clicks_opens_no_click_store(sample_site: Path) -> None:
    from digest.delivery.erasure import erase

    config = edit_config(sample_site)
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.add("ann@example.com", name="", now=NOW)
    report = erase(config, "ann@example.com", now=NOW)
    assert report.click_rows is None
    assert not any(line.startswith("  click store") for line in report.lines())
    assert not config.path(config.analytics.database).exists()
