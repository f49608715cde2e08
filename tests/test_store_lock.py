"""digest/store/lock.py: `digest schedule` and `digest run` locks in PostgreSQL.

With ``database:`` set, the locks are session advisory locks in the database, so two hosts
(here: two processes with their own working directories and data folders, sharing one
database) never run the same newsletter's schedule at once. Every wait is on a condition
with a generous deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from digest.config import DatabaseURL, load_config
from digest.errors import LockError
from digest.schedule.scheduler import run_lock, schedule_lock
from digest.store.lock import DatabaseLock, FileLock
from tests.conftest import ROOT, run_digest
from tests.helpers import wait_for

pytestmark = pytest.mark.integration  # second digest processes and PostgreSQL

DEADLINE = 120.0
QUIET = "2026-11-11T12:00:00+01:00@{now:.3f}x1"  # a Wednesday: nothing is due for days


def host(folder: Path, url: str) -> Path:
    """A site as one host has it: its own folder, data folder and lock file, one database."""
    folder.mkdir()
    shutil.copytree(ROOT / "content", folder / "content")
    text = (ROOT / "config.yaml").read_text()
    text = text.replace("schedule:\n", f"schedule:\n  lock: {folder.name}-locks/schedule.lock\n", 1)
    (folder / "config.yaml").write_text(text + f"\ndatabase: {url}\n")
    return folder


@pytest.fixture
def hosts(tmp_path: Path, pg_url: str) -> tuple[Path, Path]:
    return host(tmp_path / "host-a", pg_url), host(tmp_path / "host-b", pg_url)


def holders(url: str) -> list[str]:
    """The application names of the sessions holding an advisory lock."""
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
        ).fetchall()
    return sorted(str(r[0]) for r in rows)


def start_schedule(site: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "schedule", "--now", QUIET.format(now=time.time())],
        cwd=site,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_locks_are_files_on_sqlite_and_in_the_database_on_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    on_files = load_config(host(tmp_path / "files", pg_url) / "config.yaml")
    plain = on_files.model_copy(update={"database": None})
    lock = schedule_lock(plain)
    assert isinstance(lock, FileLock)
    assert lock.path == tmp_path / "files" / "files-locks" / "schedule.lock"
    assert isinstance(run_lock(plain), FileLock)
    in_db = schedule_lock(on_files)
    assert isinstance(in_db, DatabaseLock)
    assert (in_db.name, in_db.purpose) == ("digest schedule (weekly)", "digest schedule")
    assert in_db.target == DatabaseURL(pg_url)
    assert getattr(run_lock(on_files), "name", None) == "digest run (weekly)"
    links = schedule_lock(on_files.for_newsletter("links"))
    assert getattr(links, "name", None) == "digest schedule (links)"


def test_a_second_holder_is_refused_with_who_holds_it_and_since_when(pg_url: str) -> None:
    url = DatabaseURL(pg_url)
    with DatabaseLock(url, "digest schedule (weekly)", purpose="digest schedule") as first:
        assert first.held
        second = DatabaseLock(url, "digest schedule (weekly)", purpose="digest schedule")
        with pytest.raises(LockError) as caught:
            second.acquire()
        message = str(caught.value)
        assert message.startswith(
            f"the lock 'digest schedule (weekly)' in {pg_url} is held by digest schedule "
            f"(pid {os.getpid()} on "
        )
        assert ", since 20" in message
        assert message.endswith(
            "; only one digest schedule may run at a time (stop the other one, or wait for it)"
        )
        assert not second.held
        # another newsletter's lock is another lock
        with DatabaseLock(url, "digest schedule (links)", purpose="digest schedule") as other:
            assert other.held
    assert holders(pg_url) == []
    with DatabaseLock(url, "digest schedule (weekly)", purpose="digest schedule") as again:
        assert again.held


def test_a_lost_connection_is_noticed_and_the_lock_taken_again(pg_url: str) -> None:
    url = DatabaseURL(pg_url)
    lock = DatabaseLock(url, "digest schedule (weekly)", purpose="digest schedule")
    with lock, psycopg.connect(pg_url, autocommit=True) as admin:
        lock.verify()  # held: nothing to do
        assert len(holders(pg_url)) == 1

        def cut() -> None:  # the server ends the lock's session, as a restart would
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted"
            )
            wait_for(lambda: holders(pg_url) == [], "the lock's session to end")

        cut()
        lock.verify()
        assert lock.held and len(holders(pg_url)) == 1
        # lost again, and another host took it meanwhile: the holder learns it lost it
        cut()
        with DatabaseLock(url, "digest schedule (weekly)", purpose="digest schedule"):
            with pytest.raises(LockError, match="only one digest schedule may run at a time"):
                lock.verify()
            assert not lock.held


@pytest.mark.slow
def test_a_second_host_cannot_schedule_until_the_first_is_killed(
    hosts: tuple[Path, Path], pg_url: str
) -> None:
    a, b = hosts
    first = start_schedule(a)
    processes = [first]
    try:
        wait_for(
            lambda: any(f"(pid {first.pid} on" in h for h in holders(pg_url)),
            "host A's scheduler to hold its lock",
        )
        refused = run_digest("schedule", "--now", QUIET.format(now=time.time()), cwd=b)
        assert refused.returncode == 8, refused.stderr
        assert (
            f"the lock 'digest schedule (weekly)' in {pg_url} is held by digest schedule "
            f"(pid {first.pid} on "
        ) in refused.stderr
        assert "only one digest schedule may run at a time" in refused.stderr
        assert not (b / "host-b-locks").exists()  # no file lock was taken anywhere
        assert first.poll() is None

        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
        second = start_schedule(b)
        processes.append(second)
        wait_for(
            lambda: any(f"(pid {second.pid} on" in h for h in holders(pg_url)),
            "host B's scheduler to take the lock host A's death freed",
        )
        assert second.poll() is None
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=DEADLINE)
        assert second.returncode == 0, err
        assert out.endswith("digest schedule: stopped\n")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=60)
    assert holders(pg_url) == []


def test_digest_run_on_another_host_is_refused_while_a_run_holds_the_lock(
    hosts: tuple[Path, Path], pg_url: str
) -> None:
    a, b = hosts
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from digest.config import load_config; "
            "from digest.schedule.scheduler import run_lock; "
            "lock = run_lock(load_config('config.yaml')); lock.acquire(); "
            "print('held', flush=True); time.sleep(600)",
        ],
        cwd=a,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        refused = run_digest("run", "--now", QUIET.format(now=time.time()), cwd=b)
        assert refused.returncode == 8, refused.stderr
        assert (
            f"the lock 'digest run (weekly)' in {pg_url} is held by digest run "
            f"(pid {holder.pid} on "
        ) in refused.stderr
        assert "only one digest run may run at a time" in refused.stderr
    finally:
        holder.kill()
        holder.wait(timeout=60)
    wait_for(lambda: holders(pg_url) == [], "the killed holder's lock to be dropped")
    ran = run_digest("run", "--now", QUIET.format(now=time.time()), cwd=b)
    assert ran.returncode == 0, ran.stderr
    assert "only one digest run" not in ran.stderr
