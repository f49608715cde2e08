"""The table of provider names and classes, and validation of a provider's options."""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from digest.errors import ConfigError

if TYPE_CHECKING:
    from digest.config import Config, ProviderConfig
    from digest.delivery.providers.base import Provider

_REGISTRY: dict[str, type[Any]] = {}

# Built-in providers, imported on first use so that `digest select` never pays for them.
_BUILTIN_MODULES: dict[str, str] = {}

ENTRY_POINT_GROUP = "digest.providers"


def register(name: str, provider_class: type[Any]) -> None:
    """Make ``provider_class`` available as ``provider: {name: <name>}``."""
    _REGISTRY[name] = provider_class


def register_builtin(name: str, module: str) -> None:
    """Name a module that registers ``name`` when imported (lazy built-ins)."""
    _BUILTIN_MODULES[name] = module


def _load_entry_points() -> None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _REGISTRY:
            register(entry.name, entry.load())


def available() -> list[str]:
    """Every provider name digest knows, sorted."""
    _load_entry_points()
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def get_provider_class(name: str) -> type[Any]:
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        known = available()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"provider.name: unknown provider '{name}'{hint} (known: {', '.join(known)})"
        )
    return _REGISTRY[name]


def make_provider(config: Config) -> Provider:
    """The configured transport, its options validated."""
    from digest.delivery.providers.base import Provider

    provider = get_provider_class(config.provider.name).from_config(config)
    if not isinstance(provider, Provider):
        raise ConfigError(f"provider.name: {config.provider.name} is not a digest provider")
    return provider


def validate_provider_config(provider: ProviderConfig) -> list[str]:
    """One line per problem in the ``provider`` section, each naming its key."""
    from digest.config import format_validation_errors

    if not _REGISTRY and not _BUILTIN_MODULES:
        return []  # no transports registered at all: nothing to check against
    try:
        provider_class = get_provider_class(provider.name)
    except ConfigError as exc:
        return [str(exc)]
    settings_model: type[BaseModel] | None = getattr(provider_class, "Settings", None)
    if settings_model is None:
        return []
    try:
        settings_model.model_validate(provider.options())
    except ValidationError as exc:
        return [f"provider.{line}" for line in format_validation_errors(exc, settings_model)]
    return []
