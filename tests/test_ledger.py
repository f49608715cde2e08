"""The send ledger: states, attempts, the crash-left ``sending`` rows, WAL, the lock."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from digest.delivery.ledger import (
    FAILED_PERMANENT,
    FAILED_RETRYABLE,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    STATES,
    Ledger,
    Outcome,
)
from digest.errors import LockError
from digest.store.database import Target

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ISSUE = "2026-W47"


pytestmark = pytest.mark.backends


@pytest.fixture
def ledger(store_at: Callable[[str], Target]) -> Ledger:
    return Ledger(store_at("ledger.sqlite"))


def _queue(ledger: Ledger, n: int) -> int:
    return ledger.enqueue(ISSUE, ((i, f"r{i}@example.com") for i in range(1, n + 1)), now=NOW)


def test_enqueue_is_idempotent_and_counts_only_new_rows(ledger: Ledger) -> None:
    assert _queue(ledger, 5) == 5
    assert _queue(ledger, 7) == 2
    assert ledger.counts(ISSUE) == {**dict.fromkeys(STATES, 0), PENDING: 7}
    assert ledger.counts("2026-W48")[PENDING] == 0


def test_a_row_moves_through_claim_and_record(ledger: Ledger) -> None:
    _queue(ledger, 3)
    ledger.claim(
        ISSUE, [1, 2, 3], batch_key="k1", variant="all", message_ids=["<1>", "<2>", "<3>"], now=NOW
    )
    row = ledger.get(ISSUE, 1)
    assert row is not None
    assert (row.state, row.attempts, row.batch_key, row.variant, row.message_id) == (
        SENDING,
        1,
        "k1",
        "all",
        "<1>",
    )
    later = NOW + timedelta(seconds=5)
    ledger.record(
        ISSUE,
        [
            Outcome(1, SENT, provider_message_id="pm-1"),
            Outcome(2, FAILED_PERMANENT, error="550 no such user"),
            Outcome(3, FAILED_RETRYABLE, error="421 try later"),
        ],
        now=later,
    )
    sent, failed, retry = (ledger.get(ISSUE, i) for i in (1, 2, 3))
    assert sent is not None and failed is not None and retry is not None
    assert (sent.state, sent.provider_message_id, sent.sent_at) == (
        SENT,
        "pm-1",
        "2026-11-23T12:00:05.000Z",
    )
    assert (failed.state, failed.last_error, failed.sent_at) == (
        FAILED_PERMANENT,
        "550 no such user",
        None,
    )
    assert retry.state == FAILED_RETRYABLE
    # A retry claims the row again: attempts count up, the old provider id stays.
    ledger.claim(ISSUE, [3], batch_key="k2", variant="all", message_ids=["<3>"], now=later)
    again = ledger.get(ISSUE, 3)
    assert again is not None and (again.state, again.attempts, again.batch_key) == (
        SENDING,
        2,
        "k2",
    )
    assert [d.subscriber_id for d in ledger.failures(ISSUE)] == [2]


def test_iter_state_streams_in_subscriber_order_a_chunk_at_a_time(ledger: Ledger) -> None:
    _queue(ledger, 25)
    ledger.claim(ISSUE, [4, 9], batch_key="k", variant="all", message_ids=["<4>", "<9>"], now=NOW)
    chunks = list(ledger.iter_state(ISSUE, [PENDING], chunk=10))
    assert [len(c) for c in chunks] == [10, 10, 3]
    ids = [d.subscriber_id for c in chunks for d in c]
    assert ids == [i for i in range(1, 26) if i not in (4, 9)]
    assert [d.subscriber_id for c in ledger.iter_state(ISSUE, [SENDING]) for d in c] == [4, 9]


def test_sending_rows_survive_a_reopen_with_their_hand_off_marks(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    first = Ledger(path)
    _queue(first, 3)
    first.claim(ISSUE, [1, 2], batch_key="k", variant="all", message_ids=["<1>", "<2>"], now=NOW)
    first.mark_handed_off(ISSUE, 2)
    # No close(): as if the process died here.
    second = Ledger(path)
    rows = {d.subscriber_id: d for c in second.iter_state(ISSUE, [SENDING]) for d in c}
    assert set(rows) == {1, 2}
    assert (rows[1].handed_off, rows[2].handed_off) == (False, True)
    second.record(ISSUE, [Outcome(2, SENT, confirmed=False), Outcome(1, PENDING)], now=NOW)
    assert second.unconfirmed(ISSUE) == 1
    assert second.counts(ISSUE)[PENDING] == 2
    first.close()
    second.close()


def test_the_ledger_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")  # a property of the SQLite file
    assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    ledger.mark_handed_off(ISSUE, 1)  # switches to NORMAL for the mark, then back
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    # A reader in another connection sees committed rows while the writer stays open.
    _queue(ledger, 2)
    other = sqlite3.connect(tmp_path / "ledger.sqlite")
    assert other.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 2
    other.close()


def test_issue_runs_completion_and_force_reset(ledger: Ledger) -> None:
    ledger.start_run(ISSUE, subject="Hello", provider="outbox", now=NOW)
    ledger.start_run(ISSUE, subject="Hello", provider="outbox", now=NOW)
    _queue(ledger, 3)
    ledger.claim(ISSUE, [1, 3], batch_key="k", variant="all", message_ids=["a", "c"], now=NOW)
    ledger.record(
        ISSUE,
        [
            Outcome(1, SENT),
            Outcome(2, SKIPPED, error="no posts"),  # from pending: never claimed
            Outcome(3, FAILED_PERMANENT),
        ],
        now=NOW,
    )
    ledger.mark_completed(ISSUE, NOW)
    info = ledger.issue(ISSUE)
    assert info is not None and info["runs"] == 2 and info["completed_at"] is not None
    assert ledger.reset_for_resend(ISSUE, NOW) == 3
    info = ledger.issue(ISSUE)
    assert info is not None and info["completed_at"] is None
    row = ledger.get(ISSUE, 1)
    assert row is not None and (row.state, row.attempts) == (PENDING, 0)
    assert ledger.issues() == [ISSUE]


OPEN_LEDGER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from digest.config import DatabaseURL\n"
    "from digest.delivery.ledger import Ledger\n"
    "arg = sys.argv[1]\n"
    "target = DatabaseURL(arg) if arg.startswith('postgresql:') else Path(arg)\n"
)


@pytest.mark.integration
def test_only_one_sender_holds_the_lock(ledger: Ledger, store_at: Callable[[str], Target]) -> None:
    ledger.lock()
    where = str(store_at("ledger.sqlite"))
    code = OPEN_LEDGER + (
        "from digest.errors import LockError\n"
        "try:\n"
        "    Ledger(target).lock()\n"
        "except LockError as exc:\n"
        "    print(exc); sys.exit(8)\n"
    )
    held = subprocess.run(
        [sys.executable, "-c", code, where],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert held.returncode == 8
    assert "another digest send is running" in held.stdout
    assert f"(pid {os.getpid()}" in held.stdout  # who holds it
    # In the same process a second Ledger on the same store is refused too (flock is per
    # open file description; an advisory lock per connection), and the lock is free again
    # once released.
    with pytest.raises(LockError, match="another digest send is running"):
        Ledger(store_at("ledger.sqlite")).lock()
    ledger.unlock()
    free = subprocess.run(
        [sys.executable, "-c", code, where],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert free.returncode == 0, free.stdout


@pytest.mark.integration
def test_a_killed_holder_releases_the_lock(store_at: Callable[[str], Target]) -> None:
    path = store_at("ledger.sqlite")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            OPEN_LEDGER + "import time\n"
            "held = Ledger(target)\nheld.lock(); print('held', flush=True); time.sleep(600)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(LockError):
        Ledger(path).lock()
    holder.kill()
    holder.wait(timeout=30)
    mine = Ledger(path)
    mine.lock()
    mine.close()
