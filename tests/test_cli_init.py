"""`digest init`: a first config from the posts, then build and send with it, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from digest.cli import main
from tests.conftest import ROOT


def digest(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def posts_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the sample site's posts (less its deliberately broken one) and no config."""
    shutil.copytree(ROOT / "content", tmp_path / "content")
    (tmp_path / "content" / "posts" / "broken-front-matter.md").unlink()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_init_proposes_sections_and_writes_a_config_that_builds_and_sends(
    posts_here: Path,
) -> None:
    done = digest("init", "--name", "Field Notes", "--url", "https://fieldnotes.example.com")
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == "wrote config.yaml: 35 posts read, 0 skipped"
    assert lines[1:9] == [
        "sections (6, from the categories the posts name):",
        "  Work: 8 posts",
        "  Tools: 7 posts",
        "  Ethics: 5 posts",
        "  healthcare: 5 posts",
        "  Research: 5 posts",
        "  Productivity: 4 posts",
        "  everything else under 'More': 1 post",
    ]
    assert lines[10] == "sender: fill in sender.from_email and sender.postal_address before sending"
    assert lines[11] == "next:"
    week = lines[13].split()[-1]
    assert lines[12:] == [
        "  digest check",
        f"  digest build --week {week}",
        f"  digest send --week {week} --dry-run",
    ]
    written = yaml.safe_load((posts_here / "config.yaml").read_text())
    assert written["sources"] == [{"path": "content/posts"}]
    assert written["site"] == {
        "name": "Field Notes",
        "base_url": "https://fieldnotes.example.com",
        "post_url": "{base_url}/posts/{slug}",
    }
    assert written["categories"]["unlisted"] == "other"
    assert "# 8 posts" in (posts_here / "config.yaml").read_text()

    check = digest("check")
    assert check.exit_code == 0, check.output
    assert "posts: 35 read, 0 skipped" in check.stdout
    assert "categories that are not sections (other): Gardening" in check.stdout
    built = digest("build", "--week", week)
    assert built.exit_code == 0, built.output
    assert (posts_here / "out" / week / "email.html").is_file()
    assert digest("subscribers", "add", "reader@example.com").exit_code == 0
    sent = digest("send", "--week", week)
    assert sent.exit_code == 0, sent.output
    outbox = list((posts_here / "out" / week / "outbox").glob("*.eml"))
    assert len(outbox) == 1
    assert "From: My newsletter <newsletter@example.com>" not in outbox[0].read_text()
    assert "From: Field Notes <newsletter@example.com>" in outbox[0].read_text()


def test_an_existing_config_is_kept_unless_forced(posts_here: Path) -> None:
    (posts_here / "config.yaml").write_text("# mine\n")
    refused = digest("init")
    assert refused.exit_code == 2
    assert refused.stderr == "error: config.yaml exists; pass --force to replace it\n"
    assert (posts_here / "config.yaml").read_text() == "# mine\n"
    forced = digest("init", "--force")
    assert forced.exit_code == 0, forced.output
    assert (posts_here / "config.yaml").read_text().startswith("# digest configuration")


def test_json_names_what_was_found_and_the_next_commands(posts_here: Path) -> None:
    done = digest("--config", "site/config.yaml", "init", "content/posts", "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["config"] == "site/config.yaml"
    assert data["source"] == {"path": str((posts_here / "content" / "posts").resolve())}
    assert data["posts"] == 35
    assert data["categories"]["Work"] == 8
    assert data["categories"]["Gardening"] == 1
    assert data["sections"] == ["Work", "Tools", "Ethics", "healthcare", "Research", "Productivity"]
    assert data["week_start"] == "monday"
    week = data["newest_week"]
    assert data["next"] == [
        "digest --config site/config.yaml check",
        f"digest --config site/config.yaml build --week {week}",
        f"digest --config site/config.yaml send --week {week} --dry-run",
    ]
    assert digest("--config", "site/config.yaml", "check").exit_code == 0


def test_a_feed_file_is_a_source_too(posts_here: Path) -> None:
    done = digest("init", "--feed", "content/feeds/links.xml", "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["source"] == {"feed": "content/feeds/links.xml"}
    assert data["posts"] == 5
    assert digest("check").exit_code == 0


def test_without_posts_init_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = digest("init")
    assert done.exit_code == 2
    assert (
        "no folder of posts here (looked for content/posts, posts, _posts, content); "
        "name yours: digest init FOLDER (or digest init --feed URL)"
    ) in done.stderr
    missing = digest("init", "nowhere")
    assert missing.exit_code == 2
    assert missing.stderr == (
        "error: nowhere: no such folder (give the folder of your Markdown posts)\n"
    )
    assert not (tmp_path / "config.yaml").exists()


@pytest.mark.parametrize("command", [["select"], ["build"], ["check"], ["send", "--dry-run"]])
def test_without_a_config_every_command_says_to_run_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    done = digest(*command)
    assert done.exit_code == 3
    assert done.stderr == (
        "error: config.yaml: no such config file; run `digest init` to write one from your "
        "posts (or pass --config, or set DIGEST_CONFIG)\n"
    )


@pytest.mark.slow
def test_init_on_the_corpus_then_build_and_send(corpus_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "site" / "config.yaml"
    done = digest("--config", str(config), "init", str(corpus_dir), "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["posts"] == 12_763
    assert len(data["sections"]) == 8
    counts = [data["categories"][name] for name in data["sections"]]
    assert counts == sorted(counts, reverse=True) and counts[-1] >= 2
    week = data["newest_week"]
    built = digest("--config", str(config), "build", "--week", week)
    assert built.exit_code == 0, built.output
    assert digest("--config", str(config), "subscribers", "add", "r@example.com").exit_code == 0
    sent = digest("--config", str(config), "send", "--week", week)
    assert sent.exit_code == 0, sent.output
    assert len(list((tmp_path / "site" / "out" / week / "outbox").glob("*.eml"))) == 1
