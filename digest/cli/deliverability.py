"""`digest check --deliverability`: the sending domain's DNS, printed with the records
to publish. Called by the ``check`` command (digest/cli/content.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from digest.cli._app import emit_json

if TYPE_CHECKING:
    from digest.config import Config


def check_deliverability(config: Config, *, as_json: bool) -> bool:
    """Run the DNS checks for the From domain and print them; True when none failed.

    A DNS server that cannot be reached raises DnsError (exit 1), never a pass."""
    from digest.delivery.dns_checks import check_config

    report = check_config(config)
    if as_json:
        emit_json(
            {
                "domain": report.domain,
                "findings": [f.as_dict() for f in report.findings],
                "ok": report.ok,
            }
        )
        return report.ok
    click.secho(f"deliverability: {report.domain} via {config.provider.name}", bold=True)
    for finding in report.findings:
        mark = "ok" if finding.ok else ("FAILED" if finding.failed else finding.severity)
        colour = "red" if finding.failed else (None if finding.ok else "yellow")
        click.secho(f"  {finding.rule} {finding.name}: {mark}: {finding.detail}", fg=colour)
        if finding.publish and not finding.ok:
            click.echo(f"    publish: {finding.publish}")
    return report.ok
