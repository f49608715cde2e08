"""`digest preview`: the issue in a browser, rebuilt whenever its files change."""

from __future__ import annotations

import ipaddress
import webbrowser
from pathlib import Path

import click

from digest.cli._app import State, echo_err, main, now, pass_state
from digest.config import find_config
from digest.content.select import resolve_window
from digest.preview import PreviewState, run_preview
from digest.preview.clicks_dashboard import dashboard_page
from digest.preview.site import SitePreview, changed_names, send_test_for
from digest.preview.state import BuildEvent

LOOPBACK = "127.0.0.1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@main.command("preview")
@click.option(
    "--week",
    metavar="YYYY-Www",
    help="The issue to open first, e.g. 2026-W47 [default: the last complete week].",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="The port [default: preview.port in config.yaml, 8000]; 0 picks a free one.",
)
@click.option(
    "--host",
    default=None,
    metavar="ADDRESS",
    help="Listen on this address instead of 127.0.0.1. Anything but loopback lets other "
    "machines see your unsent issue.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in your browser.")
@click.option("--no-watch", is_flag=True, help="Do not rebuild when files change.")
@pass_state
def preview_command(
    state: State,
    week: str | None,
    port: int | None,
    host: str | None,
    open_browser: bool,
    no_watch: bool,
) -> None:
    """Preview the issue in a browser; it rebuilds and reloads when you save.

    The page shows the email exactly as it is sent (desktop and mobile widths, a dark-mode
    simulation), its text part, headers, inbox line and checks. Saving a post, an issue
    intro, a template or config.yaml rebuilds it, and the page refreshes by itself; a
    mistake is shown in the page with its file and line while the last good email stays.

    \b
    Examples:
      digest preview                     # the last complete week, on 127.0.0.1:8000
      digest preview --week 2026-W47 --open
      digest preview --port 0            # any free port; the address is printed
    """
    config = state.config
    issue_id = resolve_window(config, now(), week=week).issue_id
    if host is None:
        host = config.preview.host
        if not _is_loopback(host):
            echo_err(
                f"preview.host is {host}; the preview listens on {LOOPBACK} unless you pass "
                "--host explicitly"
            )
            host = LOOPBACK
    elif not _is_loopback(host):
        echo_err(f"warning: listening on {host}: other machines can open this preview")
    chosen_port = config.preview.port if port is None else port

    site = SitePreview(config.source or find_config(state.config_path), now)
    site.last_config = config

    def report(event: BuildEvent, preview: PreviewState) -> None:
        view = preview.peek(event.issue_id)
        if view is None:
            return
        if view.problem is None:
            click.echo(f"rebuilt {event.issue_id} in {view.build_seconds * 1000:.0f} ms")
        else:
            where = f" ({view.problem.path}:{view.problem.line})" if view.problem.line else ""
            echo_err(f"{event.issue_id} did not build{where}: {view.problem.message}")

    def ready(url: str, preview: PreviewState) -> None:
        view = preview.peek(issue_id)
        click.echo(f"Previewing {issue_id} at {url}")
        if view is not None and view.problem is not None:
            echo_err(f"{issue_id} did not build: {view.problem.message}")
        if not no_watch:
            watched = site.watch_set()
            folders = ", ".join(str(f) for f in watched.folders if Path(f).is_dir())
            click.echo(f"Watching {folders} and {config.source}")
        click.echo("Press Ctrl-C to stop.")
        preview.add_listener(lambda event: report(event, preview))
        if open_browser:
            open_in_browser(url)

    run_preview(
        site,
        issue_id=issue_id,
        host=host,
        port=chosen_port,
        watch_set=None if no_watch else site.watch_set,
        weeks=site.weeks,
        archive=site.archive,
        send_test=send_test_for(site),
        site_name=config.site.name,
        dashboard=lambda: dashboard_page(config, now()),
        deliverability=lambda issue: _deliverability_panel(site, issue),
        any_host=not _is_loopback(host),
        on_ready=ready,
        on_rebuild=lambda paths: click.echo(f"changed: {changed_names(paths)}"),
    )
    click.echo("Preview stopped.")


def _deliverability_panel(site: SitePreview, issue_id: str) -> str:
    """The panel of ``/deliverability``: loaded when first asked for (it runs every check)."""
    from digest.preview.deliverability import site_panel

    return site_panel(site.config(), issue_id, now())


def open_in_browser(url: str) -> None:
    """Open ``url`` in the user's browser, or say that none was found (and where to go)."""
    try:
        opened = webbrowser.open(url)
    except webbrowser.Error:
        opened = False
    if not opened:
        echo_err(f"no browser found to open the preview; open {url} in yours")
