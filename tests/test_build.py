"""`digest build`: files in out/<issue-id>/, the archive, stable output, the real corpus."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from digest.cli import main
from digest.config import load_config
from digest.email.build import build_issue
from digest.errors import NothingToSend
from tests.conftest import run_digest

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
CORPUS_CONFIG = Path(__file__).parent / "data" / "corpus-config.yaml"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_build_stages_the_web_version_and_publishes_nothing(sample_site: Path) -> None:
    config = load_config(sample_site / "config.yaml")
    result = build_issue(config, now=NOW, week="2026-W47")
    out = sample_site / "out"
    assert sorted(p.name for p in (out / "2026-W47" / "web").iterdir()) == [
        "index.html", "issue.json",
    ]  # fmt: skip
    assert result.ok
    # An issue that was only built is not public: no archive page, index or feed.
    assert not (out / "archive").exists()


def test_build_writes_the_issue_and_the_archive(sample_site: Path) -> None:
    config = load_config(sample_site / "config.yaml")
    result = build_issue(config, now=NOW, week="2026-W47", publish=True)
    out = sample_site / "out"
    assert result.ok
    assert result.out_dir == out / "2026-W47"
    assert sorted(p.name for p in result.out_dir.iterdir()) == [
        "email.eml", "email.html", "email.txt", "manifest.json", "web",
    ]  # fmt: skip
    manifest = json.loads((result.out_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["issue_id"] == "2026-W47"
    assert manifest["window"] == {
        "start": "2026-11-16T00:00:00+01:00",
        "end": "2026-11-23T00:00:00+01:00",
        "timezone": "Europe/Berlin",
    }
    assert manifest["post_count"] == 6
    assert manifest["sections"][0]["posts"][0]["id"] == "monday-reset-for-small-teams"
    assert manifest["sizes"]["html"] == len((result.out_dir / "email.html").read_bytes())
    assert manifest["ok"] is True
    assert len(manifest["checks"]) == 10
    parsed = email.message_from_bytes(
        (result.out_dir / "email.eml").read_bytes(), policy=email.policy.default
    )
    assert parsed["Subject"] == manifest["subject"]
    assert parsed["To"] == "weekly@fieldnotes.example.com"
    assert parsed["List-Unsubscribe"].startswith("<http://127.0.0.1:8025/unsubscribe/preview>")
    # The archive: the web version, an index and an Atom feed.
    page = (out / "archive" / "2026-W47" / "index.html").read_text(encoding="utf-8")
    assert "[[digest:" not in page and "Unsubscribe" not in page
    index = (out / "archive" / "index.html").read_text(encoding="utf-8")
    assert 'href="http://127.0.0.1:8025/archive/2026-W47/"' in index
    feed = (out / "archive" / "feed.xml").read_text(encoding="utf-8")
    assert "<id>http://127.0.0.1:8025/archive/2026-W47/</id>" in feed
    assert "<updated>2026-11-22T23:00:00Z</updated>" in feed
    # The feed carries the issue itself, escaped once as Atom's type="html" content.
    assert '<content type="html">&lt;!DOCTYPE html&gt;' in feed
    assert "Monday reset for small teams" in feed or "monday-reset-for-small-teams" in feed
    # What later issues remember of this one: the posts it showed.
    memory = manifest["memory"]
    assert [m["slug"] for m in memory] == [
        p["id"] for section in manifest["sections"] for p in section["posts"]
    ]
    assert manifest["sizes"]["sent_html"] > manifest["sizes"]["html"]


def test_building_twice_writes_the_same_files(sample_site: Path) -> None:
    config = load_config(sample_site / "config.yaml")
    build_issue(config, now=NOW, week="2026-W47")
    first = _snapshot(sample_site / "out")
    build_issue(config, now=datetime(2026, 12, 1, tzinfo=timezone.utc), week="2026-W47")
    assert _snapshot(sample_site / "out") == first


def test_an_empty_week_builds_nothing(sample_site: Path) -> None:
    config = load_config(sample_site / "config.yaml")
    with pytest.raises(
        NothingToSend,
        match=r"^2026-W30 \(2026-07-20 to 2026-07-26, "
        r"Europe/Berlin\) has no posts to send; no email was built$",
    ):
        build_issue(config, now=NOW, week="2026-W30")
    assert not (sample_site / "out" / "2026-W30").exists()


def digest(site: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(site / "config.yaml"), *args])


def test_cli_build_json_and_exit_codes(sample_site: Path) -> None:
    done = digest(sample_site, "build", "--week", "2026-W47", "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert (data["issue_id"], data["ok"], data["post_count"]) == ("2026-W47", True, 6)
    assert data["out_dir"] == str(sample_site / "out" / "2026-W47")
    assert str(sample_site / "out" / "2026-W47" / "email.eml") in data["written"]
    empty = digest(sample_site, "build", "--week", "2026-W30")
    assert empty.exit_code == 5
    assert "has no posts to send" in empty.stderr
    # A failing check (an impossible budget with trimming off) exits 1 and says what to fix.
    config = yaml.safe_load((sample_site / "config.yaml").read_text(encoding="utf-8"))
    config["email"].update(size_budget_kb=10, trim_policy=[])
    (sample_site / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    failed = digest(sample_site, "check", "--email", "--offline", "--week", "2026-W47")
    assert failed.exit_code == 1
    assert failed.stdout.startswith("email: 2026-W47 · Field Notes Weekly: ")
    assert "FAIL  size:" in failed.stdout
    assert "fix: lower limits.per_category" in failed.stdout
    as_json = digest(sample_site, "check", "--email", "--offline", "--week", "2026-W47", "--json")
    assert as_json.exit_code == 1
    answer = json.loads(as_json.stdout)
    assert (answer["issue_id"], answer["ok"]) == ("2026-W47", False)
    assert [c["name"] for c in answer["checks"] if not c["ok"] and c["level"] == "error"] == [
        "size"
    ]
    built = digest(sample_site, "build", "--week", "2026-W47")
    assert built.exit_code == 1
    assert "size: 29.3 KB of 10 KB budget, HTML part as sent" in built.stdout
    assert "trimmed: over budget: " in built.stdout
    assert "  FAIL  size: HTML part as sent is 29.3 KB of a 10 KB budget" in built.stdout
    assert built.stdout.endswith(
        f"wrote: {sample_site / 'out' / '2026-W47'}/ (web archive: not published)\n"
    )


def test_cli_build_text_dry_run_writes_nothing_and_publish_fills_the_archive(
    sample_site: Path,
) -> None:
    dry = digest(sample_site, "build", "--week", "2026-W47", "--dry-run")
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()
    assert lines[0] == (
        "2026-W47 · 2026-11-16 to 2026-11-22 · Field Notes Weekly: quieter meetings, louder tools"
    )
    assert lines[1] == "posts: 6 in 6 sections"
    assert lines[3] == "checks:"
    # plain http links are a warning on this machine, with the fix, and do not fail the build
    assert "  warn  https: links use plain http on this machine" in lines
    assert (
        "          fix: set serve.public_url to the public https address before sending for real"
    ) in lines
    assert '  ok    lang: <html lang="en">' in lines
    assert not (sample_site / "out").exists()
    published = digest(sample_site, "build", "--week", "2026-W47", "--publish")
    assert published.exit_code == 0, published.output
    archive = sample_site / "out" / "archive"
    assert published.stdout.endswith(
        f"wrote: {sample_site / 'out' / '2026-W47'}/ (web archive: {archive}/)\n"
    )
    assert (archive / "2026-W47" / "index.html").exists()


@pytest.mark.integration
def test_cli_help_has_examples(sample_site: Path) -> None:
    done = run_digest("build", "--help", cwd=sample_site)
    assert done.returncode == 0
    assert "digest build --week 2026-W34" in done.stdout


@pytest.mark.corpus
def test_the_busiest_corpus_week_fits_and_passes(corpus_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "corpus-site"
    site.mkdir()
    (site / "posts").symlink_to(corpus_dir)
    shutil.copy(CORPUS_CONFIG, site / "config.yaml")
    config = load_config(site / "config.yaml")
    result = build_issue(config, now=NOW, week="2026-W02", write=False)
    # The most posts of any week in the corpus (198), less the machine-made filler and the
    # stories other outlets told first.
    assert result.selection.count == 92
    assert result.ok, [c for c in result.checks if not c.passed]
    assert result.composed.html_size < result.composed.sent_size <= 100_000
    assert result.composed.trimmed[0].startswith("fewer_posts: at most 14 posts per section")
    assert len(result.composed.sections) == 8
    assert result.composed.post_count == 68


@pytest.mark.integration
def test_a_skipped_post_is_named_on_stderr_in_the_manifest_and_strict_exits_4(
    sample_site: Path,
) -> None:
    broken = sample_site / "content" / "posts" / "broken-front-matter.md"
    named = f"skipped {broken}: front matter is not valid YAML at line 9"
    done = run_digest("build", "--week", "2026-W47", cwd=sample_site)
    assert done.returncode == 0, done.stderr
    assert f"WARNING {named}" in done.stderr
    manifest = json.loads((sample_site / "out" / "2026-W47" / "manifest.json").read_text())
    assert [line.split(": ")[0] for line in manifest["skipped"]] == [str(broken)]
    strict = run_digest("build", "--week", "2026-W47", "--strict", "--dry-run", cwd=sample_site)
    assert strict.returncode == 4
    assert strict.stderr.splitlines()[-1].startswith(
        f"error: 1 post(s) skipped, and the build is strict: {broken}: front matter"
    )
    config = yaml.safe_load((sample_site / "config.yaml").read_text(encoding="utf-8"))
    config.setdefault("content", {})["strict"] = True
    (sample_site / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert run_digest("build", "--week", "2026-W47", "--dry-run", cwd=sample_site).returncode == 4


def test_the_preview_shows_skipped_posts_first_among_its_checks(sample_site: Path) -> None:
    from digest.preview.site import render_from_build

    result = build_issue(load_config(sample_site / "config.yaml"), now=NOW, week="2026-W47")
    shown = render_from_build(result).checks[0]
    assert (shown.name, shown.status) == ("skipped posts", "fail")
    assert shown.message.startswith(str(sample_site / "content" / "posts" / "broken-front-matter"))


def test_an_issue_under_min_posts_is_not_sent_without_force(sample_site: Path) -> None:
    config = yaml.safe_load((sample_site / "config.yaml").read_text(encoding="utf-8"))
    config.setdefault("limits", {})["min_posts"] = 7
    (sample_site / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    done = digest(sample_site, "send", "--week", "2026-W47")
    assert done.exit_code == 5
    assert done.stderr.strip().endswith(
        "2026-W47 has 6 posts, under limits.min_posts (7); not sent "
        "(`digest send --force` sends it)"
    )
