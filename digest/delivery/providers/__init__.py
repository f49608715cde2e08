"""Email transports, registered by name.

Built-in providers register exactly as an add-on would: a module calls :func:`register`
with its class, or a package exposes one through the ``digest.providers``
entry point group. Their options are declared in :mod:`digest.config.providers`.
"""

from __future__ import annotations

from digest.delivery.providers.registry import (
    available,
    get_provider_class,
    make_provider,
    register,
)

__all__ = ["available", "get_provider_class", "make_provider", "register"]
