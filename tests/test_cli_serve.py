"""`digest serve` as the command runs it, in this process: it listens, answers, says where,
stops on Ctrl-C; a damaged key or a taken port stops it before it serves anything."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from digest.audience.keys import key_file
from digest.cli import main
from digest.config import load_config
from tests.helpers import free_port

pytestmark = pytest.mark.integration  # digest serve listening on loopback


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """`digest serve` gives the root logger's handlers its safe formatter and raises two
    loggers to INFO, as a server process should; the other tests get logging back as it was."""
    root = logging.getLogger()
    formatters = {handler: handler.formatter for handler in root.handlers}
    levels = {name: logging.getLogger(name).level for name in ("digest.serve", "digest.changes")}
    yield
    for handler, formatter in formatters.items():
        handler.setFormatter(formatter)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def serve_until_answered(site: Path, *args: str) -> tuple[Result, list[int]]:
    """Run `digest serve` here; once /healthz answers, press Ctrl-C (SIGINT to this process).

    Returns the command's result and the status codes /healthz gave. uvicorn raises the
    signal again after it has stopped: a handler of the test's own takes it then.
    """
    port = free_port()
    answers: list[int] = []
    caught: list[int] = []
    done = threading.Event()

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            try:
                answers.append(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code)
            except httpx.TransportError:
                done.wait(0.05)
                continue
            os.kill(os.getpid(), signal.SIGINT)
            return

    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    try:
        result = CliRunner().invoke(
            main, ["--config", str(site / "config.yaml"), "serve", "--port", str(port), *args]
        )
    finally:
        done.set()
        presser.join()
        signal.signal(signal.SIGINT, previous)
    assert caught == [signal.SIGINT]  # uvicorn's re-raise, after a clean stop
    return result, answers


def test_serve_says_where_it_listens_and_where_links_point(sample_site: Path) -> None:
    result, answers = serve_until_answered(sample_site)
    assert result.exit_code == 0, result.output
    assert answers == [200]
    port = result.stdout.split("127.0.0.1:")[1].split(" ")[0]
    assert result.stdout == (
        f"digest serve: listening on http://127.0.0.1:{port} "
        "(links point at http://127.0.0.1:8025)\n"
    )


def test_serve_json_prints_the_url_for_scripts(sample_site: Path) -> None:
    result, answers = serve_until_answered(sample_site, "--json", "--host", "127.0.0.1")
    assert result.exit_code == 0, result.output
    assert answers == [200]
    answer = json.loads(result.stdout)
    assert answer["public_url"] == "http://127.0.0.1:8025"
    assert answer["url"].startswith("http://127.0.0.1:")


def test_a_port_in_use_is_a_config_error_that_says_what_to_do(sample_site: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["--config", str(sample_site / "config.yaml"), "serve", "--port", str(port)]
        )
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another "
        "--port or stop what is using it\n"
    )
    assert result.stdout == ""


def test_a_damaged_key_file_stops_serve_before_it_listens(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_SECRET")
    path = key_file(load_config(sample_site / "config.yaml"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    result = CliRunner().invoke(
        main, ["--config", str(sample_site / "config.yaml"), "serve", "--port", "0"]
    )
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: {path}: ")
    assert "listening" not in result.output


def test_serve_starts_with_the_configured_limit_per_client_address(
    sample_site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = sample_site / "config.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.setdefault("serve", {})["max_connections_per_client"] = 3
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    caplog.set_level(logging.INFO, logger="digest.serve.server")
    result, answers = serve_until_answered(sample_site)
    assert result.exit_code == 0, result.output
    assert answers == [200]
    started = [
        r.getMessage()
        for r in caplog.records
        if r.name == "digest.serve.server" and "open connections" in r.getMessage()
    ]
    assert len(started) == 1
    assert re.fullmatch(
        r"at most \d+ open connections \(3 per client address\), a request head within "
        r"10\.0 s, a body within 30\.0 s",
        started[0],
    ), started
