"""`digest serve`: the subscriber-facing web service."""

from __future__ import annotations

import sys

import click

from digest.cli._app import State, emit_json, json_option, main, pass_state
from digest.errors import ConfigError


@main.command("serve")
@click.option("--host", default=None, help="Listen address [default: serve.host, 127.0.0.1].")
@click.option(
    "--port", type=int, default=None, help="Listen port; 0 picks a free one [default: serve.port]."
)
@json_option
@pass_state
def serve_command(state: State, host: str | None, port: int | None, as_json: bool) -> None:
    """Run the subscribe, confirm, unsubscribe, preferences, archive and webhook routes.

    \b
    Links in the email point here: set serve.public_url to the address people
    reach this service at (behind your reverse proxy), and DIGEST_SECRET (or the
    variable serve.secret names) to the secret `digest send` signs links with.
    Stops cleanly on Ctrl-C or SIGTERM. See docs/serve.md for deployment.

    \b
    Examples:
      DIGEST_SECRET=... digest serve
      digest serve --host 127.0.0.1 --port 8025
      digest serve --port 0 --json     # prints {"url": "http://127.0.0.1:PORT", ...}
    """
    from digest.audience.links import public_base
    from digest.safelog import install as install_safe_logging
    from digest.schedule.scheduler import Schedule
    from digest.serve.server import bind, serve
    from digest.serve.subscriptions import require_server_secret

    config = state.config
    require_server_secret(config)  # fail before binding, with the fix in the message
    # Every change to the store is logged, whatever -v says, as a record no request can
    # imitate (every message escaped, tracebacks indented); request lines never are.
    install_safe_logging()
    chosen_host = host or config.serve.host
    chosen_port = config.serve.port if port is None else port
    try:
        sock = bind(chosen_host, chosen_port)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {chosen_host}:{chosen_port}: {exc.strerror or exc}; "
            "choose another --port or stop what is using it"
        ) from None

    def ready(url: str) -> None:
        if as_json:
            emit_json({"url": url, "public_url": public_base(config)})
        else:
            click.echo(f"digest serve: listening on {url} (links point at {public_base(config)})")
        sys.stdout.flush()

    serve(config, sock, on_ready=ready, next_issue=Schedule.from_config(config).next_after)
