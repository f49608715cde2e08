"""The clicks on the preview's dashboard (``/dashboard``, with ``analytics.clicks`` on):
drawn from :func:`digest.delivery.click_report.click_report` with the audience dashboard's
charts, each with its numbers in ``data-*`` attributes and a table.

- kept and filtered clicks per issue (stacked bars), and the kept clicks per day;
- clicks per post and per section of the latest issue (or the one asked for);
- complaint rate per issue in hundredths of a percent, with Gmail's 0.3% line drawn.
"""

from __future__ import annotations

from datetime import datetime

from digest.config import Config
from digest.delivery.click_report import COMPLAINT_ALARM, ClickReport, click_report
from digest.preview.dashboard import (
    HEIGHT,
    PAD_BOTTOM,
    PAD_LEFT,
    PAD_RIGHT,
    PAD_TOP,
    WIDTH,
    _e,
    _scale,
    _table,
    audience_dashboard,
    hbars,
    line_chart,
    stacked_bars,
)

CLICK_COLOURS = {"kept": "#0969da", "filtered": "#8c959f"}


def _alarm_line(svg: str, top: int, threshold: int) -> str:
    """``svg`` (a chart whose axis tops at ``top``) with a red line at ``threshold``."""
    inner = HEIGHT - PAD_TOP - PAD_BOTTOM
    y = PAD_TOP + inner * (1 - threshold / top) if top else PAD_TOP
    line = (
        f'<line data-alarm="{threshold}" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" '
        f'y1="{y:.1f}" y2="{y:.1f}" stroke="#cf222e" stroke-dasharray="4 3"/>'
        f'<text x="{WIDTH - PAD_RIGHT}" y="{y - 4:.1f}" text-anchor="end" class="tick">'
        "Gmail 0.30%</text>"
    )
    return svg.replace("</svg>", line + "</svg>", 1)


def render_clicks(report: ClickReport) -> str:
    """The clicks section of the dashboard."""
    issues = report.issues
    if not issues:
        return '<section><h2>Clicks</h2><p class="empty">No clicks yet.</p></section>'
    latest = issues[-1]
    days: dict[str, int] = {}
    for issue in issues:
        for day in issue.days:
            days[day["day"]] = days.get(day["day"], 0) + int(day["kept"])
    # complaints per 10,000 delivered: whole numbers on the axis, 30 is Gmail's line
    complaints = [
        (i.issue_id, {"complaints": round((i.complaint_rate or 0) * 10_000)}) for i in issues
    ]
    alarm = round(COMPLAINT_ALARM * 10_000)
    complaint_chart = stacked_bars(
        "complaints",
        "Complaints per 10,000 delivered, per issue",
        complaints,
        {"complaints": "#8250df"},
        floor=alarm,
    )
    scale = _scale(max([v["complaints"] for _, v in complaints] + [alarm]))
    return (
        '<section data-section="clicks"><h2>Clicks</h2>'
        + stacked_bars(
            "clicks",
            "Kept and filtered clicks per issue",
            [(i.issue_id, {"kept": i.kept, "filtered": i.filtered}) for i in issues],
            CLICK_COLOURS,
        )
        + line_chart(
            "click-days",
            "Kept clicks per day",
            [{"at": day, "kept": kept} for day, kept in sorted(days.items())],
            {"kept": CLICK_COLOURS["kept"]},
        )
        + f"<h2>Posts of {_e(latest.issue_id)}</h2>"
        + hbars(
            "posts",
            f"Kept clicks per post of {latest.issue_id}",
            {f"{p.place + 1}. {(p.title or p.post_id)[:22]}": p.kept for p in latest.posts},
            CLICK_COLOURS["kept"],
        )
        + hbars(
            "sections",
            f"Kept clicks per section of {latest.issue_id}",
            {name or "(none)": kept for name, kept in latest.sections.items()},
            "#1a7f37",
        )
        + "<h2>Complaints</h2>"
        + _alarm_line(complaint_chart, scale, alarm)
        + _table(
            ["issue", "delivered", "kept", "filtered", "click rate", "bounces", "complaints"],
            [
                [
                    i.issue_id,
                    i.delivered,
                    i.kept,
                    i.filtered,
                    "-" if i.click_rate is None else f"{i.click_rate * 100:.1f}%",
                    i.bounced,
                    i.complained,
                ]
                for i in issues
            ],
            "clicks",
        )
        + "</section>"
    )


def dashboard_page(config: Config, now: datetime) -> str:
    """The preview's dashboard: the audience, and the clicks when they are counted."""
    page = audience_dashboard(config, now)
    if config.analytics.clicks == "off":
        return page
    section = render_clicks(click_report(config, now=now))
    return page.replace("</main></body></html>", section + "</main></body></html>", 1)
