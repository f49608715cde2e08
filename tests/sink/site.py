"""A copy of the sample site pointed at the sink, and the operator's commands on it.

Shared by tests/test_fault_sink.py and tests/test_exactly_once_state.py: the site's
subscribers, ``digest send`` and ``digest status --json`` through click's CliRunner (the
same code an operator's shell runs, in this process) or as a whole process, and the oracle:
:func:`verdict` compares what the sink accepted with who should have it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from digest.audience.imports.importer import import_file
from digest.audience.subscribers import Categories, SubscriberStore
from digest.cli import main
from digest.config import Config, load_config
from tests.sink import MAILGUN_DOMAIN

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WEEK = "2026-W47"
KEY = "sink-key"
HTTP = ("postmark", "sendgrid", "mailgun", "brevo", "resend", "ses")
TRANSPORTS = (*HTTP, "smtp")
# Providers that cannot be asked whether an unanswered request was accepted: their
# uncertain rows may stay uncertain (named by `digest status`) after a clean rerun.
NO_QUERY = {"sendgrid", "ses", "smtp"}
TIMEOUT = 1.0  # the client's answer timeout; the sink's accept_hang holds longer

OPTIONS: dict[str, dict[str, Any]] = {
    "postmark": {"token": "${SINK_KEY}", "message_stream": "broadcast"},
    "sendgrid": {"api_key": "${SINK_KEY}"},
    "mailgun": {"api_key": "${SINK_KEY}", "domain": MAILGUN_DOMAIN},
    "brevo": {"api_key": "${SINK_KEY}"},
    "resend": {"api_key": "${SINK_KEY}"},
    "ses": {
        "access_key_id": "${SINK_KEY}",
        "secret_access_key": "${SINK_KEY}",
        "region": "eu-west-1",
    },
}


def configure(
    site: Path,
    transport: str,
    *,
    url: str = "",
    port: int = 0,
    n: int = 200,
    batch: int = 20,
    concurrency: int = 1,
    timeout: float = TIMEOUT,
    retries: int = 2,
    **send: Any,
) -> list[str]:
    """Point the site at the sink, import ``n`` subscribers; their addresses."""
    os.environ["SINK_KEY"] = KEY
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    if transport == "smtp":
        data["provider"] = {
            "name": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "timeout": timeout * 3,
        }
    else:
        data["provider"] = {
            "name": transport,
            "base_url": url,
            **OPTIONS[transport],
            "max_retries": retries,
            "retry_base_delay": 0.01,
            "retry_max_delay": 0.05,
            "timeout": timeout,
            "reconcile_after": 0,
        }
    data["send"] = {
        "batch_size": batch,
        "concurrency": concurrency,
        "max_attempts": 3,
        # refusals for now are retried after tens of milliseconds, not 2 s, 4 s …: the
        # tests wait on the faults, not on the backoff an operator wants
        "retry_wait": "0.02s",
        "retry_wait_max": "0.1s",
        **send,
    }
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    addresses = [f"reader-{i:04d}@example.com" for i in range(n)]
    csv = site / "people.csv"
    csv.write_text("email,name\n" + "".join(f"{a},Reader {i}\n" for i, a in enumerate(addresses)))
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        import_file(store, csv, Categories.from_config(config), now=NOW, erasure_key=None)
    return addresses


@dataclass
class Run:
    exit_code: int
    output: str


def digest(site: Path, *args: str) -> Run:
    """One command through click, in this process, as the shell would run it."""
    result = CliRunner().invoke(
        main, ["--config", str(site / "config.yaml"), *args], catch_exceptions=False
    )
    return Run(result.exit_code, result.output)


def send(site: Path, *args: str) -> Run:
    return digest(site, "send", "--week", WEEK, *args)


def process(site: Path, *args: str) -> subprocess.Popen[str]:
    """``digest send`` as a whole process (for signals)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest",
            "--config",
            str(site / "config.yaml"),
            "send",
            "--week",
            WEEK,
            *args,
        ],
        cwd=site,
        env={**os.environ, "SINK_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def status(site: Path) -> dict[str, Any]:
    run = digest(site, "status", "--week", WEEK, "--json")
    assert run.exit_code == 0, run.output
    data: dict[str, Any] = json.loads(run.output)
    return data


def active(site: Path, config: Config | None = None) -> set[str]:
    config = config or load_config(site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        return {s.email.lower() for s in store.iter_active()}


def unsubscribe(site: Path, email: str) -> None:
    run = digest(site, "subscribers", "unsubscribe", email)
    assert run.exit_code == 0, run.output


def verdict(
    accepted: Counter[str], site: Path, transport: str, config: Config | None = None
) -> dict[str, Any]:
    """The oracle. ``duplicated``: accepted more than once. ``lost``: active, not accepted,
    and not named uncertain by ``digest status`` for a provider without a query.
    ``unsettled``: named uncertain where the provider has a query that should settle it.
    An exact run has all three empty."""
    state = status(site)
    named = {u["email"].lower() for u in state["uncertain"]}
    counted = state["counts"].get("uncertain", 0)
    assert counted == len(named) or counted > 20, state  # status names up to 20
    people = active(site, config)
    allowed = named if transport in NO_QUERY else set()
    return {
        "duplicated": sorted(e for e, c in accepted.items() if c > 1),
        "lost": sorted(e for e in people if accepted[e] == 0 and e not in allowed),
        "unsettled": sorted(named - allowed),
    }


EXACT: dict[str, list[str]] = {"duplicated": [], "lost": [], "unsettled": []}
