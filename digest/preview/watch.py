"""Watch the files an issue is made from, and ask for a rebuild when one changes.

The folders to watch come from a callable, because they come from config.yaml and a change
to config.yaml can move them: after a change to one of the watched single files (the config)
the watcher asks again and restarts on the new set.

A single file is watched through its folder, not through its own inode, because editors
often save by writing a new file and renaming it over the old one. Only changes to that file
(or inside the watched folders) count.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, DefaultFilter, watch

log = logging.getLogger(__name__)

# watchfiles yields a batch once no new change has arrived for STEP_MS (or after DEBOUNCE_MS
# of continuous changes), so one save becomes one rebuild a few tens of milliseconds later.
STEP_MS = 30
DEBOUNCE_MS = 400


@dataclass(frozen=True)
class WatchSet:
    """Folders watched recursively, and single files watched through their folder."""

    folders: tuple[Path, ...]
    files: tuple[Path, ...] = ()

    def roots(self) -> list[Path]:
        roots = {p.resolve() for p in self.folders if p.is_dir()}
        roots |= {f.resolve().parent for f in self.files if f.resolve().parent.is_dir()}
        # Drop a root that lies inside another one: the outer watch already covers it.
        return sorted(r for r in roots if not any(o != r and o in r.parents for o in roots))

    def wants(self, path: str) -> bool:
        target = Path(path)
        if any(target == f.resolve() for f in self.files):
            return True
        return any(target == d.resolve() or d.resolve() in target.parents for d in self.folders)

    def is_single_file(self, path: str) -> bool:
        return any(Path(path) == f.resolve() for f in self.files)


class _Filter(DefaultFilter):
    def __init__(self, watch_set: WatchSet) -> None:
        super().__init__()
        self.watch_set = watch_set

    def __call__(self, change: Change, path: str) -> bool:
        return super().__call__(change, path) and self.watch_set.wants(path)


class Watcher:
    """A thread that calls ``on_change(paths)`` for each batch of relevant changes."""

    def __init__(
        self,
        watch_set: Callable[[], WatchSet],
        on_change: Callable[[Sequence[str]], None],
        *,
        force_polling: bool | None = None,
    ) -> None:
        self._watch_set = watch_set
        self._on_change = on_change
        self._force_polling = force_polling
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.watching: WatchSet | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="preview-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _current(self) -> WatchSet:
        try:
            return self._watch_set()
        except Exception as exc:  # e.g. config.yaml is broken: keep watching what we had
            log.debug("cannot work out what to watch: %s", exc)
            return self.watching or WatchSet(())

    def _run(self) -> None:
        while not self._stop.is_set():
            current = self._current()
            self.watching = current
            roots = current.roots()
            if not roots:
                self._stop.wait(0.5)
                continue
            restart = False
            for changes in watch(
                *roots,
                watch_filter=_Filter(current),
                step=STEP_MS,
                debounce=DEBOUNCE_MS,
                stop_event=self._stop,
                raise_interrupt=False,
                force_polling=self._force_polling,
                rust_timeout=500,
            ):
                paths = sorted({path for _, path in changes})
                try:
                    self._on_change(paths)
                except Exception:
                    log.exception("handling a file change failed")
                if any(current.is_single_file(p) for p in paths) and self._current() != current:
                    restart = True
                    break
            if not restart:
                return
