"""The table of provider names and classes (options are declared in digest.config.providers)."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from digest.config.providers import BUILTIN, ENTRY_POINT_GROUP, unknown_provider
from digest.delivery.providers.base import Provider
from digest.errors import ConfigError

if TYPE_CHECKING:
    from digest.config import Config

_REGISTRY: dict[str, type[Any]] = {}

# Built-in providers, imported on first use so that `digest select` never pays for them.
_BUILTIN_MODULES: dict[str, str] = {name: f"digest.delivery.providers.{name}" for name in BUILTIN}


def register(name: str, provider_class: type[Any]) -> None:
    """Make ``provider_class`` available as ``provider: {name: <name>}``."""
    _REGISTRY[name] = provider_class


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
        raise ConfigError(unknown_provider(name, available()))
    return _REGISTRY[name]


def make_provider(config: Config) -> Provider:
    """The configured transport, its options validated."""

    provider = get_provider_class(config.provider.name).from_config(config)
    if not isinstance(provider, Provider):
        raise ConfigError(f"provider.name: {config.provider.name} is not a digest provider")
    return provider


def settles_uncertain(name: str) -> str:
    """What settles an ``uncertain`` row sent through provider ``name``: asked or resent
    automatically, or left to the operator, and how (``digest status`` says it)."""
    try:
        provider_class = get_provider_class(name)
    except ConfigError:
        return Provider.settles_uncertain
    return str(getattr(provider_class, "settles_uncertain", Provider.settles_uncertain))
