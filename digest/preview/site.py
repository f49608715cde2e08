"""The preview of a real site: a builder made from ``digest build``, and what to watch.

Everything is read again on each build (config.yaml included), so a change to any of it
shows up in the page; a broken config.yaml becomes a problem in the page, not a crash.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.config import Config, load_config
from digest.errors import SendError
from digest.preview.server import WeekChoice
from digest.preview.state import ISSUE_ID, Check, Render
from digest.preview.watch import WatchSet
from digest.resources import BUILTIN_TEMPLATES

log = logging.getLogger(__name__)

WEEKS_IN_PICKER = 16


def _check_from(result: Any) -> Check:
    """One ``checks.CheckResult`` as the page shows it: pass, warn or fail, and why."""
    ok = bool(getattr(result, "ok", True))
    level = str(getattr(result, "level", "error"))
    status = "pass" if ok else ("warn" if level == "warning" else "fail")
    parts = [str(getattr(result, "summary", "") or "")]
    if not ok:
        problems = [str(p) for p in getattr(result, "problems", ())]
        parts += problems[:5] + ([f"and {len(problems) - 5} more"] if len(problems) > 5 else [])
        fix = str(getattr(result, "fix", "") or "")
        if fix:
            parts.append(f"fix: {fix}")
    return Check(str(getattr(result, "name", "check")), status, "; ".join(p for p in parts if p))


def _skipped(result: Any) -> tuple[Check, ...]:
    """Posts that could not be read, as the first line of the preview's checks."""
    problems = [str(p) for p in getattr(result, "problems", ())]
    if not problems:
        return ()
    return (Check("skipped posts", "fail", "; ".join(problems)),)


def render_from_build(result: Any) -> Render:
    """The preview's view of a ``BuildResult``: the composed email exactly as built."""
    composed = result.composed
    raw_checks: Iterable[Any] = getattr(result, "checks", None) or ()
    return Render(
        issue_id=composed.issue_id,
        subject=composed.subject,
        preheader=composed.preheader,
        from_address=composed.from_address,
        html=composed.html,
        text=composed.text,
        headers=dict(composed.headers),
        checks=(*_skipped(result), *(_check_from(c) for c in raw_checks)),
        sections=tuple(composed.sections),
        post_count=int(composed.post_count),
        trimmed=tuple(composed.trimmed),
    )


class SitePreview:
    """Builds, lists and watches one site, reading its config file afresh each time."""

    def __init__(self, config_path: Path, now: Callable[[], datetime]) -> None:
        self.config_path = config_path
        self.now = now
        self._weeks: list[WeekChoice] | None = None
        self._lock = threading.Lock()
        self.last_config: Config | None = None

    def config(self) -> Config:
        config = load_config(self.config_path)
        self.last_config = config
        return config

    # The builder handed to the preview.
    def __call__(self, issue_id: str) -> Render:
        from digest.email.build import build_issue

        with self._lock:
            self._weeks = None  # something changed: list the weeks again when asked
        config = self.config()
        result = build_issue(config, now=self.now(), week=issue_id, write=False)
        return render_from_build(result)

    def watch_set(self) -> WatchSet:
        config = self.config()
        folders = [s.file(config.root) for s in config.source_list if s.path is not None]
        folders += [config.path(config.content.issues_dir), BUILTIN_TEMPLATES]
        if config.email.templates_dir is not None:
            folders.append(config.path(config.email.templates_dir))
        source = config.source or self.config_path.resolve()
        feed_files = [
            s.file(config.root) for s in config.source_list if s.is_feed and not s.is_remote
        ]
        return WatchSet(tuple(folders), (source, *feed_files))

    def weeks(self) -> Sequence[WeekChoice]:
        with self._lock:
            if self._weeks is None:
                self._weeks = self._list_weeks()
            return list(self._weeks)

    def _list_weeks(self) -> list[WeekChoice]:
        from digest.content import pipeline
        from digest.content.select import window_for_week_containing

        config = self.config()
        now = self.now()
        counts: dict[str, int] = {}
        for post in pipeline.load(config).posts:
            if post.draft or post.date > now:
                continue
            week = window_for_week_containing(post.date.date(), config.tz, config.week_start)
            counts[week.issue_id] = counts.get(week.issue_id, 0) + 1
        recent = sorted(counts, reverse=True)[:WEEKS_IN_PICKER]
        choices = [
            WeekChoice(i, f"{i} · {counts[i]} post{'s' if counts[i] != 1 else ''}") for i in recent
        ]
        choices += [WeekChoice(i, i, archived=True) for i in self._archived(config)]
        return choices

    def _archived(self, config: Config) -> list[str]:
        folder = archive_folder(config)
        if not folder.is_dir():
            return []
        found = (d.name for d in folder.iterdir() if ISSUE_ID.match(d.name))
        return sorted((i for i in found if (folder / i / ARCHIVE_PAGE).is_file()), reverse=True)

    def archive(self, issue_id: str) -> bytes | None:
        """The web page of an issue in the archive (out/archive/<issue>/index.html), or None."""
        if not ISSUE_ID.match(issue_id) or self.last_config is None:
            return None
        page = archive_folder(self.last_config) / issue_id / ARCHIVE_PAGE
        return page.read_bytes() if page.is_file() else None


ARCHIVE_PAGE = "index.html"


def archive_folder(config: Config) -> Path:
    """Where `digest build` keeps the web archive (digest.email.archive.archive_dir)."""
    return config.path(config.out_dir) / "archive"


def send_test_for(site: SitePreview) -> Callable[[str, str], str] | None:
    """The preview's "send test" action, when a real provider is configured and sending exists."""
    config = site.last_config
    if config is None or config.provider.name == "outbox":
        return None

    def action(issue_id: str, to: str) -> str:
        from digest.delivery.send import send_test  # the preview starts without the send stack

        result = send_test(site.config(), to, now=site.now(), week=issue_id)
        if result.state != "sent":
            raise SendError(f"the test to {to} was not sent: {result.reason or result.state}")
        message_id = result.provider_message_id
        ident = f" (message {message_id})" if message_id else ""
        return f"sent a [TEST] of {issue_id} to {to}{ident}"

    return action


def changed_names(paths: Sequence[str]) -> str:
    names = [Path(p).name for p in paths]
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
