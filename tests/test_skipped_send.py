"""A post that cannot be read is loud in `digest send` too, as in `digest build`: named
with its reason on stderr, and with ``content.strict`` an error (exit 4) before anything
is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_digest


@pytest.mark.integration
def test_send_names_a_skipped_post_and_content_strict_exits_4(sample_site: Path) -> None:
    broken = sample_site / "content" / "posts" / "broken-front-matter.md"
    named = f"WARNING skipped {broken}: front matter is not valid YAML at line 9"
    done = run_digest("send", "--week", "2026-W47", "--dry-run", cwd=sample_site)
    assert done.returncode == 0, done.stderr
    assert named in done.stderr
    assert "dry run, nothing sent" in done.stdout
    config = yaml.safe_load((sample_site / "config.yaml").read_text(encoding="utf-8"))
    config.setdefault("content", {})["strict"] = True
    (sample_site / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    strict = run_digest("send", "--week", "2026-W47", "--dry-run", cwd=sample_site)
    assert strict.returncode == 4, strict.stderr
    assert strict.stderr.splitlines()[-1].startswith(
        f"error: 1 post(s) skipped, and the build is strict: {broken}: front matter"
    )
    assert "dry run" not in strict.stdout
