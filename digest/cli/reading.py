"""Progress of reading the posts, on stderr, for the commands that read every post.

A cold ``digest check`` over a large blog parses every file and finishes every excerpt:
tens of seconds. On a terminal a bar shows each stage; otherwise (a log, a pipe) a line
every ``every`` seconds and the last one of each stage show the run is alive and how
fast it goes, as ``digest send`` does. ``--json`` turns it off.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click


class ReadProgress:
    """Called ``(stage, done, total)`` by :func:`digest.content.posts.load_posts`."""

    def __init__(
        self, tty: bool, every: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tty = tty
        self.every = every
        self.clock = clock
        self.bar: Any = None
        self.stage = ""
        self.done = self.total = 0
        self.shown = -1  # ``done`` as the last line showed it
        self.started = self.last_line = clock()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.done, self.shown, self.started = stage, 0, -1, self.clock()
            self.last_line = self.started
        if self.tty:
            if self.bar is None:
                self.bar = click.progressbar(
                    length=total, label=f"{stage} posts", show_eta=True, file=sys.stderr
                )
                self.bar.__enter__()
            self.bar.update(done - self.done)
            self.done, self.total = done, total
            return
        self.done, self.total = done, total
        moment = self.clock()
        if done >= total or moment - self.last_line >= self.every:
            self.last_line = moment
            self.line()

    def line(self) -> None:
        elapsed = self.clock() - self.started
        rate = f" ({self.done / elapsed:,.0f} files/s)" if elapsed > 0 and self.done else ""
        click.echo(f"{self.stage} posts: {self.done:,} of {self.total:,}{rate}", err=True)
        self.shown = self.done

    def close(self) -> None:
        """End the current stage: its bar, or its last line if not shown yet."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        elif self.stage and not self.tty and self.shown != self.done:
            self.line()


__all__ = ["ReadProgress"]
