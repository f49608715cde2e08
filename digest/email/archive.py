"""The web archive: ``out/archive/`` with one page per published issue, an index and an
Atom feed.

Building an issue stages its web version (the email without subscriber links) in
``out/<issue-id>/web/``; it is published, copied to ``archive/<issue-id>/index.html``
(where the email's "view in browser" link points), when the issue is sent, or when
``digest build --publish`` names it. An issue that was only built is never public. The
index and the feed are rebuilt from every published issue's ``issue.json`` each time; the
feed carries each issue's content.
"""

from __future__ import annotations

import json
from datetime import timezone
from pathlib import Path
from typing import Any

from digest.audience.links import archive_url
from digest.config import Config
from digest.content.select import Selection
from digest.email.compose import date_range, issue_title
from digest.email.message import ComposedEmail
from digest.email.templating import environment, render_template
from digest.errors import ContentError
from digest.store.atomic import write_atomic

INDEX_TEMPLATE = "archive_index.html.j2"
FEED_TEMPLATE = "archive_feed.xml.j2"


def archive_dir(config: Config) -> Path:
    return config.path(config.out_dir) / "archive"


def write_text(path: Path, text: str) -> None:
    """Write through a temporary file, so a reader never sees half a file."""
    write_atomic(path, text)


def issue_record(config: Config, selection: Selection, web: ComposedEmail) -> dict[str, Any]:
    return {
        "issue_id": selection.issue_id,
        "title": issue_title(selection),
        "date_range": date_range(selection),
        "subject": web.subject,
        "preheader": web.preheader,
        "post_count": web.post_count,
        "url": archive_url(config, selection.issue_id),
        "updated": selection.window.end.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
    }


FEED_ENTRIES = 20  # the feed carries the latest issues in full; the index lists them all


def staged_dir(config: Config, issue_id: str) -> Path:
    return config.path(config.out_dir) / issue_id / "web"


def stage_issue(config: Config, selection: Selection, web: ComposedEmail) -> Path:
    """Write one issue's web page and record beside its build, not yet public."""
    folder = staged_dir(config, selection.issue_id)
    write_text(folder / "index.html", web.html)
    record = issue_record(config, selection, web)
    write_text(folder / "issue.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return folder


def publish_issue(config: Config, issue_id: str) -> Path:
    """Make a staged issue public: copy it into the archive, rebuild the index and feed."""
    staged = staged_dir(config, issue_id)
    if not (staged / "index.html").is_file() or not (staged / "issue.json").is_file():
        raise ContentError(
            f"{staged}: no built web version of {issue_id} to publish; build it first "
            f"(digest build --week {issue_id})"
        )
    folder = archive_dir(config) / issue_id
    for name in ("index.html", "issue.json"):
        write_text(folder / name, (staged / name).read_text(encoding="utf-8"))
    rebuild_index(config)
    return folder


def write_issue(config: Config, selection: Selection, web: ComposedEmail) -> Path:
    """Stage and publish one issue at once."""
    stage_issue(config, selection, web)
    return publish_issue(config, selection.issue_id)


def read_issues(config: Config) -> list[dict[str, Any]]:
    """Every issue's record, newest first."""
    records = []
    root = archive_dir(config)
    if not root.is_dir():
        return []
    for path in sorted(root.glob("*/issue.json")):
        if not config.owns_issue(path.parent.name):
            continue  # another newsletter's issue: it has its own index
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise ContentError(
                f"{path}: cannot read this archived issue ({exc}); delete its folder and "
                "build the issue again"
            ) from None
    records.sort(key=lambda r: (r.get("updated", ""), r.get("issue_id", "")), reverse=True)
    return records


def rebuild_index(config: Config) -> None:
    """The index and feed of this newsletter's issues: ``archive/`` for the first
    newsletter, ``archive/<name>/`` for each other one."""
    issues = read_issues(config)
    root = archive_dir(config)
    for issue in issues[:FEED_ENTRIES]:
        page = root / str(issue.get("issue_id", "")) / "index.html"
        try:
            issue["content"] = page.read_text(encoding="utf-8")
        except OSError:
            issue["content"] = ""
    env = environment(config)
    below = "" if config.is_default_newsletter else f"{config.newsletter_name}/"
    context = {
        "lang": config.site.language,
        "site": {"name": config.site.name, "url": config.site.base_url + "/"},
        "issues": issues,
        "archive_url": archive_url(config) + below,
        "feed_url": archive_url(config) + below + "feed.xml",
        "updated": issues[0]["updated"] if issues else "1970-01-01T00:00:00Z",
        "author": config.sender.from_name,
        "feed_entries": FEED_ENTRIES,
    }
    if below:
        root = root / below
    write_text(root / "index.html", render_template(env, INDEX_TEMPLATE, context))
    write_text(root / "feed.xml", render_template(env, FEED_TEMPLATE, context))
