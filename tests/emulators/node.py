"""Start the npm emulators ``resend-local`` and ``aws-ses-v2-local`` on loopback for pytest.

Both are installed into ``tests/emulators/node/node_modules`` by
``npm ci --prefix tests/emulators/node``. README.md beside this file says what each one
implements and what it does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tests.helpers import free_port as _free_port

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_MODULES = NODE_DIR / "node_modules"
RESEND_APP = NODE_MODULES / "resend-local" / "dist" / "app"
SES_CLI = NODE_MODULES / "aws-ses-v2-local" / "dist" / "cli.js"
INSTALL_HINT = "run `npm ci --prefix tests/emulators/node`"


class NodeEmulatorError(RuntimeError):
    """The npm emulator is not installed, or did not start."""


def _require(path: Path) -> None:
    if shutil.which("node") is None:
        raise NodeEmulatorError("node is not on PATH; install Node.js 18 or newer")
    if not path.exists():
        raise NodeEmulatorError(f"{path} is missing; {INSTALL_HINT}")


def _get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def _wait_until_up(
    process: subprocess.Popen[bytes], url: str, log: IO[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    process.kill()
    process.wait()
    log.seek(0)
    output = log.read().decode(errors="replace")
    raise NodeEmulatorError(f"{url} did not answer within {timeout}s; output:\n{output}")


@contextlib.contextmanager
def _node_process(
    command: list[str], cwd: Path, env: dict[str, str], probe: str, timeout: float
) -> Iterator[subprocess.Popen[bytes]]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - outlives this frame; closed below
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(process, probe, log, timeout)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class ResendLocal:
    """A running resend-local. Send with ``Authorization: Bearer re_<anything>``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def sent(self) -> list[dict[str, Any]]:
        """Every email it stored, oldest first (its dashboard API lists newest first)."""
        emails: list[dict[str, Any]] = []
        page = 0
        while True:
            data = _get_json(f"{self.url}/dashboard-api/emails?limit=100&offset={page}")
            emails.extend(data["emails"])
            if data.get("next") is None:
                break
            page = data["next"]
        return list(reversed(emails))


class SesLocal:
    """A running aws-ses-v2-local. Any ``Authorization: AWS…`` header is accepted."""

    def __init__(self, url: str) -> None:
        self.url = url

    def store(self) -> dict[str, Any]:
        return _get_json(f"{self.url}/store")  # type: ignore[no-any-return]

    def sent(self) -> list[dict[str, Any]]:
        """Every email it stored, oldest first."""
        return self.store()["emails"]  # type: ignore[no-any-return]

    def templates(self) -> dict[str, Any]:
        return self.store()["templates"]  # type: ignore[no-any-return]

    def clear(self) -> None:
        request = urllib.request.Request(f"{self.url}/clear-store", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextlib.contextmanager
def run_resend_local(startup_timeout: float = 30.0) -> Iterator[ResendLocal]:
    """Start resend-local on a free loopback port with an empty database of its own.

    resend-local's own launcher keeps its SQLite file inside node_modules and leaves the
    server running when the launcher is stopped, so this starts the bundled Next.js server
    directly, on a copy of the empty database in a temporary folder.
    """
    _require(RESEND_APP / "server.js")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="resend-local-") as folder:
        database = Path(folder) / "resend-local.sqlite"
        shutil.copyfile(RESEND_APP / "resend-local.sqlite", database)
        env = {
            **os.environ,
            "PORT": str(port),
            "HOSTNAME": "127.0.0.1",
            "DATABASE_URL": f"file:{database}",
            "NEXT_TELEMETRY_DISABLED": "1",
        }
        url = f"http://127.0.0.1:{port}"
        probe = f"{url}/dashboard-api/emails?limit=1&offset=0"
        with _node_process(["node", "server.js"], RESEND_APP, env, probe, startup_timeout):
            yield ResendLocal(url)


@contextlib.contextmanager
def run_ses_local(startup_timeout: float = 30.0) -> Iterator[SesLocal]:
    """Start aws-ses-v2-local on a free loopback port (its store lives in memory)."""
    _require(SES_CLI)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = ["node", str(SES_CLI), "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ}
    env.pop("SMTP_TRANSPORT", None)  # never forward the emulator's mail anywhere
    with _node_process(command, NODE_DIR, env, f"{url}/health-check", startup_timeout):
        yield SesLocal(url)
