"""`digest select` replays its answer while nothing it read has changed, and only then."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digest import config as config_module
from digest.cli import replay

PROBE = """
import sys
from digest.cli import main
try:
    main(sys.argv[1:], prog_name="digest", standalone_mode=False)
finally:
    print("PYDANTIC" if "pydantic" in sys.modules else "LIGHT", file=sys.stderr)
"""


def select(site: Path, *args: str) -> tuple[str, str]:
    """(stdout, whether the schema was imported) of one `digest select` process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "select", *args],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr.strip().splitlines()[-1]


def test_config_lookup_is_the_same_as_the_configs() -> None:
    assert replay.CONFIG_ENV == config_module.CONFIG_ENV
    assert replay.DEFAULT_CONFIG_NAME == config_module.DEFAULT_CONFIG_NAME


def test_a_warm_select_is_replayed_without_the_schema_until_a_post_changes(
    sample_site: Path,
) -> None:
    first, how = select(sample_site, "--week", "2026-W47")
    assert how == "PYDANTIC" and "2026-W47" in first
    again, how = select(sample_site, "--week", "2026-W47")
    assert (again, how) == (first, "LIGHT")

    post = sample_site / "content" / "posts" / "who-gets-to-say-no-to-automation.md"
    post.write_text(post.read_text().replace("title: Who", "title: Changed: Who", 1))
    changed, how = select(sample_site, "--week", "2026-W47")
    assert how == "PYDANTIC" and changed != first

    new = sample_site / "content" / "posts" / "sub" / "a-new-one.md"
    new.parent.mkdir()
    new.write_text("---\ntitle: New\ndate: 2026-11-18\ncategory: Work\n---\nBody\n")
    added, how = select(sample_site, "--week", "2026-W47")
    assert how == "PYDANTIC" and added != changed


def test_other_arguments_config_or_flags_run_in_full(sample_site: Path) -> None:
    select(sample_site, "--week", "2026-W47")
    assert select(sample_site, "--week", "2026-W47", "--json")[1] == "PYDANTIC"
    assert select(sample_site, "--week", "2026-W46")[1] == "PYDANTIC"
    assert select(sample_site, "--week", "2026-W47", "--no-cache")[1] == "PYDANTIC"
    config = sample_site / "config.yaml"
    config.write_text(config.read_text().replace("per_category: 3", "per_category: 2"))
    out, how = select(sample_site, "--week", "2026-W47")
    assert how == "PYDANTIC"
    assert select(sample_site, "--week", "2026-W47") == (out, "LIGHT")


def test_an_answer_expires_when_a_future_post_becomes_current(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sample_site)
    request = replay.Request.of(None, ("select", "x"))
    assert request is not None
    posts = sample_site / "content" / "posts"
    replay.remember(
        request,
        posts_dir=posts,
        posts=replay.tree_fingerprint(posts),
        stdout="the answer\n",
        stderr="",
        valid_until=1000.0,
    )
    assert replay.replay(request, now=999.0)
    assert not replay.replay(request, now=1000.0)
    stored = json.loads(next((Path.home() / ".cache" / "digest" / "answers").iterdir()).read_text())
    assert next(iter(stored.values()))["valid_until"] == 1000.0


def test_the_default_week_is_kept_only_to_the_next_quarter_hour(sample_site: Path) -> None:
    select(sample_site)
    stored = json.loads(next((Path.home() / ".cache" / "digest" / "answers").iterdir()).read_text())
    (answer,) = stored.values()
    assert answer["valid_until"] % 900 == 0
