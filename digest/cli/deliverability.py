"""`digest check --deliverability`: the sending domain's DNS, printed with the records
to publish; and the link check of `digest check --email`. Called by the ``check`` command
(digest/cli/content.py, digest/cli/build.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from digest.cli._app import emit_json, say

if TYPE_CHECKING:
    from digest.config import Config
    from digest.delivery.deliverability import DeliverabilityReport, Item
    from digest.email.build import BuildResult
    from digest.email.checks import CheckResult


def check_deliverability(config: Config, *, as_json: bool) -> bool:
    """Run the DNS checks for the From domain and print them; True when none failed.

    A DNS server that cannot be reached raises DnsError (exit 1), never a pass."""
    from digest.delivery.deliverability import provider_items
    from digest.delivery.dns_checks import check_config

    report = check_config(config)
    provider = provider_items(config)
    ok = report.ok and not any(i.blocking for i in provider)
    if as_json:
        emit_json(
            {
                "domain": report.domain,
                "findings": [f.as_dict() for f in report.findings],
                "provider": [asdict(i) for i in provider],
                "ok": ok,
            }
        )
        return ok
    click.secho(f"deliverability: {report.domain} via {config.provider.name}", bold=True)
    for finding in report.findings:
        mark = "ok" if finding.ok else ("FAILED" if finding.failed else finding.severity)
        colour = "red" if finding.failed else (None if finding.ok else "yellow")
        click.secho(f"  {finding.rule} {finding.name}: {mark}: {finding.detail}", fg=colour)
        if finding.publish and not finding.ok:
            click.echo(f"    publish: {finding.publish}")
    _echo_items(provider)
    return ok


def _echo_items(items: list[Item]) -> None:
    for item in items:
        colour = {"fail": "red", "warn": "yellow"}.get(item.status)
        say(f"  {item.line()}", fg=colour)
        if item.action and item.status in ("fail", "warn"):
            say(f"    {item.action}")


def dry_run_checks(config: Config, built: BuildResult, *, offline: bool) -> DeliverabilityReport:
    """`send --dry-run`: the DNS rules, the provider's word on the domain, the pre-send
    checks and the List-Unsubscribe page (``offline``: the pre-send checks only)."""
    from digest.delivery.deliverability import issue_report

    return issue_report(
        config,
        built.composed,
        checks=built.checks,
        dns=not offline,
        provider=not offline,
        unsubscribe=not offline,
    )


def echo_deliverability(report: DeliverabilityReport) -> None:
    """The dry run's deliverability lines: what blocks, what warns, what passed."""
    blocking = len(report.blocking)
    mark = "ok" if report.ok else f"{blocking} blocking"
    click.secho(
        f"deliverability: {mark} ({report.domain} via {report.provider})",
        bold=True,
        fg=None if report.ok else "red",
    )
    _echo_items([i for i in report.items if i.status != "ok"])
    passed = [i.name for i in report.items if i.status == "ok"]
    if passed:
        click.echo(f"  {len(passed)} passed (--json lists each)")


def issue_links(config: Config, result: BuildResult) -> dict[str, Any]:
    """Fetch every link and image of the built issue; a JSON-ready report."""
    import time

    from digest.email.linkcheck import broken, check_issue

    started = time.monotonic()
    found, outcomes = check_issue(
        config, result.composed.html, result.selection.posts, now=time.time()
    )
    bad = broken(found, outcomes)
    sizes = {t.url: outcomes[t.url].length for t in found if t.kind == "image"}
    return {
        "image_bytes": {url: n for url, n in sizes.items() if n is not None},
        "checked": len(found),
        "cached": sum(1 for o in outcomes.values() if o.cached),
        "seconds": round(time.monotonic() - started, 2),
        "broken": [
            {"url": t.url, "kind": t.kind, "post": t.post, "status": o.status, "detail": o.detail}
            for t, o in bad
        ],
        "ok": not bad,
    }


def echo_links(report: dict[str, Any]) -> None:
    """One line for the count, one per broken link or image, naming its post."""
    mark = "ok" if report["ok"] else "FAILED"
    click.secho(
        f"links: {mark}: {report['checked']} links and images checked "
        f"({report['cached']} from the last day), {len(report['broken'])} broken",
        fg=None if report["ok"] else "red",
    )
    for item in report["broken"]:
        click.secho(f"  {item['kind']} {item['url']}: {item['detail']} in {item['post']}", fg="red")


def presend(config: Config, result: BuildResult, links: dict[str, Any] | None) -> list[CheckResult]:
    """The pre-send report's items (digest/email/presend.py) for the built issue."""
    from digest.email.presend import presend_checks

    images = links["image_bytes"] if links else None
    return presend_checks(result.composed, config.sender.postal_address, images)
