"""digest check warns when clicks are on and serve.public_url does not answer
(delivery/click_check.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from digest.cli import main
from digest.delivery.click_check import serve_unreachable
from tests.helpers import edit_config, free_port


def _answer(status: int, text: str) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "https://news.example.org/healthz"
        return httpx.Response(status, text=text)

    return httpx.MockTransport(handle)


def test_serve_is_asked_only_when_clicks_are_on(sample_site: Path) -> None:
    serve = {"public_url": "https://news.example.org"}
    off = edit_config(sample_site, serve=serve)
    assert serve_unreachable(off, transport=_answer(500, "")) is None
    on = edit_config(sample_site, serve=serve, analytics={"clicks": "aggregate"})
    assert serve_unreachable(on, transport=_answer(200, "ok")) is None
    assert serve_unreachable(on, transport=_answer(404, "Not Found")) == (
        "analytics.clicks is on, but https://news.example.org/healthz answers 404, not "
        "digest serve's ok: post links would break (check serve.public_url)"
    )


@pytest.mark.integration  # connects to a closed port on loopback
def test_digest_check_warns_when_serve_does_not_answer(sample_site: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    args = ["--config", str(sample_site / "config.yaml"), "check"]
    edit_config(sample_site, serve={"public_url": url})
    without = CliRunner().invoke(main, args)
    assert "analytics.clicks" not in without.output
    edit_config(sample_site, serve={"public_url": url}, analytics={"clicks": "aggregate"})
    result = CliRunner().invoke(main, args)
    assert result.exit_code == without.exit_code, result.output  # a warning, not a failure
    assert f"warning: analytics.clicks is on, but {url}/healthz does not answer (ConnectError" in (
        result.output
    )
