"""`digest keys`: the link key that signs unsubscribe and preference links."""

from __future__ import annotations

from pathlib import Path

import click

from digest.audience.keys import describe, key_file, link_keys, rotate
from digest.cli._app import State, emit_json, json_option, main, now, pass_state


@main.group("keys")
def keys_group() -> None:
    """The key that signs unsubscribe and preference links.

    Without DIGEST_SECRET (or serve.secret), digest creates a random key once in
    keys.file (mode 0600); `digest send` and `digest serve` both use it.

    \b
    Examples:
      digest keys show
      digest keys rotate
    """


@keys_group.command("show")
@json_option
@pass_state
def show_command(state: State, as_json: bool) -> None:
    """Which key signs links, and which older keys still verify (no secrets shown)."""
    config = state.config
    keys = link_keys(config, now=now())
    rows = describe(config, now=now())
    if as_json:
        emit_json({"signing": keys.source, "file": str(key_file(config)), "keys": rows})
        return
    click.echo(f"links are signed with: {keys.source}")
    for row in rows:
        state_text = (
            "signing"
            if row["signing"]
            else (f"verifies until {row['verifies_until']}" if row["verifying"] else "expired")
        )
        click.echo(f"  {row['id']}  created {row['created_at']}  {state_text}")


@keys_group.command("rotate")
@json_option
@pass_state
def rotate_command(state: State, as_json: bool) -> None:
    """Start signing new links with a new key; links signed with the previous key keep
    working for keys.grace_period.

    \b
    Examples:
      digest keys rotate
    """
    config = state.config
    fresh, keys = rotate(config, now=now())
    grace = config.keys.grace_period
    if as_json:
        emit_json({"new": fresh.id, "file": str(key_file(config)), "keys": describe(config)})
        return
    click.echo(f"{key_file(config)}: new signing key {fresh.id}")
    click.echo(
        f"  links signed with older keys keep working for {grace.days} days "
        f"({len(keys) - 1} older key{'s' if len(keys) != 2 else ''})"
    )
    if link_keys(config).source != str(key_file(config)):
        click.secho(
            f"  note: {link_keys(config).source} is set and still signs new links; unset it "
            "to sign with the key file",
            fg="yellow",
        )


@keys_group.command("dkim")
@click.option(
    "--selector", default=None, help="The DKIM selector [default: provider's, or digest]."
)
@click.option("--domain", default=None, help="The signing domain [default: the From domain].")
@click.option("--bits", default=2048, show_default=True, type=click.IntRange(1024, 4096))
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the private key goes [default: provider.dkim_key_file, or dkim.pem].",
)
@pass_state
def dkim_command(
    state: State, selector: str | None, domain: str | None, bits: int, key_file: Path | None
) -> None:
    """Make a DKIM key pair for SMTP sending (the private key in a 0600 file, kept if it
    exists) and print the DNS TXT record to publish and the provider options to set.

    \b
    Examples:
      digest keys dkim
      digest keys dkim --selector news2026 --domain example.com
    """
    from digest.email.dkim import dns_record, generate_key, public_key_b64

    config = state.config
    options = config.provider.options()
    selector = selector or str(options.get("dkim_selector") or "digest")
    domain = domain or options.get("dkim_domain") or config.sender.from_email.rsplit("@", 1)[1]
    path = config.path(key_file or Path(options.get("dkim_key_file") or "dkim.pem"))
    made = generate_key(path, bits)
    click.echo(f"{'created' if made else 'kept the existing'} private key: {path} (mode 0600)")
    click.echo("publish this DNS record:")
    click.echo(f"  {dns_record(selector, domain, public_key_b64(path))}")
    click.echo("and set in config.yaml:")
    click.echo(f"  provider: {{name: smtp, dkim_key_file: {path}, dkim_selector: {selector}}}")
