"""A read-only command's output, replayed while nothing it read has changed.

``digest select`` over a large site spends most of a warm run starting up: importing the
config schema, validating the config, opening the post cache. Run again with nothing it
depends on changed, its output is the same, so it is printed from here without importing
any of that.

An answer is stored with what it depends on, and every part is checked before it is
replayed:

* the key: the command and its arguments (``--newsletter`` included), the working folder,
  whether stdout and stderr are terminals (and the terminal's width), the config file's
  bytes, the ``DIGEST_*``, ``TZ`` and ``COLUMNS`` variables and every variable the config
  names as ``${VAR}``, and digest's own version and source files;
* what the full run read, recorded by it: every file and folder below each Markdown folder
  it loaded (path, size, modification time, symlink target) and the earlier issues'
  manifests in the output folder (cross-issue memory), walked again on every replay;
* the clock: an answer is kept only until its ``valid_until`` (a future post in the window
  becomes current then; a window that depends on today's date is kept until the next
  quarter hour, the finest step a time zone's midnight moves by).

A run that reads a feed is never stored (a feed can change without anything here
changing), nor one that ended in an error, nor one run with ``-v`` or ``--no-cache``.

Answers live in ``$XDG_CACHE_HOME/digest/answers`` (``~/.cache/...``), one small JSON file
per config file; a missing, unreadable or stale file just means the command runs in full.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

KEEP = 16  # answers kept per config file
# As digest.config.find_config chooses the file (not imported here: it loads the schema);
# tests/test_replay.py keeps the two the same.
CONFIG_ENV = "DIGEST_CONFIG"
DEFAULT_CONFIG_NAME = "config.yaml"
MANIFEST = "manifest.json"  # digest.content.memory.MANIFEST; the test keeps them the same
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_PACKAGE = Path(__file__).resolve().parent.parent
_ALWAYS = ("TZ", "COLUMNS")


def _folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "digest" / "answers"


def _store_for(config: Path) -> Path:
    return _folder() / (hashlib.sha256(str(config).encode()).hexdigest()[:24] + ".json")


def tree_fingerprint(folder: Path) -> str:
    """Every entry below ``folder`` (not following folder symlinks), hashed: name, kind,
    size, modification time, and a symlink's target with its target's size and time.

    Entries are taken in the order the folder lists them: a folder that lists them in
    another order only costs a full run, never a wrong answer."""
    digest = hashlib.sha256()
    stack = [str(folder)]
    while stack:
        current = stack.pop()
        seen: list[tuple[object, ...]] = [(current,)]
        try:
            entries = os.scandir(current)
        except OSError as exc:
            digest.update(f"!{current}:{exc.errno}\n".encode())
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_symlink():
                        target: tuple[int, ...] = ()
                        try:
                            stat = os.stat(entry.path)
                            target = (stat.st_size, stat.st_mtime_ns, stat.st_mode)
                        except OSError:
                            pass
                        seen.append(("l", entry.name, os.readlink(entry.path), *target))
                    elif entry.is_dir(follow_symlinks=False):
                        seen.append(("d", entry.name))
                        stack.append(entry.path)
                    else:
                        stat = entry.stat(follow_symlinks=False)
                        seen.append((entry.name, stat.st_size, stat.st_mtime_ns))
                except OSError as exc:
                    seen.append(("!", entry.name, exc.errno))
        digest.update(repr(seen).encode())
    return digest.hexdigest()


def manifests_fingerprint(out_dir: Path) -> str:
    """The earlier issues' manifests below ``out_dir`` (``*/manifest.json``): which there
    are, and each one's size and modification time."""
    seen: list[tuple[object, ...]] = []
    try:
        with os.scandir(out_dir) as entries:
            folders = sorted(e.path for e in entries if e.is_dir())
    except OSError as exc:
        return f"!{exc.errno}"
    for folder in folders:
        try:
            stat = os.stat(os.path.join(folder, MANIFEST))
        except OSError:
            continue
        seen.append((folder, stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(repr(seen).encode()).hexdigest()


@dataclass(frozen=True)
class Reads:
    """What a full run read, beyond its key: Markdown folders and an output folder."""

    folders: tuple[Path, ...]
    out_dir: Path

    def fingerprint(self) -> dict[str, str]:
        found = {f"folder:{folder}": tree_fingerprint(folder) for folder in self.folders}
        found[f"manifests:{self.out_dir}"] = manifests_fingerprint(self.out_dir)
        return found

    @staticmethod
    def still(recorded: Mapping[str, str]) -> bool:
        """Whether everything recorded reads the same now."""
        for name, value in recorded.items():
            kind, _, where = name.partition(":")
            if kind == "folder":
                now = tree_fingerprint(Path(where))
            elif kind == "manifests":
                now = manifests_fingerprint(Path(where))
            else:
                return False
            if now != value:
                return False
        return True


def _code_fingerprint() -> str:
    from digest import __version__

    digest = hashlib.sha256(__version__.encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Request:
    """One invocation: which config, and the key of everything but what it read and the
    clock."""

    config: Path
    key: str

    @classmethod
    def of(cls, config_path: str | None, argv: Sequence[object]) -> Request | None:
        """None when the config file cannot be read (the full run reports why)."""
        chosen = Path(config_path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME)
        try:
            config = chosen.resolve()
            text = config.read_bytes()
        except OSError:
            return None
        names = set(_REFERENCE.findall(text.decode("utf-8", "replace")))
        environment = {
            name: value
            for name, value in os.environ.items()
            if name.startswith("DIGEST_") or name in names or name in _ALWAYS
        }
        terminals = [sys.stdout.isatty(), sys.stderr.isatty()]
        material = json.dumps(
            {
                "argv": [str(a) for a in argv],
                "cwd": os.getcwd(),
                "tty": terminals,
                "width": shutil.get_terminal_size().columns if any(terminals) else None,
                "config": hashlib.sha256(text).hexdigest(),
                "env": sorted(environment.items()),
                "code": _code_fingerprint(),
            }
        )
        return cls(config, hashlib.sha256(material.encode()).hexdigest())


def _load(config: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_store_for(config).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def replay(request: Request, *, now: float | None = None) -> bool:
    """Print the stored answer of ``request`` if it still holds; False otherwise."""
    answer = _load(request.config).get(request.key)
    if not isinstance(answer, dict):
        return False
    moment = time.time() if now is None else now
    until = answer.get("valid_until")
    if isinstance(until, (int, float)) and moment >= until:
        return False
    reads = answer.get("reads")
    if not isinstance(reads, dict) or not reads or not Reads.still(reads):
        return False
    out, err = answer.get("stdout"), answer.get("stderr")
    if not isinstance(out, str) or not isinstance(err, str):
        return False
    sys.stdout.write(out)
    sys.stdout.flush()
    if err:
        sys.stderr.write(err)
        sys.stderr.flush()
    return True


class _Tee(io.TextIOBase):
    """Writes to a stream and keeps a copy (isatty() is the stream's, so click colours the
    copy exactly as it colours what the user sees)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "errors", None) or "strict"


@contextmanager
def recording() -> Iterator[tuple[_Tee, _Tee]]:
    """Tee stdout and stderr (log lines included) while the command runs."""
    out, err = _Tee(sys.stdout), _Tee(sys.stderr)
    saved = sys.stdout, sys.stderr
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and h.stream is saved[1]
    ]
    sys.stdout, sys.stderr = out, err
    for handler in handlers:
        handler.setStream(err)
    try:
        yield out, err
    finally:
        sys.stdout, sys.stderr = saved
        for handler in handlers:
            handler.setStream(saved[1])


def remember(
    request: Request,
    *,
    reads: Mapping[str, str],
    stdout: str,
    stderr: str,
    valid_until: float | None,
) -> None:
    """Store an answer (best effort: a cache that cannot be written is skipped)."""
    store = _store_for(request.config)
    answers = _load(request.config)
    answers.pop(request.key, None)
    answers[request.key] = {
        "reads": dict(reads),
        "stdout": stdout,
        "stderr": stderr,
        "valid_until": valid_until,
    }
    while len(answers) > KEEP:
        answers.pop(next(iter(answers)))
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        temporary = store.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(answers), "utf-8")
        os.replace(temporary, store)
    except OSError:
        pass
