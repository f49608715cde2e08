"""An exclusive, non-blocking lock on a file, released by the kernel when the holder dies.

``fcntl.flock`` is used rather than "create the file if absent" because a process killed
with SIGKILL cannot clean up: the kernel drops a flock with the process, so a crashed
scheduler never leaves a stale lock behind. The file holds the holder's pid and purpose so
the error for the second process can say who has it.
"""

from __future__ import annotations

import fcntl
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from digest.errors import LockError
from digest.store.clock import utc_text


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
            raise LockError(
                f"{self.path} is held by {holder or 'another process'}; only one "
                f"{self.purpose} may run at a time (stop the other one, or wait for it)"
            ) from None
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


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        return ""
