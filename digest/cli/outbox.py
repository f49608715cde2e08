"""`digest outbox find`: a reader's message files, whose names hold no address."""

from __future__ import annotations

import click

from digest.cli._app import State, emit_json, json_option, main, pass_state


@main.group("outbox")
def outbox_group() -> None:
    """The outbox provider's message files.

    \b
    Examples:
      digest outbox find ada@example.com
    """


@outbox_group.command("find")
@click.argument("email")
@json_option
@pass_state
def find(state: State, email: str, as_json: bool) -> None:
    """List the outbox message files addressed to EMAIL, one path a line.

    A message file is named `<subscriber id>-<hash>.eml`, the hash keyed by the privacy
    key (privacy.key beside the link key file), so its name shows no address; this command
    computes the hash and finds the files under out/ and the outbox's own folder (files
    written before names were hashed, named after the address, are found too). Exits 1
    when there are none.

    \b
    Examples:
      digest outbox find ada@example.com
      digest outbox find ada@example.com --json
    """
    from digest.delivery.erasure import outbox_messages, relative_name

    shown = [relative_name(state.config, p) for p in outbox_messages(state.config, email)]
    if as_json:
        emit_json({"email": email, "files": shown})
    else:
        for line in shown:
            click.echo(line)
        if not shown:
            click.echo(f"no outbox message file for {email}", err=True)
    if not shown:
        raise SystemExit(1)
