"""store/atomic.py: a file is written whole or not at all, and no temporary file stays."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from digest.store.atomic import temporary_for, write_atomic
from digest.store.private import write_private


def test_a_file_is_replaced_whole_and_no_temporary_file_stays(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "page.html"
    write_atomic(path, "caf\u00e9\r\nline\n")
    assert path.read_bytes() == "caf\u00e9\r\nline\n".encode()  # line ends as given
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["page.html"]


def test_a_failed_write_leaves_the_old_file_and_removes_the_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "states" / "state.json"
    path.parent.mkdir()
    path.write_text("old")

    def full_disk(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert not temporary_for(path).exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_private_files_are_written_through_it_and_stay_0600(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "send.json"
    write_private(path, b"{}")
    assert path.read_bytes() == b"{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
