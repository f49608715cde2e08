"""Writing a file whole: a reader sees the old file or the new one, never half of one.

Every file digest rewrites in place (archive pages, the source states, the link-check
cache, a config written by ``digest init``) goes through :func:`write_atomic`; files that
hold addresses or working links go through :func:`digest.store.private.write_private`,
which is built on the same temporary-file-and-rename and also keeps them 0600.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def temporary_for(path: Path) -> Path:
    """The temporary file beside ``path`` that one writer (process and thread) fills."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomic(
    path: Path,
    data: str | bytes,
    *,
    fsync: bool = False,
    opener: Callable[[Path], int] | None = None,
) -> None:
    """Write ``data`` (text as UTF-8, line ends as given) to ``path`` through a temporary
    file beside it, renamed over it; the folder is created if missing.

    ``fsync``: the bytes reach the disk before the rename (for files that must survive a
    power loss). ``opener``: how the temporary file is opened (a file descriptor for
    writing), e.g. as a private file. On any failure the temporary file is removed and
    ``path`` is left as it was.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_for(path)
    try:
        fd = (
            opener(temporary)
            if opener is not None
            else os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        )
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


__all__ = ["temporary_for", "write_atomic"]
