"""`digest preview` names a post it cannot read as a warning (the CLI's logging writes it
to stderr, as for build and send; here pytest's log capture holds it), and its state
carries it in the preview's checks ("skipped posts")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port
from tests.test_cli_preview import run_preview_while

pytestmark = pytest.mark.integration  # digest preview listening on loopback


def test_preview_names_a_skipped_post_on_stderr_and_first_among_its_checks(
    sample_site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = sample_site / "content" / "posts" / "broken-front-matter.md"
    seen: dict[str, Any] = {}

    def steps(base: str) -> None:
        seen.update(httpx.get(base + "/api/state?issue=2026-W47", timeout=30).json())

    result = run_preview_while(sample_site, free_port(), steps, "--week", "2026-W47", "--no-watch")
    assert result.exit_code == 0, result.output
    named = f"skipped {broken}: front matter is not valid YAML at line 9: could not find"
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [m for m in warned if m.startswith("skipped ")] == [f"{named} expected ':'"]
    assert str(broken) in str(seen)
