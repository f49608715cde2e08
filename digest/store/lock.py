"""Exclusive, non-blocking process locks (``digest schedule``, ``digest run``), released
when the holder dies.

Two kinds, with one interface (:class:`ProcessLock`) and the same refusal
(:class:`~digest.errors.LockError`, naming who holds the lock):

- :class:`FileLock`, on the SQLite files: ``fcntl.flock`` on a file beside them, rather
  than "create the file if absent", because a process killed with SIGKILL cannot clean up:
  the kernel drops a flock with the process, so a crashed scheduler never leaves a stale
  lock behind. The file holds the holder's pid and purpose for the error.
- :class:`DatabaseLock`, with ``database:`` on PostgreSQL, where processes on several hosts
  share the stores and a file lock would only keep out processes on the same host: a
  session-level advisory lock (``pg_try_advisory_lock``) on a key derived from the lock's
  name, held on a connection of its own for as long as the lock is held. The server drops
  it when that connection ends: on release, when the process dies (its socket closes), and
  when its host vanishes (TCP keepalives on the lock's connection notice within about a
  minute and a half). The connection's ``application_name`` names the holder for the error.

:func:`process_lock` picks the kind the configuration calls for.

A store's own lock (:class:`StoreLock`: the send ledger's, shared by senders) is the same
flock or advisory lock, taken shared or exclusive.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from digest.config import Config, DatabaseURL
from digest.errors import LockError, StoreError
from digest.store.clock import utc_text
from digest.store.connection import DatabaseLocks, Target

if TYPE_CHECKING:
    from digest.store.postgres import PostgresConnection

log = logging.getLogger(__name__)


class ProcessLock(Protocol):
    """What the scheduler and ``digest run`` hold: :class:`FileLock` or :class:`DatabaseLock`."""

    purpose: str

    @property
    def held(self) -> bool: ...

    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def verify(self) -> None: ...

    def __enter__(self) -> ProcessLock: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def process_lock(config: Config, path: Path, purpose: str) -> FileLock | DatabaseLock:
    """The lock ``purpose`` (``"digest schedule"``, ``"digest run"``) for this newsletter: in
    the database when ``database:`` is set (every host sees it), else the file ``path``."""
    if config.database is not None:
        return DatabaseLock(
            config.database, f"{purpose} ({config.newsletter_name})", purpose=purpose
        )
    return FileLock(config.path(path), purpose)


def _refusal(where: object, holder: str, purpose: str) -> LockError:
    return LockError(
        f"{where} is held by {holder or 'another process'}; only one "
        f"{purpose} may run at a time (stop the other one, or wait for it)"
    )


class FileLock:
    """``with FileLock(path, "digest schedule"):`` — or raise :class:`LockError` at once."""

    def __init__(self, path: Path, purpose: str) -> None:
        self.path = path
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LockError(f"{self.path}: cannot open the lock file: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            for _ in range(20):  # the holder writes its name just after taking the lock
                if holder:
                    break
                time.sleep(0.05)
                holder = _read_holder(fd)
            os.close(fd)
            raise _refusal(self.path, holder, self.purpose) from None
        stamp = utc_text(datetime.now(timezone.utc), "seconds")
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.purpose} (pid {os.getpid()}, since {stamp})\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def verify(self) -> None:
        """Nothing to check: a flock lasts as long as its file descriptor."""

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


# How soon the server notices that the host holding a lock is gone (no TCP answer): idle
# seconds before the first probe, seconds between probes, probes. The session (and its
# advisory lock) ends after about 60 + 3 * 10 seconds.
KEEPALIVE = (60, 10, 3)


class DatabaseLock:
    """``with DatabaseLock(url, "digest schedule (weekly)", purpose="digest schedule"):``
    — a PostgreSQL session advisory lock, or :class:`LockError` at once."""

    def __init__(self, target: DatabaseURL, name: str, *, purpose: str) -> None:
        self.target = target
        self.name = name
        self.purpose = purpose
        self._db: PostgresConnection | None = None

    @property
    def held(self) -> bool:
        return self._db is not None

    def __str__(self) -> str:
        return f"the lock {self.name!r} in {self.target}"

    def acquire(self) -> None:
        if self._db is not None:
            return
        from digest.store.postgres import connect  # psycopg: only with database: set

        db = connect(self.target, store="locks", what=f"the {self.purpose} lock")
        try:
            me = f"{self.purpose} (pid {os.getpid()} on {socket.gethostname()})"
            db.raw.execute("SELECT set_config('application_name', %s, false)", (me[:63],))
            # A lock's connection sits idle for hours: no server idle timeout may end it,
            # and a host that vanishes must not hold the lock for the TCP timeout (hours).
            for setting, value in (
                ("idle_session_timeout", 0),
                ("tcp_keepalives_idle", KEEPALIVE[0]),
                ("tcp_keepalives_interval", KEEPALIVE[1]),
                ("tcp_keepalives_count", KEEPALIVE[2]),
            ):
                db.raw.execute(
                    "SELECT set_config(name, %s, false) FROM pg_settings WHERE name = %s",
                    (str(value), setting),
                )  # absent settings (older servers) are skipped
            if not db.try_lock(self.name):
                holder = _database_holder(db, self.name)
                raise _refusal(self, holder, self.purpose)
        except BaseException:
            db.close()
            raise
        self._db = db

    def release(self) -> None:
        if self._db is None:
            return
        db, self._db = self._db, None
        try:
            db.unlock(self.name)
        except Exception as exc:  # the connection is gone, and the lock with it
            log.debug("releasing %s: %s", self, exc)
        finally:
            db.close()

    def verify(self) -> None:
        """Make sure the lock is still held; take it again if its connection was lost (a
        server restart, a network cut), or raise :class:`LockError` if someone else took it
        meanwhile."""
        if self._db is None:
            return
        try:
            row = self._db.raw.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid()"
            ).fetchone()
            if row and row[0]:
                return
        except Exception as exc:
            log.warning("%s: its connection was lost (%s); taking it again", self, exc)
        self.release()
        try:
            self.acquire()
        except StoreError as exc:
            raise LockError(f"{self} was lost and cannot be taken again: {exc}") from None

    def __enter__(self) -> DatabaseLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _database_holder(db: PostgresConnection, name: str) -> str:
    """Who holds the advisory lock ``name``: its application name and since when."""
    from digest.store.postgres import lock_key

    try:
        row = db.raw.execute(
            "SELECT a.application_name, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
            (lock_key(name),),
        ).fetchone()
    except Exception:
        return ""
    if not row or not row[0]:
        return ""
    since = utc_text(row[1], "seconds") if row[1] else ""
    return f"{row[0]}, since {since}" if since else str(row[0])


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        return ""


class StoreLock:
    """A store's own lock, shared or exclusive, refused at once when taken, and released
    when the holder dies: ``fcntl.flock`` on ``<file>.lock`` beside an SQLite store, or the
    named advisory lock of the database the store lives in (:class:`DatabaseLocks`), which
    every host sees. The send ledger holds it for ``digest send`` (shared: senders lease
    their rows) and ``digest db migrate`` (exclusive)."""

    def __init__(self, db: object, where: Target, name: str) -> None:
        self._db = db if isinstance(db, DatabaseLocks) else None
        self.where = where
        self.name = name
        self._fd: int | None = None
        self._in_db = False
        self._shared = False

    @property
    def held(self) -> bool:
        return self._fd is not None or self._in_db

    def acquire(self, *, shared: bool, busy: str) -> None:
        """Take the lock, or raise :class:`LockError` naming its holder and ``busy``."""
        if self.held:
            return
        if self._db is not None:
            if not self._db.try_lock(self.name, shared=shared):
                holder = self._db.holder(self.name) or "another process"
                raise LockError(f"{self.where} is held by {holder}: {busy}")
            self._in_db, self._shared = True, shared
            return
        assert isinstance(self.where, Path)
        lock_path = self.where.with_name(self.where.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LockError(
                f"{lock_path} is held by {holder or 'another process'}: {busy}"
            ) from None
        if not shared:  # shared holders are many: the file names the exclusive one only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{self.name} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._in_db and self._db is not None:
            self._in_db = False
            self._db.unlock(self.name, shared=self._shared)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
