"""Counted links on two `digest serve` processes sharing PostgreSQL: bench/bench_clicks.py
at a small size (its full size is 50,000 clicks from 200 clients); the counts are exact."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_clicks", ROOT / "bench" / "bench_clicks.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_two_serve_processes_count_every_click_exactly(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "bench-clicks-secret")
    bench = _bench()
    site = bench.make_site(tmp_path, pg_url)
    result = bench.measure(site, clicks=3000, clients=30, baseline=300)
    assert result["errors"] == []
    assert (result["counted"], result["filtered"], result["exact"]) == (3000, 0, True)
    assert set(result["exit_codes"]) <= {0, -15}  # SIGTERM: uvicorn ends as the signal says
