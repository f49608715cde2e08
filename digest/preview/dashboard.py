"""The audience dashboard of ``digest preview`` (``/dashboard``): charts drawn on the server
as inline SVG, so the page needs no script and no network.

Every chart carries its numbers twice: in the drawing (``data-*`` attributes on each bar,
line and point, which the browser tests compare with the stores) and in a table under it
for screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from digest.config import Config
from digest.delivery.reports import FOLLOWED, AudienceReport, audience_report
from digest.store.database import locate

STATUS_COLOURS = {
    "active": "#1a7f37",
    "pending": "#9a6700",
    "unsubscribed": "#57606a",
    "bounced": "#cf222e",
    "complained": "#8250df",
}
DELIVERY_COLOURS = {
    "sent": "#1a7f37",
    "skipped": "#8c959f",
    "pending": "#9a6700",
    "sending": "#bf8700",
    "failed-retryable": "#fb8f44",
    "failed-permanent": "#cf222e",
}
FOLLOWED_COLOURS = {"unsubscribed": "#57606a", "bounced": "#cf222e", "complained": "#8250df"}
PALETTE = ("#0969da", "#1a7f37", "#bf3989", "#9a6700", "#8250df", "#cf222e", "#1b7c83", "#57606a")

WIDTH = 720
HEIGHT = 240
PAD_LEFT = 48
PAD_BOTTOM = 28
PAD_TOP = 12
PAD_RIGHT = 36
PLOT = WIDTH - PAD_LEFT - PAD_RIGHT
TICK_CHAR = 7.0  # px: wider than a digit, a dash or a letter of the 11px tick font
TICK_GAP = 8.0  # px between two tick labels at least


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _scale(maximum: int) -> int:
    """A round top for an axis."""
    if maximum <= 5:
        return max(maximum + maximum % 2, 2)  # even, so the middle tick is a whole number
    magnitude: int = 10 ** (len(str(maximum)) - 1)
    for step in (1, 2, 5, 10):
        top = step * magnitude
        if top >= maximum:
            return top
    return maximum


def _axes(top: int, labels: Sequence[str], height: int = HEIGHT) -> list[str]:
    inner = height - PAD_TOP - PAD_BOTTOM
    parts = [
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{height - PAD_BOTTOM}" '
        'stroke="#d0d7de"/>',
        f'<line x1="{PAD_LEFT}" y1="{height - PAD_BOTTOM}" x2="{WIDTH - PAD_RIGHT}" '
        f'y2="{height - PAD_BOTTOM}" stroke="#d0d7de"/>',
    ]
    for fraction in (0, 0.5, 1):
        y = PAD_TOP + inner * (1 - fraction)
        parts.append(
            f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{round(top * fraction)}</text>"
        )
    slot = PLOT / max(len(labels), 1)
    for i in shown_ticks(labels, slot):
        x = PAD_LEFT + slot * (i + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" class="tick">'
            f"{_e(labels[i])}</text>"
        )
    return parts


def tick_width(label: str) -> float:
    """The width a tick label may take: wider than any character of the tick's 11px font."""
    return len(label) * TICK_CHAR + TICK_GAP


def shown_ticks(labels: Sequence[str], slot: float) -> list[int]:
    """Which labels of the x axis to draw, ``slot`` apart: every ``every``-th, so that no
    two drawn labels overlap whatever their length, and the last one (in place of the one
    before it when both do not fit)."""
    if not labels:
        return []
    widest = max(tick_width(label) for label in labels)
    every = max(1, math.ceil(widest / slot))
    shown = list(range(0, len(labels), every))
    last = len(labels) - 1
    if shown[-1] != last:
        if last - shown[-1] >= every:
            shown.append(last)
        elif len(shown) > 1:
            shown[-1] = last
    return shown


def _svg(name: str, title: str, body: list[str], height: int = HEIGHT) -> str:
    return (
        f'<svg role="img" aria-label="{_e(title)}" data-chart="{_e(name)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMidYMid meet">'
        f"<title>{_e(title)}</title>" + "".join(body) + "</svg>"
    )


def _legend(colours: dict[str, str]) -> str:
    items = "".join(
        f'<span class="key"><i style="background:{c}"></i>{_e(name)}</span>'
        for name, c in colours.items()
    )
    return f'<p class="legend">{items}</p>'


def line_chart(
    name: str, title: str, points: Sequence[Mapping[str, Any]], series: dict[str, str]
) -> str:
    labels = [str(p["at"])[:10] for p in points]
    values = {s: [int(p.get(s, 0) or 0) for p in points] for s in series}
    top = _scale(max([v for vs in values.values() for v in vs] or [1]))
    inner = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = PLOT / max(len(points), 1)
    body = _axes(top, labels)
    for status, colour in series.items():
        coords = [
            (PAD_LEFT + slot * (i + 0.5), PAD_TOP + inner * (1 - v / top))
            for i, v in enumerate(values[status])
        ]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        last = values[status][-1] if values[status] else 0
        body.append(
            f'<polyline data-series="{_e(status)}" data-last="{last}" fill="none" '
            f'stroke="{colour}" stroke-width="2" points="{line}"/>'
        )
    return _svg(name, title, body) + _legend(series)


def stacked_bars(
    name: str,
    title: str,
    groups: list[tuple[str, dict[str, int]]],
    colours: dict[str, str],
    height: int = HEIGHT,
    floor: int = 1,
) -> str:
    """One bar per group, stacked by key; each segment carries data-group/-key/-value.
    The axis reaches ``floor`` at least (a line drawn over the chart stays on it)."""
    top = _scale(max([sum(values.values()) for _, values in groups] + [floor]))
    inner = height - PAD_TOP - PAD_BOTTOM
    slot = PLOT / max(len(groups), 1)
    width = max(min(slot * 0.7, 60), 2)
    body = _axes(top, [g for g, _ in groups], height)
    for i, (group, values) in enumerate(groups):
        x = PAD_LEFT + slot * (i + 0.5) - width / 2
        y = float(height - PAD_BOTTOM)
        total = sum(values.values())
        body.append(f'<g data-group="{_e(group)}" data-total="{total}">')
        for key, colour in colours.items():
            value = values.get(key, 0)
            if not value:
                continue
            h = inner * value / top
            y -= h
            body.append(
                f'<rect data-key="{_e(key)}" data-value="{value}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{width:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{_e(group)}: {value} {_e(key)}</title></rect>"
            )
        body.append("</g>")
    return _svg(name, title, body, height) + _legend(colours)


def hbars(name: str, title: str, values: dict[str, int], colour: str) -> str:
    rows = list(values.items())
    height = max(40, 26 * len(rows) + 10)
    top = max([v for _, v in rows] or [1])
    label_width = 180
    body: list[str] = []
    for i, (key, value) in enumerate(rows):
        y = 6 + 26 * i
        w = (WIDTH - label_width - 60) * value / top if top else 0
        body.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" class="tick">'
            f"{_e(key)}</text>"
            f'<rect data-key="{_e(key)}" data-value="{value}" x="{label_width}" y="{y}" '
            f'width="{w:.1f}" height="18" fill="{colour}"/>'
            f'<text x="{label_width + w + 6:.1f}" y="{y + 14}" class="tick">{value}</text>'
        )
    return _svg(name, title, body, height)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], name: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f'<details><summary>Numbers</summary><table data-table="{_e(name)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details>"
    )


CSS = """
body{font:15px/1.5 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1f2328;
margin:0;background:#f6f8fa}
main{max-width:800px;margin:0 auto;padding:16px}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:0 0 8px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:14px;margin:14px 0}
.totals{display:flex;flex-wrap:wrap;gap:8px;padding:0;margin:0;list-style:none}
.totals li{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px 12px}
.totals strong{display:block;font-size:20px}
.tick{font-size:11px;fill:#57606a}.legend{margin:4px 0;font-size:13px}
.key{margin-right:12px;white-space:nowrap}.key i{display:inline-block;width:10px;height:10px;
margin-right:4px;border-radius:2px}
table{border-collapse:collapse;font-size:13px;margin-top:6px}
td,th{border:1px solid #d0d7de;padding:2px 6px;text-align:right}
a{color:#0969da}.empty{color:#57606a}
"""


def render_dashboard(report: AudienceReport, *, site_name: str) -> str:
    """The whole page, as HTML text."""
    parts: list[str] = []
    totals = "".join(
        f'<li data-testid="count-{_e(status)}"><strong>{number}</strong>{_e(status)}</li>'
        for status, number in report.counts.items()
    )
    parts.append(
        f'<ul class="totals"><li data-testid="count-total"><strong>{report.total}</strong>'
        f"subscribers</li>{totals}</ul>"
    )
    parts += _growth(report) + _audience(report) + _issues(report)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Audience — {_e(site_name)}</title><style>{CSS}</style></head><body><main>"
        f'<p><a href="/">← Preview</a></p><h1>Audience of {_e(site_name)}</h1>'
        f'<p class="empty">As of {_e(report.generated_at)}, from the subscriber store and '
        "the send ledger.</p>" + "".join(parts) + "</main></body></html>"
    )


def _growth(report: AudienceReport) -> list[str]:
    """Subscribers over time by status, and arrivals by source."""
    parts: list[str] = []
    if report.timeline:
        parts.append(
            "<section><h2>Subscribers over time, by status</h2>"
            + line_chart(
                "timeline",
                f"Subscribers by status, one point per {report.step}",
                report.timeline,
                STATUS_COLOURS,
            )
            + _table(
                ["at", *STATUS_COLOURS],
                [[p["at"][:10], *(p[s] for s in STATUS_COLOURS)] for p in report.timeline],
                "timeline",
            )
            + "</section>"
        )
        names = sorted({k for a in report.arrivals for k in a if k != "at"})
        colours = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
        parts.append(
            f"<section><h2>New subscribers per {report.step}, by source</h2>"
            + stacked_bars(
                "arrivals",
                f"New subscribers per {report.step}, by source",
                [(str(a["at"])[:10], {n: int(a[n]) for n in names}) for a in report.arrivals],
                colours,
            )
            + "</section>"
        )
    else:
        parts.append('<section><p class="empty">No subscribers yet.</p></section>')
    return parts


def _audience(report: AudienceReport) -> list[str]:
    """Where subscribers came from, and the sections they chose."""
    parts: list[str] = []
    if report.sources:
        parts.append(
            "<section><h2>Where subscribers came from (now)</h2>"
            + stacked_bars(
                "sources",
                "Subscribers by source and status",
                list(report.sources.items()),
                STATUS_COLOURS,
            )
            + _table(
                ["source", *STATUS_COLOURS],
                [[src, *(v[s] for s in STATUS_COLOURS)] for src, v in report.sources.items()],
                "sources",
            )
            + "</section>"
        )
    if report.preferences:
        shown = {(k or "every section"): v for k, v in report.preferences.items()}
        parts.append(
            "<section><h2>Sections chosen by active subscribers</h2>"
            + hbars("preferences", "Sections chosen by active subscribers", shown, "#0969da")
            + "</section>"
        )
    return parts


def _issues(report: AudienceReport) -> list[str]:
    """Delivery outcomes per issue, and what followed each."""
    parts: list[str] = []
    if report.issues:
        parts.append(
            "<section><h2>Deliveries per issue</h2>"
            + stacked_bars(
                "deliveries",
                "Delivery outcomes per issue (send ledger)",
                [(i.issue_id, i.states) for i in report.issues],
                DELIVERY_COLOURS,
            )
            + "<h2>What followed each issue</h2>"
            + stacked_bars(
                "followed",
                "Unsubscribes, bounces and complaints after each issue",
                [(i.issue_id, i.followed) for i in report.issues],
                FOLLOWED_COLOURS,
            )
            + _table(
                ["issue", *DELIVERY_COLOURS, *FOLLOWED],
                [
                    [i.issue_id, *(i.states.get(s, 0) for s in DELIVERY_COLOURS)]
                    + [i.followed[f] for f in FOLLOWED]
                    for i in report.issues
                ],
                "issues",
            )
            + "</section>"
        )
    else:
        parts.append('<section><p class="empty">No issue has been sent yet.</p></section>')
    return parts


def audience_dashboard(config: Config, now: datetime) -> str:
    """The dashboard page for a site, read from its stores now."""
    report = audience_report(
        locate(config, config.subscribers.database), locate(config, config.ledger.database), now=now
    )
    return render_dashboard(report, site_name=config.site.name)
