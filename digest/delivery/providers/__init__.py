"""Email transports, registered by name.

Built-in providers register exactly as an add-on would: a module calls :func:`register`
with its class, or a package exposes one through the ``digest.providers``
entry point group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digest.delivery.providers.registry import (
    available,
    get_provider_class,
    register,
    register_builtin,
    validate_provider_config,
)

register_builtin("outbox", "digest.delivery.providers.outbox")
register_builtin("smtp", "digest.delivery.providers.smtp")
for _api in ("postmark", "resend", "sendgrid", "mailgun", "ses", "brevo"):
    register_builtin(_api, f"digest.delivery.providers.{_api}")

if TYPE_CHECKING:
    pass

__all__ = ["available", "get_provider_class", "register", "validate_provider_config"]
