"""What the preview shows: the last good render of each issue, the latest problem, and who to tell.

:class:`PreviewState` knows nothing about how an issue is built. It receives a ``builder``
(``issue_id -> Render``) and calls it under one lock, so builds never overlap. A failed build
keeps the previous good render and records a :class:`Problem` beside it; the page shows both.

Rebuilds triggered by file changes run on one worker thread (:meth:`PreviewState.start`);
requests arriving while a rebuild runs are coalesced into one more rebuild. Listeners (the
server's event stream) are called with a :class:`BuildEvent` after every build.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from digest.errors import ConfigError, DigestError, NothingToSend, TemplateError

log = logging.getLogger(__name__)

ISSUE_ID = re.compile(r"^\d{4}-W\d{2}$")
SNIPPET_RADIUS = 3
MAX_SNIPPET_FILE = 1_000_000


@dataclass(frozen=True)
class Check:
    """One email quality check's outcome: ``status`` is ``pass``, ``warn`` or ``fail``."""

    name: str
    status: str
    message: str = ""


@dataclass(frozen=True)
class Render:
    """One composed issue, as the preview shows it. ``html`` is exactly what is sent."""

    issue_id: str
    subject: str
    preheader: str
    from_address: str
    html: str
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    sections: tuple[str, ...] = ()
    post_count: int = 0
    trimmed: tuple[str, ...] = ()

    @property
    def html_bytes(self) -> bytes:
        return self.html.encode("utf-8")


Builder = Callable[[str], Render]
"""Builds the issue with this id (``2026-W47``); raises DigestError for a user's mistake."""


@dataclass(frozen=True)
class Problem:
    """Why the latest build failed, with the file and line when the error names them."""

    kind: str  # template, config, content, empty, error, unexpected
    message: str
    path: str | None = None
    line: int | None = None
    details: tuple[str, ...] = ()
    snippet: tuple[tuple[int, str], ...] = ()

    @classmethod
    def from_exception(cls, exc: BaseException) -> Problem:
        path: str | None = None
        line: int | None = None
        details: tuple[str, ...] = ()
        if isinstance(exc, TemplateError):
            kind, path, line = "template", exc.path, exc.line
        elif isinstance(exc, ConfigError):
            kind, details = "config", tuple(exc.problems)
        elif isinstance(exc, NothingToSend):
            kind = "empty"
        elif isinstance(exc, DigestError):
            kind = "content" if exc.exit_code == 4 else "error"
        else:
            kind = "unexpected"
        message = str(exc) if isinstance(exc, DigestError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ConfigError):
            message = exc.message.split("\n", 1)[0]
        if path is None:
            # "config.yaml:12: not valid YAML: …" and similar "file:line: message" forms.
            found = re.match(r"^(?P<path>[^\n:]+):(?P<line>\d+): ", message)
            if found:
                path, line = found.group("path"), int(found.group("line"))
        return cls(kind, message, path, line, details, _snippet(path, line))

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "details": list(self.details),
            "snippet": [{"line": n, "text": t} for n, t in self.snippet],
        }


def _snippet(path: str | None, line: int | None) -> tuple[tuple[int, str], ...]:
    """The lines around ``line`` in ``path``, so the error panel can show them."""
    if not path or not line:
        return ()
    file = Path(path)
    try:
        if not file.is_file() or file.stat().st_size > MAX_SNIPPET_FILE:
            return ()
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    first = max(1, line - SNIPPET_RADIUS)
    last = min(len(lines), line + SNIPPET_RADIUS)
    return tuple((n, lines[n - 1]) for n in range(first, last + 1))


@dataclass(frozen=True)
class IssueView:
    """What the preview knows of one issue after a build (a snapshot; never changes)."""

    issue_id: str
    render: Render | None = None
    problem: Problem | None = None
    version: int = 0  # of the latest build, good or not
    build_seconds: float = 0.0
    render_version: int = 0  # of the build that made ``render``


@dataclass(frozen=True)
class BuildEvent:
    issue_id: str
    version: int
    ok: bool


Listener = Callable[[BuildEvent], None]


class PreviewState:
    """The issues the preview has built, rebuilt on demand or when files change."""

    def __init__(self, builder: Builder, *, clock: Callable[[], float] = time.perf_counter):
        self._builder = builder
        self._clock = clock
        self._build_lock = threading.Lock()
        self._views: dict[str, IssueView] = {}
        self._generation = 0
        self._listeners: list[Listener] = []
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self.changed: set[str] = set()

    # -- reading -----------------------------------------------------------------------------

    def known(self) -> list[str]:
        with self._build_lock:
            return sorted(self._views)

    def view(self, issue_id: str) -> IssueView:
        """The issue's view, building it first if the preview has not seen it yet."""
        if not ISSUE_ID.match(issue_id):
            raise ValueError(f"not an issue id: {issue_id!r}")
        with self._build_lock:
            existing = self._views.get(issue_id)
        if existing is not None:
            return existing
        return self.build(issue_id)

    def peek(self, issue_id: str) -> IssueView | None:
        with self._build_lock:
            return self._views.get(issue_id)

    # -- building ----------------------------------------------------------------------------

    def build(self, issue_id: str) -> IssueView:
        """Build one issue now; a failure keeps the last good render. Never raises."""
        with self._build_lock:
            previous = self._views.get(issue_id) or IssueView(issue_id)
            render, problem = previous.render, None
            started = self._clock()
            try:
                render = self._builder(issue_id)
            except Exception as exc:  # the server must outlive any build failure
                if not isinstance(exc, DigestError):
                    log.exception("building %s failed unexpectedly", issue_id)
                problem = Problem.from_exception(exc)
            self._generation += 1
            seconds = self._clock() - started
            good = previous.render_version if problem else self._generation
            view = IssueView(issue_id, render, problem, self._generation, seconds, good)
            self._views[issue_id] = view
            event = BuildEvent(issue_id, view.version, problem is None)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a preview listener failed")
        return view

    def rebuild_all(self) -> list[IssueView]:
        return [self.build(issue_id) for issue_id in self.known()]

    def add_listener(self, listener: Listener) -> None:
        with self._build_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._build_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # -- the rebuild worker ------------------------------------------------------------------

    def request_rebuild(self, changed: Iterable[str] = ()) -> None:
        """Ask the worker to rebuild every known issue (cheap; coalesced)."""
        self.changed.update(changed)
        self._wanted.set()

    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="preview-rebuild", daemon=True)
            self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wanted.set()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None

    def _work(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopping.is_set():
                return
            self._wanted.clear()
            changed = sorted(self.changed)
            self.changed.clear()
            if changed:
                log.info("changed: %s", ", ".join(changed[:5]))
            self.rebuild_all()
