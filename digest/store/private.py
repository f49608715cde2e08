"""Files and folders that hold addresses or working links are private to their owner.

Subscriber and ledger stores, key files, outbox messages (each holds working unsubscribe
and preference links), send reports and exports are created with mode 0600, and the
folders digest creates for them with 0700, whatever the umask. A file digest owns that is
found readable by others when it is opened (a store made by an older digest) is made 0600.
Everything that writes such a file goes through the functions here.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from digest.store.atomic import write_atomic

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def private_folder(path: Path) -> Path:
    """Create ``path`` and its missing parents as 0700 folders (existing ones are left as
    they are: they may be the operator's own); returns ``path``."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=PRIVATE_FOLDER)
            os.chmod(folder, PRIVATE_FOLDER)  # mkdir's mode is narrowed by the umask only
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)  # raises the clear error (a file in the way)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """``os.open`` for a private file: created 0600, and made 0600 if it was not."""
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, fsynced, renamed), 0600."""
    private_folder(path.parent)
    write_atomic(path, data, fsync=True, opener=open_private)


def make_private(path: Path) -> None:
    """Make an existing file digest owns 0600 if others may read it (nothing if absent)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, PRIVATE_FILE)


def create_private(path: Path) -> None:
    """Create ``path`` empty and 0600 unless it exists (then make it 0600): for files a
    library creates itself, such as SQLite's, which would follow the umask."""
    private_folder(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        make_private(path)
        return
    os.close(fd)
