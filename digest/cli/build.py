"""`digest build`: compose the week's email, check it, and write it to out/<issue-id>/."""

from __future__ import annotations

from datetime import date
from typing import Any

import click

from digest.cli._app import State, emit_json, json_option, main, now, pass_state, window_options
from digest.config import Config
from digest.email.build import BuildResult, build_issue
from digest.email.checks import CheckResult


def result_json(result: BuildResult) -> dict[str, Any]:
    return {
        **result.manifest,
        "out_dir": str(result.out_dir),
        "written": [str(p) for p in result.written],
        "problems": list(result.problems),
    }


def echo_checks(checks: list[CheckResult]) -> None:
    for check in checks:
        if check.ok:
            mark, color = "ok  ", "green"
        elif check.level == "warning":
            mark, color = "warn", "yellow"
        else:
            mark, color = "FAIL", "red"
        click.secho(f"  {mark}  {check.name}: {check.summary}", fg=color)
        if not check.ok:
            for problem in check.problems[:10]:
                click.echo(f"          - {problem}")
            if len(check.problems) > 10:
                click.echo(f"          … and {len(check.problems) - 10} more")
            if check.fix:
                click.echo(f"          fix: {check.fix}")


def echo_summary(result: BuildResult) -> None:
    composed = result.composed
    window = result.selection.window
    click.secho(f"{composed.issue_id} · {window.describe()} · {composed.subject}", bold=True)
    trimmed = result.selection.count - composed.post_count
    click.echo(
        f"posts: {composed.post_count} in {len(composed.sections)} sections"
        + (f" ({trimmed} trimmed to fit)" if trimmed else "")
    )
    click.echo(
        f"size: {(composed.sent_size or composed.html_size) / 1000:.1f} KB of "
        f"{composed.size_budget / 1000:.0f} KB budget, HTML part as sent "
        f"(text {composed.text_size / 1000:.1f} KB)"
    )
    for line in composed.trimmed:
        click.echo(f"trimmed: {line}")
    for warning in composed.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo("checks:")
    echo_checks(result.checks)


@main.command("build")
@window_options
@click.option("--dry-run", is_flag=True, help="Compose and check, but write nothing.")
@click.option(
    "--strict",
    is_flag=True,
    default=None,
    help="Exit 4 when a post cannot be read, instead of skipping it [default: content.strict].",
)
@click.option(
    "--publish",
    is_flag=True,
    help="Also publish the issue in the web archive and feed (sending does this).",
)
@json_option
@pass_state
def build_command(
    state: State,
    week: str | None,
    since: date | None,
    until: date | None,
    dry_run: bool,
    as_json: bool,
    publish: bool = False,
    strict: bool | None = None,
) -> None:
    """Compose the issue's email, check it, and write it to out/<issue-id>/.

    Writes email.html, email.txt, email.eml and manifest.json, and stages the
    issue's web version in out/<issue-id>/web/. The public archive
    (out/archive/, index.html and feed.xml) gets it when the issue is sent, or
    now with --publish. A post that cannot be read is named on stderr and in
    the manifest's "skipped". Exits 1 when a quality check fails, 4 when a post
    was skipped and the build is strict, and 5 when the week has no posts.

    \b
    Examples:
      digest build                       # the last complete week
      digest build --week 2026-W34
      digest build --week 2026-W34 --json | jq .sizes
      digest build --since 2026-08-01 --until 2026-08-14 --dry-run
    """
    config = state.config
    result = build_issue(
        config,
        now=now(),
        week=week,
        since=since,
        until=until,
        write=not dry_run,
        publish=publish and not dry_run,
        strict=strict or None,
    )
    if as_json:
        emit_json(result_json(result))
    else:
        echo_summary(result)
        if result.written:
            where = f"{config.path(config.out_dir)}/archive/" if publish else "not published"
            click.echo(f"wrote: {result.out_dir}/ (web archive: {where})")
    if not result.ok:
        raise click.exceptions.Exit(1)


def check_email(
    config: Config,
    *,
    as_json: bool,
    week: str | None,
    since: date | None,
    until: date | None,
    links: bool = False,
) -> None:
    """`digest check --email`: compose the issue without writing it, and run the checks;
    with ``links``, fetch every link and image too (digest/cli/deliverability.py)."""
    result = build_issue(config, now=now(), week=week, since=since, until=until, write=False)
    from digest.cli.deliverability import echo_links, issue_links, presend

    report = issue_links(config, result) if links else None
    report_items = presend(config, result, report)
    if as_json:
        emit_json(
            {
                "issue_id": result.composed.issue_id,
                "checks": [c.as_json() for c in result.checks],
                "sizes": result.manifest["sizes"],
                "trimmed": list(result.composed.trimmed),
                "presend": [c.as_json() for c in report_items],
                **({"links": report} if report else {}),
                "ok": result.ok and (report is None or report["ok"]),
            }
        )
    else:
        click.secho(f"email: {result.composed.issue_id} · {result.composed.subject}", bold=True)
        echo_checks(result.checks)
        click.echo("pre-send report:")
        echo_checks(report_items)
        if report:
            echo_links(report)
    if not result.ok or (report and not report["ok"]):
        raise click.exceptions.Exit(1)
