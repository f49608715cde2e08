"""Progress while `digest check` reads every post (cli/reading.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import main
from digest.cli.reading import ReadProgress
from digest.content import posts


def test_lines_every_few_seconds_and_the_last_of_each_stage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    at = [0.0]
    progress = ReadProgress(tty=False, every=2.0, clock=lambda: at[0])
    progress("parsing", 250, 1000)  # the stage starts at 0 s: too soon for a line
    at[0] = 2.5
    progress("parsing", 500, 1000)  # 2.5 s: a line
    at[0] = 3.0
    progress("parsing", 1000, 1000)  # the stage's end: a line
    progress("finishing", 250, 600)  # a new stage, 0 s into it: no line yet
    at[0] = 4.0
    progress.close()  # where it ended, once
    assert capsys.readouterr().err.splitlines() == [
        "parsing posts: 500 of 1,000 (200 files/s)",
        "parsing posts: 1,000 of 1,000 (333 files/s)",
        "finishing posts: 250 of 600 (250 files/s)",
    ]


def test_check_shows_progress_on_stderr_and_none_with_json(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(posts, "PROGRESS_EVERY", 2)
    config = ["--config", str(sample_site / "config.yaml")]
    files = sum(1 for p in (sample_site / "content" / "posts").rglob("*.md"))
    result = CliRunner().invoke(main, [*config, "check"])
    assert result.exit_code == 4, result.output  # the sample site has one broken post
    lines = [line for line in result.stderr.splitlines() if " posts: " in line]
    # a quick read shows the stage's last line only (lines come every 2 s); the check
    # parses front matter and finishes no excerpt, so parsing is its one stage
    assert [line.split(" (")[0] for line in lines] == [f"parsing posts: {files} of {files}"]
    assert not [line for line in result.stdout.splitlines() if " posts: " in line]
    quiet = CliRunner().invoke(main, [*config, "check", "--json"])
    assert quiet.exit_code == 4, quiet.output
    assert [line for line in quiet.stderr.splitlines() if " posts: " in line] == []
    assert json.loads(quiet.stdout)["posts"] > 0
