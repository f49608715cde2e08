"""`digest config`: every option with its default and meaning, and the effective config."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from digest.cli._app import State, emit_json, json_option, main, pass_state
from digest.config import Config
from digest.config.providers import BUILTIN


@main.group("config")
def config_group() -> None:
    """Show the configuration: its reference, or what a config file resolves to.

    \b
    Examples:
      digest config reference           # every option, its default and meaning
      digest config show --json         # the effective config (secrets stay references)
    """


def _model_of(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _show(value: Any) -> str:
    """A default as it would be written in config.yaml."""
    if isinstance(value, timedelta):
        value = f"{int(value.total_seconds())}s"
    if isinstance(value, Path):
        value = str(value)
    text: str = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def reference_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, default, description) for every option below ``model``."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        if name == "source":
            continue
        key = f"{prefix}{name}"
        inner = _model_of(field.annotation)
        is_list = getattr(field.annotation, "__origin__", None) is list
        if inner is not None and not is_list:
            doc = (inner.__doc__ or "").strip().splitlines()
            rows.append((key, "", doc[0] if doc else ""))
            rows.extend(reference_rows(inner, f"{key}."))
            continue
        if field.default is not PydanticUndefined:
            default = _show(field.default)
        elif field.default_factory is not None:
            default = _show(field.default_factory())  # type: ignore[call-arg]
        else:
            default = "(required)"
        rows.append((key, default, field.description or ""))
        if inner is not None and is_list:
            rows.extend(reference_rows(inner, f"{key}[]."))
    return rows


def full_reference() -> list[tuple[str, str, str]]:
    """Every option, then each built-in provider's own options as ``provider(<name>).<key>``."""
    rows = reference_rows(Config)
    for name, settings in BUILTIN.items():
        doc = (settings.__doc__ or "").strip().splitlines()
        rows.append((f"provider({name})", "", doc[0] if doc else ""))
        rows.extend(reference_rows(settings, f"provider({name})."))
    return rows


@config_group.command("reference")
@json_option
def reference_command(as_json: bool) -> None:
    """Print every option of config.yaml with its default and what it does.

    \b
    The provider section's keys depend on provider.name; each built-in provider's keys
    are listed after the rest as provider(<name>).<key>.
    """
    rows = full_reference()
    if as_json:
        emit_json([{"key": k, "default": d, "description": t} for k, d, t in rows])
        return
    for key, default, text in rows:
        depth = key.count(".")
        click.echo(f"{'  ' * depth}{key.rsplit('.', 1)[-1]}: {default}".rstrip(": "))
        if text:
            click.echo(f"{'  ' * depth}    {text}")


@config_group.command("show")
@json_option
@pass_state
def show_command(state: State, as_json: bool) -> None:
    """Print the effective configuration, with every default filled in."""
    data = state.config.model_dump(mode="json")
    if as_json:
        emit_json(data)
    else:
        click.echo(f"# {state.config.source}")
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
