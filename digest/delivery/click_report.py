"""What readers clicked: ``digest report``, the click dashboard and ``digest status``.

Drawn from the stores and the issues' manifests only: the click store (kept and filtered
counts per post and variant, per day), each issue's ``manifest.json`` (which post sat at
each place, in which section) and the audience report (:mod:`digest.delivery.reports`:
messages sent per issue, and the bounces and complaints that followed it). Rates are per
message sent: clicks per delivered message, and bounces and complaints against Gmail's
bulk-sender line of 0.3% spam complaints (warned about from 0.1%, where Google asks
senders to stay).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.config import Config
from digest.content.files import read_inside
from digest.content.memory import MANIFEST
from digest.delivery.clicks import ClickStore
from digest.delivery.reports import audience_report
from digest.errors import DigestError
from digest.store.database import is_postgres, locate

COMPLAINT_ALARM = 0.003  # Gmail's bulk-sender requirement: stay below 0.3% spam reports
COMPLAINT_WARN = 0.001  # and Google's advice: below 0.1%
OPENS_NOTE = (
    "opens are unreliable: Apple Mail Privacy Protection fetches every image as a message "
    "arrives, so most opens are machines'; kept opens are fetches not told apart as machine "
    "opens, not readers"
)


@dataclass
class PostClicks:
    place: int
    section: str
    post_id: str
    title: str
    url: str
    kept: int = 0
    filtered: int = 0


@dataclass
class IssueClicks:
    issue_id: str
    started_at: str = ""
    delivered: int = 0
    kept: int = 0
    filtered: int = 0
    bounced: int = 0
    complained: int = 0
    posts: list[PostClicks] = field(default_factory=list)
    sections: dict[str, int] = field(default_factory=dict)  # kept clicks per section
    days: list[dict[str, Any]] = field(default_factory=list)  # {day, kept, filtered}
    # The open pixel (analytics.opens): unreliable, most opens are machines' (docs/analytics.md)
    opens: int = 0
    machine_opens: int = 0

    @property
    def click_rate(self) -> float | None:
        return self.kept / self.delivered if self.delivered else None

    @property
    def bounce_rate(self) -> float | None:
        return self.bounced / self.delivered if self.delivered else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complained / self.delivered if self.delivered else None

    @property
    def complaint_level(self) -> str:
        """ok, warn (above 0.1%) or alarm (at or above Gmail's 0.3%)."""
        rate = self.complaint_rate or 0.0
        return "alarm" if rate >= COMPLAINT_ALARM else "warn" if rate > COMPLAINT_WARN else "ok"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("click_rate", "bounce_rate", "complaint_rate", "complaint_level"):
            data[name] = getattr(self, name)
        return data


@dataclass
class ClickReport:
    generated_at: str
    mode: str
    issues: list[IssueClicks]
    opens: bool = False  # analytics.opens
    complaint_alarm: float = COMPLAINT_ALARM
    complaint_warn: float = COMPLAINT_WARN

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "clicks": self.mode,
            "complaint_alarm": self.complaint_alarm,
            "complaint_warn": self.complaint_warn,
            "issues": [issue.as_dict() for issue in self.issues],
            "opens": self.opens,
            "opens_note": OPENS_NOTE if self.opens else None,
        }


def _manifest(config: Config, issue_id: str) -> dict[str, Any]:
    out = config.path(config.out_dir)
    try:
        found = json.loads(read_inside(out, out / issue_id / MANIFEST, max_bytes=4 << 20))
    except (OSError, ValueError, DigestError):
        return {}
    return found if isinstance(found, dict) and found.get("issue_id") == issue_id else {}


def _posts(manifest: dict[str, Any]) -> list[PostClicks]:
    places = [(s.get("name", ""), p) for s in manifest.get("sections", []) for p in s["posts"]]
    return [
        PostClicks(i, str(name), str(p.get("id", "")), str(p.get("title", "")), str(p["url"]))
        for i, (name, p) in enumerate(places)
    ]


def _exists(target: Any) -> bool:
    return is_postgres(target) or (isinstance(target, Path) and target.exists())


def click_report(config: Config, *, now: datetime, issue_id: str | None = None) -> ClickReport:
    """Every issue's clicks and outcomes (or one issue's), oldest first. Reading creates
    no store."""
    issues: dict[str, IssueClicks] = {}
    ledger = locate(config, config.ledger.database)
    audience = audience_report(
        locate(config, config.subscribers.database), ledger if _exists(ledger) else None, now=now
    )
    for outcome in audience.issues:
        issues[outcome.issue_id] = IssueClicks(
            outcome.issue_id,
            outcome.started_at,
            delivered=outcome.states.get("sent", 0),
            bounced=outcome.followed.get("bounced", 0),
            complained=outcome.followed.get("complained", 0),
        )
    clicks = locate(config, config.analytics.database)
    if _exists(clicks):
        with ClickStore(clicks) as store:
            links, days = store.links(issue_id), store.days(issue_id)
            opens = store.opens(issue_id)
    else:
        links, days, opens = [], [], []
    for name, _variant, kept, machine in opens:
        issue = issues.setdefault(name, IssueClicks(name))
        issue.opens += kept
        issue.machine_opens += machine
    for count in links:
        issues.setdefault(count.issue_id, IssueClicks(count.issue_id))
    for name, issue in issues.items():
        issue.posts = _posts(_manifest(config, name))
    for count in links:
        issue = issues[count.issue_id]
        issue.kept += count.kept
        issue.filtered += count.filtered
        while len(issue.posts) <= count.post:  # a manifest that is gone or was rebuilt
            issue.posts.append(PostClicks(len(issue.posts), "", "", "", ""))
        issue.posts[count.post].kept += count.kept
        issue.posts[count.post].filtered += count.filtered
    for name, day, kept, filtered in days:
        issues[name].days.append({"day": day, "kept": kept, "filtered": filtered})
    for issue in issues.values():
        for post in issue.posts:
            issue.sections[post.section] = issue.sections.get(post.section, 0) + post.kept
    chosen = [i for i in issues.values() if issue_id is None or i.issue_id == issue_id]
    chosen.sort(key=lambda i: (i.started_at or "~", i.issue_id))
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return ClickReport(stamp, config.analytics.clicks, chosen, opens=config.analytics.opens)


def complaint_warning(config: Config, issue_id: str, *, now: datetime) -> str | None:
    """A line for ``digest status`` when the issue's complaints passed 0.1% of its sent
    messages (None below)."""
    for issue in click_report(config, now=now, issue_id=issue_id).issues:
        rate = issue.complaint_rate
        if rate is not None and rate > COMPLAINT_WARN:
            return (
                f"{issue.complained} complaints after {issue.delivered} sent ({rate * 100:.2f}%): "
                "above the 0.10% Google asks senders to stay under, and Gmail refuses bulk "
                "mail from 0.30%"
            )
    return None
