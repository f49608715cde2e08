"""The audience at a glance: how it grew, where it came from, what each issue did.

Drawn from the stores only: the subscriber store (its status history, sources, chosen
sections) and the send ledger (each issue's delivery outcomes). What followed an issue is
every unsubscribe, bounce and complaint recorded between its start and the next issue's
start (or now, for the latest one). ``digest preview`` draws it as charts
(:mod:`digest.preview.dashboard`); ``digest subscribers stats`` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from digest.audience import records
from digest.audience.subscribers import STATUSES, SubscriberStore
from digest.delivery.ledger import STATES, Ledger
from digest.store.clock import parse_utc
from digest.store.database import Target

FOLLOWED = ("unsubscribed", "bounced", "complained")
MAX_POINTS = 120


def _moment(text: str) -> datetime:
    if not text.endswith(("Z", "z")) and "+" not in text[10:] and "-" not in text[10:]:
        text += "Z"  # a moment written without its zone is UTC here
    return parse_utc(text)


@dataclass
class IssueOutcome:
    issue_id: str
    started_at: str
    subject: str
    states: dict[str, int]
    followed: dict[str, int]  # unsubscribed, bounced, complained after it


@dataclass
class AudienceReport:
    generated_at: str
    counts: dict[str, int]  # by status, now
    sources: dict[str, dict[str, int]]  # source -> status -> n, now
    preferences: dict[str, int]  # section ('' = every section) -> active subscribers
    step: str  # day, week or month: the spacing of the timeline
    timeline: list[dict[str, Any]] = field(default_factory=list)  # {at, <status>: n} at the
    # end of the period that starts at ``at``
    arrivals: list[dict[str, Any]] = field(default_factory=list)  # {at, <source>: n}
    issues: list[IssueOutcome] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total"] = self.total
        return data


def _step(first: datetime, last: datetime) -> tuple[str, timedelta]:
    span = last - first
    if span <= timedelta(days=60):
        return "day", timedelta(days=1)
    if span <= timedelta(weeks=MAX_POINTS):
        return "week", timedelta(weeks=1)
    return "month", timedelta(days=30)


def audience_report(subscribers: Target, ledger: Target | None, *, now: datetime) -> AudienceReport:
    """Read both stores (each only if it exists: reading never creates one)."""
    if isinstance(subscribers, Path) and not subscribers.exists():
        return AudienceReport(records.iso(now), dict.fromkeys(STATUSES, 0), {}, {}, "day")
    with SubscriberStore(subscribers) as store:
        db = store.connection
        by_source_status = records.current_counts(db)
        preferences = records.preference_counts(db)
        events = [
            (sid, _moment(at), status, source)
            for sid, at, status, source in records.iter_events(db)
        ]
    counts = dict.fromkeys(STATUSES, 0)
    sources: dict[str, dict[str, int]] = {}
    for (source, status), number in sorted(by_source_status.items()):
        counts[status] = counts.get(status, 0) + number
        sources.setdefault(source or "unknown", dict.fromkeys(STATUSES, 0))[status] = number
    report = AudienceReport(
        generated_at=records.iso(now),
        counts=counts,
        sources=sources,
        preferences=dict(sorted(preferences.items(), key=lambda kv: (-kv[1], kv[0]))),
        step="day",
    )
    if events:
        _timeline(report, events, now)
    if ledger is not None and (not isinstance(ledger, Path) or ledger.exists()):
        _issues(report, ledger, events, now)
    return report


def _timeline(
    report: AudienceReport, events: list[tuple[int, datetime, str, str]], now: datetime
) -> None:
    first = min(e[1] for e in events)
    end = max(now, max(e[1] for e in events))
    report.step, step = _step(first, end)
    start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    boundaries: list[datetime] = []
    moment = start + step
    while moment < end + step:
        boundaries.append(moment)
        moment += step
    if len(boundaries) > MAX_POINTS:  # keep the last ones
        boundaries = boundaries[-MAX_POINTS:]
    state: dict[int, str] = {}
    seen: set[int] = set()
    index = 0
    source_names = sorted({e[3] or "unknown" for e in events})
    previous_boundary = boundaries[0] - step
    for boundary in boundaries:
        arrivals = dict.fromkeys(source_names, 0)
        while index < len(events) and events[index][1] < boundary:
            sid, at, status, source = events[index]
            if sid not in seen:
                seen.add(sid)
                if at >= previous_boundary:
                    arrivals[source or "unknown"] += 1
            if status in STATUSES:
                state[sid] = status
            else:  # forgotten, removed
                state.pop(sid, None)
            index += 1
        # Each point is labelled with the day (week, month) it covers and counts the
        # store as it was at that period's end.
        label = records.iso(boundary - step)
        point: dict[str, Any] = {"at": label}
        point.update(dict.fromkeys(STATUSES, 0))
        for status in state.values():
            point[status] += 1
        report.timeline.append(point)
        report.arrivals.append({"at": label, **arrivals})
        previous_boundary = boundary


def _issues(
    report: AudienceReport,
    path: Target,
    events: list[tuple[int, datetime, str, str]],
    now: datetime,
) -> None:
    with Ledger(path) as ledger:
        summary = ledger.summary()
    starts = [_moment(item["started_at"]) for item in summary]
    for position, item in enumerate(summary):
        start = starts[position]
        until = starts[position + 1] if position + 1 < len(starts) else max(now, start)
        last = position + 1 == len(starts)
        followed = dict.fromkeys(FOLLOWED, 0)
        for _, at, status, _ in events:
            if status in followed and start <= at and (at < until or last):
                followed[status] += 1
        states = {state: item["states"].get(state, 0) for state in STATES}
        report.issues.append(
            IssueOutcome(item["issue_id"], item["started_at"], item["subject"], states, followed)
        )
