"""Reading a file that must stay inside its folder: posts, intros, templates, issue folders.

One rule, one home: a path is resolved (every symbolic link followed) and refused when it
ends outside its folder, or is not a regular file (a FIFO would wait for a writer for
ever; a device or ``/proc`` file is not content). A link inside the folder is fine. So
``ln -s /proc/self/environ content/issues/2026-W47.md`` is reported, never read into an
email or the archive.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from digest.errors import ContentError

OUTSIDE = "a symbolic link to a file outside {folder}; not read"
NOT_REGULAR = "not a regular file; not read"


class OutsideFolder(ContentError):
    """A path that resolves outside its folder, or to something other than a file."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def is_inside(folder: Path | str, path: Path | str) -> bool:
    """Whether ``path``, every link followed, lies inside ``folder`` (resolved too)."""
    root = os.path.realpath(folder)
    target = os.path.realpath(path)
    try:
        return os.path.commonpath([root, target]) == root
    except ValueError:  # different drives, or one path relative
        return False


def resolve_inside(folder: Path | str, path: Path | str) -> Path:
    """``path`` resolved; :class:`OutsideFolder` when it leaves ``folder`` or is not a
    regular file. ``FileNotFoundError`` passes through for the caller to word."""
    if not is_inside(folder, path):
        raise OutsideFolder(path, OUTSIDE.format(folder=folder))
    target = Path(os.path.realpath(path))
    mode = target.stat().st_mode
    if not stat.S_ISREG(mode):
        raise OutsideFolder(path, NOT_REGULAR)
    return target


def read_inside(folder: Path | str, path: Path | str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of ``path``, which must resolve to a regular file inside ``folder``.

    The file is opened without following a last link (``O_NOFOLLOW`` on the resolved path)
    and checked again once open, so a swap after the check is refused too. With
    ``max_bytes``, a larger file is a :class:`ContentError`.
    """
    target = resolve_inside(folder, path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(target, flags)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OutsideFolder(path, NOT_REGULAR)
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise ContentError(f"{path}: larger than {max_bytes:,} bytes; not read")
    return data
