"""`digest preview` as the command runs it, in this process: it builds, listens on loopback
whatever preview.host says, reports each rebuild and each mistake, and stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from digest.cli import main
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.integration  # digest preview listening on loopback


def run_preview_while(site: Path, port: int, steps: Callable[[str], None], *args: str) -> Result:
    """Run `digest preview` here; ``steps(base_url)`` runs beside it once the page answers,
    then Ctrl-C (SIGINT to this process) stops it. uvicorn raises the signal again after it
    has stopped: a handler of the test's own takes it then."""
    failures: list[BaseException] = []
    caught: list[int] = []

    def drive() -> None:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _status(base + "/") == 200)
            steps(base)
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    driver = threading.Thread(target=drive)
    driver.start()
    try:
        result = CliRunner().invoke(
            main,
            ["--config", str(site / "config.yaml"), "preview", "--port", str(port), *args],
        )
    finally:
        driver.join()
        signal.signal(signal.SIGINT, previous)
    if failures:
        raise failures[0]
    assert caught == [signal.SIGINT]
    return result


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.TransportError:
        return None


def state(base: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(base + "/api/state?issue=2026-W47", timeout=30).json()
    return answer


def test_preview_reports_a_broken_config_and_the_rebuild_after_the_fix(sample_site: Path) -> None:
    config = sample_site / "config.yaml"
    good = config.read_text()
    port = free_port()

    def steps(base: str) -> None:
        first = state(base)
        assert first["problem"] is None and first["email"]["post_count"] == 6
        config.write_text(good + "\nlimits: [\n")  # a YAML mistake, as saved in an editor
        wait_for(lambda: state(base)["problem"] is not None)
        config.write_text(good)
        wait_for(lambda: state(base)["problem"] is None)

    result = run_preview_while(sample_site, port, steps, "--week", "2026-W47")
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[0] == f"Previewing 2026-W47 at http://127.0.0.1:{port}/"
    assert out[1].startswith("Watching ") and out[1].endswith(f" and {config}")
    assert out[2] == "Press Ctrl-C to stop."
    assert "changed: config.yaml" in out
    assert out[-1] == "Preview stopped."
    assert any(line.startswith("rebuilt 2026-W47 in ") for line in out)
    assert f"2026-W47 did not build ({config}:" in result.stderr


def test_preview_listens_on_loopback_unless_the_host_is_given(sample_site: Path) -> None:
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["preview"] = {"host": "0.0.0.0"}
    path.write_text(yaml.safe_dump(data))
    port = free_port()
    result = run_preview_while(
        sample_site, port, lambda base: None, "--week", "2026-W47", "--no-watch"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        "preview.host is 0.0.0.0; the preview listens on 127.0.0.1 unless you pass --host "
        "explicitly\n"
    )
    assert result.stdout.splitlines() == [
        f"Previewing 2026-W47 at http://127.0.0.1:{port}/",
        "Press Ctrl-C to stop.",  # --no-watch: no "Watching" line
        "Preview stopped.",
    ]


def test_preview_refuses_a_port_in_use(sample_site: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main,
            ["--config", str(sample_site / "config.yaml"), "preview", "--week", "2026-W47",
             "--port", str(port)],
        )  # fmt: skip
    assert result.exit_code == 1
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "pick another port with --port (0 picks a free one)" in result.stderr


def test_an_issue_that_does_not_build_is_reported_when_the_preview_opens(
    sample_site: Path,
) -> None:
    intro = sample_site / "content" / "issues" / "2026-W47.md"
    intro.parent.mkdir(parents=True, exist_ok=True)
    intro.write_text("---\nsubject: [never closed\n")
    port = free_port()
    result = run_preview_while(
        sample_site, port, lambda base: None, "--week", "2026-W47", "--no-watch", "--host",
        "localhost",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"Previewing 2026-W47 at http://localhost:{port}/"
    assert result.stderr == (
        f"2026-W47 did not build: {intro}: the front matter is never closed; add a line '---' "
        "after it\n"
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("192.168.1.20", False),
        ("preview.example.com", False),
    ],
)
def test_which_hosts_are_loopback(host: str, loopback: bool) -> None:
    from digest.cli.preview import _is_loopback

    assert _is_loopback(host) is loopback
