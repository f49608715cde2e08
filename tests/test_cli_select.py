"""`digest select` and `digest check` end to end, as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from digest.cli import main

from .conftest import run_digest


def invoke(site: Path, *args: str) -> click.testing.Result:
    return CliRunner().invoke(main, ["--config", str(site / "config.yaml"), *args])


def test_select_json_on_the_sample_site(sample_site: Path) -> None:
    result = invoke(sample_site, "select", "--week", "2026-W47", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["issue_id"] == "2026-W47"
    assert data["window"]["start"] == "2026-11-16T00:00:00+01:00"
    assert data["count"] == 6
    assert [s["name"] for s in data["sections"]] == [
        "Work",
        "Productivity",
        "Tools",
        "Research",
        "Healthcare",
        "Ethics",
    ]
    health = data["sections"][4]
    assert health["title"] == "Health"
    assert health["posts"][0]["url"] == (
        "https://fieldnotes.example.com/posts/measuring-what-patients-notice"
    )
    reasons = {d["slug"]: d["reason"] for d in data["decisions"]}
    assert reasons["sunday-night-planning-without-dread"] == "out-of-window"
    assert reasons["monday-reset-for-small-teams"] == "selected"
    assert [p["path"].endswith("broken-front-matter.md") for p in data["problems"]] == [True]


def test_explain_lists_duplicates_with_the_post_they_duplicate(sample_site: Path) -> None:
    result = invoke(sample_site, "select", "--week", "2026-W42", "--explain")
    assert result.exit_code == 0, result.output
    assert (
        "designing-for-informed-consent: duplicate of consent-forms-nobody-reads (same source)"
        in result.stdout
    )
    week43 = invoke(sample_site, "select", "--week", "2026-W43", "--explain")
    assert "why-stand-ups-run-long: duplicate of why-standups-run-long (same title)" in (
        week43.stdout
    )


def test_check_reports_the_broken_post_and_exits_4(sample_site: Path) -> None:
    result = invoke(sample_site, "check")
    assert result.exit_code == 4
    # 35 Markdown posts and the 5 entries of the links newsletter's feed file
    assert "posts: 40 read, 1 skipped" in result.stdout
    assert "broken-front-matter.md: front matter is not valid YAML" in result.stderr
    (sample_site / "content" / "posts" / "broken-front-matter.md").unlink()
    assert invoke(sample_site, "check").exit_code == 0


@pytest.mark.integration
def test_a_bad_config_is_one_clear_error_without_traceback(sample_site: Path) -> None:
    config = sample_site / "config.yaml"
    config.write_text(config.read_text().replace("limits:", "limts:"), encoding="utf-8")
    result = run_digest("select", cwd=sample_site)
    assert result.returncode == 3
    assert "limts: unknown key; did you mean 'limits'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_week_is_a_usage_error(sample_site: Path) -> None:
    result = invoke(sample_site, "select", "--week", "34")
    assert result.exit_code == 2
    assert "error: --week '34': expected an ISO week such as 2026-W34" in result.stderr


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # loads lazy commands too
        command = group.get_command(ctx, name)
        assert command is not None, name
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix}{name} "))
    return found


@pytest.mark.parametrize(("name", "command"), _commands(main), ids=lambda v: str(v))
def test_every_command_has_help_text(name: str, command: click.Command) -> None:
    assert command.help and len(command.help.strip()) > 20, f"`digest {name}` has no help"
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_check_excerpts_shows_what_cleaning_removed(sample_site: Path) -> None:
    (sample_site / "content" / "posts" / "scraped.md").write_text(
        "---\ntitle: A scraped story about tools\ndate: 2026-11-18\ncategory: Tools\n"
        "excerpt: >-\n  Posted: 4:41 PM PDT · November 18, 2026 The real summary of this "
        "story, long enough to stand on its own as an excerpt. By Ada Lovelace November 18, "
        "2026 9:00 am EST Getty Images\n---\nBody.\n",
        encoding="utf-8",
    )
    result = invoke(sample_site, "check", "--excerpts", "--week", "2026-W47", "--json")
    assert result.exit_code == 0, result.output
    reports = {Path(p["path"]).name: p for p in json.loads(result.stdout)["posts"]}
    scraped = reports["scraped.md"]
    assert scraped["excerpt"] == (
        "The real summary of this story, long enough to stand on its own as an excerpt."
    )
    assert scraped["from"] == "front matter"
    assert [r["rule"] for r in scraped["removed"]] == ["posted-stamp", "byline"]
    text = invoke(sample_site, "check", "--excerpts", "--week", "2026-W47")
    assert "  - posted-stamp: Posted: 4:41 PM PDT · November 18, 2026" in text.output
    assert text.output.rstrip().endswith("cleaned")


def test_select_explain_shows_the_rank(sample_site: Path) -> None:
    result = invoke(sample_site, "select", "--week", "2026-W47", "--explain")
    assert result.exit_code == 0, result.output
    assert "monday-reset-for-small-teams: selected: rank 1" in result.output
    data = json.loads(invoke(sample_site, "select", "--week", "2026-W47", "--json").stdout)
    ranks = {d["slug"]: d["rank"] for d in data["decisions"] if d["reason"] == "selected"}
    assert ranks["monday-reset-for-small-teams"] == 1


def test_select_keeps_nothing_of_its_own_and_records_source_health(sample_site: Path) -> None:
    home = Path(os.environ["HOME"])
    before = set(sample_site.rglob("*"))
    for _ in range(2):
        result = invoke(sample_site, "select", "--week", "2026-W47")
        assert result.exit_code == 0, result.output
    assert list(home.rglob("*")) == []
    written = sorted(set(sample_site.rglob("*")) - before)
    records = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in written
        if p.suffix == ".json" and p.is_file()
    ]
    health = {r["label"]: r for r in records if "last_success" in r}
    assert health, written
    assert all(r["last_success"] for r in health.values())
