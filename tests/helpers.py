"""Helpers shared by the tests: a free port, waiting on progress, sites, ledgers, emails.

Waiting never trusts a fixed wall-clock deadline alone: ``wait_for`` fails when nothing has
moved for a while (``progress``: a count, a process's CPU time), or after a generous overall
cap, so a test passes on a slow, loaded machine as long as the work goes on.
"""

from __future__ import annotations

import contextlib
import email
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime, timezone
from email import policy
from email.utils import parseaddr
from pathlib import Path
from typing import Any, TypeVar

import yaml

from digest.audience.imports.importer import import_file
from digest.audience.subscribers import Categories, SubscriberStore
from digest.config import Config, load_config
from digest.email.message import ComposedEmail
from digest.store.database import locate

T = TypeVar("T")

QUIET = 60.0  # seconds without progress before a wait that watches progress gives up
CAP = 300.0  # seconds in all (a generous bound, never a timing; pytest-timeout is 600)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(
    condition: Callable[[], T],
    what: str = "the condition",
    *,
    progress: Callable[[], Hashable] | None = None,
    quiet: float = QUIET,
    cap: float = CAP,
    poll: float = 0.02,
) -> T:
    """Call ``condition`` until it returns something true, and return that.

    Fails when ``progress()`` has returned the same value for ``quiet`` seconds (each change
    starts the quiet period again), and in any case after ``cap`` seconds in all."""
    start = last_move = time.monotonic()
    seen = progress() if progress is not None else None
    while True:
        value = condition()
        if value:
            return value
        now = time.monotonic()
        if progress is not None:
            current = progress()
            if current != seen:
                seen, last_move = current, now
        if progress is not None and now - last_move > quiet:
            raise AssertionError(f"no progress in {quiet:.0f}s waiting for {what}")
        if now - start > cap:
            raise AssertionError(f"gave up after {cap:.0f}s waiting for {what}")
        time.sleep(poll)


def cpu_time(pid: int | None) -> float:
    """The CPU seconds a process has used (Linux /proc): it moves while the process works,
    however slowly a loaded machine lets it. A process that is gone reads as -1."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- sites


def edit_config(site: Path, **changes: Any) -> Config:
    """Set top-level keys of ``site/config.yaml`` (a whole value each) and load it."""
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_config(path)


def import_readers(
    config: Config, addresses: Iterable[str], *, now: datetime = NOW, name: str = "Reader {i}"
) -> None:
    """Import ``addresses`` as active subscribers, through a CSV as a user would."""
    folder = config.path(config.subscribers.database).parent
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "readers.csv"
    rows = "".join(f"{a},{name.format(i=i)}\n" for i, a in enumerate(addresses))
    csv.write_text("email,name\n" + rows, encoding="utf-8")
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        import_file(store, csv, Categories.from_config(config), now=now, erasure_key=None)
    csv.unlink()


# --------------------------------------------------------------------------- ledger


def ledger_states(config: Config) -> dict[str, str]:
    """address -> delivery state, read from the SQLite ledger (empty before the first send)."""
    db = config.path(config.ledger.database)
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT email, state FROM deliveries").fetchall())


# --------------------------------------------------------------------------- emails


def composed(
    subject: str = "Subject",
    html: str = "<p>Hello [[digest:email]]</p>",
    text: str = "Hello [[digest:email]]",
    *,
    sender: str = "Test <news@example.com>",
    headers: dict[str, str] | None = None,
) -> ComposedEmail:
    """A composed email without a site: the fields a transport reads, and ``From``."""
    return ComposedEmail(
        issue_id="2026-W47",
        subject=subject,
        preheader="",
        html=html,
        text=text,
        headers={"From": sender, **(headers or {})},
        from_address=sender,
        reply_to=None,
        sections=(),
        post_count=0,
        composed_at=NOW,
    )


def recipient_of(eml: Path) -> str:
    """The address an outbox message file is to (its name holds a keyed hash, not it)."""
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    return parseaddr(str(message["To"]))[1]


def outbox_to(folder: Path, address: str) -> list[Path]:
    """The outbox message files in ``folder`` addressed to ``address``, sorted."""
    return sorted(p for p in folder.glob("*.eml") if recipient_of(p) == address)


def start_serve(site: Path, secret: str) -> subprocess.Popen[str]:
    """``digest serve --json`` in ``site`` with ``DIGEST_SECRET`` set, returned once it has
    printed where it listens (its stdout stays open; the caller stops it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--json"],
        cwd=site,
        env={**os.environ, "DIGEST_SECRET": secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    text = ""
    while "}" not in text:
        line = proc.stdout.readline()
        assert line, "digest serve did not start"
        text += line
    return proc
