"""Build one issue: load → select → compose → check → write ``out/<issue-id>/``.

``out/<issue-id>/`` holds ``email.html`` and ``email.txt`` (with the per-subscriber markers
of :data:`digest.email.message.PLACEHOLDERS` still in place: they are what sending fills in),
``email.eml`` (a complete proof copy addressed to the sender, markers filled with sample
values), and ``manifest.json``. The web version goes to the archive (:mod:`digest.email.archive`).

Everything written depends only on the config, the posts and the window: the .eml's Date
is the end of the issue's window and its Message-ID is derived from the content, so
building twice gives the same bytes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from digest.audience.links import archive_url
from digest.config import Config
from digest.content import carry, pipeline
from digest.content.intro import Intro, load_intro
from digest.content.memory import memory_of
from digest.content.select import Selection
from digest.email import archive
from digest.email.checks import CheckResult, all_passed, run_checks
from digest.email.compose import compose
from digest.email.message import ComposedEmail, sample_values, to_message
from digest.errors import ContentError, NothingToSend

logger = logging.getLogger(__name__)


class SkippedPosts(ContentError):
    """Posts could not be read and the build is strict (``--strict``, ``content.strict``)."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        super().__init__(f"{len(problems)} post(s) skipped, and the build is strict: {shown}")


@dataclass(frozen=True)
class BuildResult:
    selection: Selection
    composed: ComposedEmail
    checks: list[CheckResult]
    manifest: dict[str, Any]
    out_dir: Path
    written: tuple[Path, ...] = ()
    intro: Intro | None = None
    problems: tuple[str, ...] = ()  # posts that were skipped while loading

    @property
    def ok(self) -> bool:
        return all_passed(self.checks)


def issue_dir(config: Config, issue_id: str) -> Path:
    return config.path(config.out_dir) / issue_id


def build_issue(
    config: Config,
    *,
    now: datetime,
    week: str | None = None,
    since: date | None = None,
    until: date | None = None,
    write: bool = True,
    publish: bool = False,
    strict: bool | None = None,
) -> BuildResult:
    """Compose and check the issue for a window; with ``write``, write its files (the web
    version staged, not public); with ``publish`` as well, publish it in the archive.

    Every post that could not be read is logged as a warning ("skipped FILE: why") and
    listed in the manifest's ``skipped``; with ``strict`` (default ``content.strict``)
    it raises :class:`SkippedPosts` instead. Raises :class:`NothingToSend` when no post
    is selected for the window.
    """
    loaded = pipeline.load_and_select(config, now, week=week, since=since, until=until)
    skipped = tuple(str(p) for p in loaded.posts.problems)
    for problem in skipped:
        logger.warning("skipped %s", problem)
    if skipped and (config.content.strict if strict is None else strict):
        raise SkippedPosts(skipped)
    selection = loaded.selection
    if selection.count == 0:
        window = selection.window
        in_window = len(selection.in_window)
        why = (
            f"; {in_window} posts around it were left out (run `digest select --week "
            f"{selection.issue_id} --explain` to see why)"
            if in_window
            else ""
        )
        raise NothingToSend(
            f"{selection.issue_id} ({window.describe()}, {config.timezone}) has no posts to "
            f"send{why}; no email was built"
        )
    return build_from_selection(
        config,
        selection,
        now=now,
        write=write,
        problems=skipped,
        publish=publish,
    )


def build_from_selection(
    config: Config,
    selection: Selection,
    *,
    now: datetime,
    write: bool = True,
    problems: tuple[str, ...] = (),
    publish: bool = False,
) -> BuildResult:
    intro = load_intro(config, selection.issue_id)
    composed = compose(config, selection, now=now, intro=intro)
    checks = run_checks(composed)
    out = issue_dir(config, selection.issue_id)
    manifest = make_manifest(config, selection, composed, checks, intro)
    manifest["skipped"] = list(problems)
    manifest.update(carry.manifest_entry(selection))  # limits.carry_over
    written: list[Path] = []
    if write:
        sent_at = selection.window.end
        message = to_message(
            composed, to=config.sender.from_email, values=sample_values(config), date=sent_at
        )
        files = {
            "email.html": composed.html,
            "email.txt": composed.text,
            "email.eml": message.as_string(),
            "manifest.json": json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
        }
        for name, content in files.items():
            archive.write_text(out / name, content)
            written.append(out / name)
        web = compose(config, selection, now=now, intro=intro, web=True)
        folder = archive.stage_issue(config, selection, web)
        written.append(folder / "index.html")
        if publish:
            written.append(archive.publish_issue(config, selection.issue_id) / "index.html")
    return BuildResult(
        selection=selection,
        composed=composed,
        checks=checks,
        manifest=manifest,
        out_dir=out,
        written=tuple(written),
        intro=intro,
        problems=problems,
    )


def make_manifest(
    config: Config,
    selection: Selection,
    composed: ComposedEmail,
    checks: list[CheckResult],
    intro: Intro | None,
) -> dict[str, Any]:
    window = selection.window
    included = {slug for _, slug, _ in composed.posts}
    titles = {p.slug: p.title for p in selection.posts}
    return {
        "issue_id": composed.issue_id,
        "window": {
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "timezone": config.timezone,
        },
        "subject": composed.subject,
        "preheader": composed.preheader,
        "intro": str(intro.path.name) if intro else None,
        "sections": [
            {
                "name": name,
                "posts": [
                    {"id": slug, "title": titles.get(slug, slug), "url": url}
                    for section, slug, url in composed.posts
                    if section == name
                ],
            }
            for name in composed.sections
        ],
        "post_count": composed.post_count,
        "selected": selection.count,
        "trimmed_posts": sorted(p.slug for p in selection.posts if p.slug not in included),
        "trimmed": list(composed.trimmed),
        "memory": memory_of(p for p in selection.posts if p.slug in included),
        "sizes": {
            "sent_html": composed.sent_size,
            "html": composed.html_size,
            "text": composed.text_size,
            "budget": composed.size_budget,
        },
        "checks": [c.as_json() for c in checks],
        "ok": all_passed(checks),
        "warnings": list(composed.warnings),
        "archive_url": archive_url(config, composed.issue_id),
    }
