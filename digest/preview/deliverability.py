"""The preview's deliverability panel (``/deliverability?week=…``): will this issue land?

One page, drawn on the server with no script: a summary (how many findings block a send,
how many warn), the size as sent against Gmail's 102 KB clipping, whether the one-click
List-Unsubscribe is there and its page answers, then every finding by group (the From
domain's DNS, what the provider says, the pre-send checks, the links and images), each with
what to publish or do. :func:`panel_html` draws a
:class:`~digest.delivery.deliverability.DeliverabilityReport`; :func:`site_panel` makes one
for a real site (the issue built without writing, every check run).
"""

from __future__ import annotations

import time
from datetime import datetime
from html import escape

from digest.config import Config
from digest.delivery.deliverability import (
    GMAIL_CLIP_BYTES,
    DeliverabilityReport,
    Item,
    issue_report,
)

GROUPS = (
    ("dns", "DNS for the From domain"),
    ("provider", "What the provider says"),
    ("presend", "Pre-send checks"),
    ("unsubscribe", "List-Unsubscribe page"),
    ("links", "Links and images"),
)
MARKS = {"ok": "✓", "warn": "!", "fail": "✗", "info": "i"}
LABELS = {"ok": "ok", "warn": "warning", "fail": "blocks a send", "info": "info"}

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
main { max-width: 880px; margin: 0 auto; padding: 20px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
.muted { color: #57606a; }
.summary { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 14px;
  min-width: 180px; }
.card strong { display: block; font-size: 22px; }
.card.fail strong { color: #cf222e; } .card.warn strong { color: #9a6700; }
.card.ok strong { color: #1a7f37; }
.gauge { height: 10px; background: #eaeef2; border-radius: 5px; overflow: hidden; margin-top: 6px; }
.gauge span { display: block; height: 100%; background: #1a7f37; }
.gauge.over span { background: #cf222e; }
ul.items { list-style: none; padding: 0; margin: 0; background: #fff; border: 1px solid #d0d7de;
  border-radius: 6px; }
ul.items li { padding: 8px 12px; border-top: 1px solid #eaeef2; }
ul.items li:first-child { border-top: 0; }
.mark { display: inline-block; width: 1.4em; font-weight: 700; }
.fail .mark { color: #cf222e; } .warn .mark { color: #9a6700; } .ok .mark { color: #1a7f37; }
.info .mark { color: #0969da; }
.name { font-weight: 600; }
.action { display: block; margin: 4px 0 0 1.4em; font-family: ui-monospace, monospace;
  font-size: 13px; white-space: pre-wrap; word-break: break-all; color: #0550ae; }
"""


def _item(item: Item) -> str:
    action = f'<span class="action">{escape(item.action)}</span>' if item.action else ""
    return (
        f'<li class="{item.status}" data-status="{item.status}" data-name="{escape(item.name)}">'
        f'<span class="mark" aria-label="{LABELS[item.status]}">{MARKS[item.status]}</span>'
        f'<span class="name">{escape(item.name)}</span>: {escape(item.detail)}{action}</li>'
    )


def _card(kind: str, title: str, value: str, extra: str = "") -> str:
    return (
        f'<div class="card {kind}" data-card="{escape(title)}"><span class="muted">'
        f"{escape(title)}</span><strong>{escape(value)}</strong>{extra}</div>"
    )


def _size_card(sent_bytes: int) -> str:
    share = min(100.0, 100.0 * sent_bytes / GMAIL_CLIP_BYTES)
    over = sent_bytes > GMAIL_CLIP_BYTES
    gauge = (
        f'<div class="gauge{" over" if over else ""}" role="img" '
        f'aria-label="{share:.0f}% of Gmail\'s 102 KB"><span style="width:{share:.1f}%">'
        "</span></div>"
    )
    return _card(
        "fail" if over else "ok",
        "Size as sent (Gmail clips at 102 KB)",
        f"{sent_bytes / 1024:.1f} KB",
        gauge,
    )


def panel_html(report: DeliverabilityReport, *, sent_bytes: int, site_name: str = "digest") -> str:
    """The whole panel page for ``report``; ``sent_bytes`` is the HTML part as sent."""
    blocking = len(report.blocking)
    warnings = sum(1 for i in report.items if i.status == "warn")
    unsubscribe = [i for i in report.items if i.name in ("list-unsubscribe", "reachable")]
    present = all(i.status != "fail" for i in unsubscribe) and bool(unsubscribe)
    cards = [
        _card("fail" if blocking else "ok", "Blocking a send", str(blocking)),
        _card("warn" if warnings else "ok", "Warnings", str(warnings)),
        _size_card(sent_bytes),
        _card(
            "ok" if present else "fail",
            "One-click List-Unsubscribe",
            "present" if present else "missing",
        ),
    ]
    sections = []
    for group, title in GROUPS:
        items = report.group(group)
        if not items:
            continue
        rows = "".join(_item(i) for i in items)
        sections.append(
            f'<section data-group="{group}"><h2>{escape(title)}</h2>'
            f'<ul class="items">{rows}</ul></section>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Deliverability · {escape(report.issue_id)} · {escape(site_name)}</title>"
        f"<style>{STYLE}</style></head><body><main>"
        f'<p class="muted"><a href="/?week={escape(report.issue_id)}">← back to the preview</a>'
        f"</p><h1>Deliverability of {escape(report.issue_id)}</h1>"
        f'<p class="muted">{escape(report.domain)} via {escape(report.provider)}</p>'
        f'<div class="summary" id="summary">{"".join(cards)}</div>'
        f"{''.join(sections)}</main></body></html>"
    )


def site_panel(config: Config, issue_id: str, now: datetime) -> str:
    """Build ``issue_id`` (nothing written) and draw every check of it, links included."""
    from digest.email.build import build_issue

    result = build_issue(config, now=now, week=issue_id, write=False)
    composed = result.composed
    report = issue_report(
        config,
        composed,
        checks=result.checks,
        posts=result.selection.posts,
        now=time.time(),
    )
    sent = composed.sent_size or composed.html_size
    return panel_html(report, sent_bytes=sent, site_name=config.site.name)
