"""Before a send: is everything it needs in place? (``digest check``, ``send --dry-run``)

* every ``${VAR}`` the config refers to, resolved, with the unset ones named (and the real
  config file's path);
* with ``provider=True``, one read-only authenticated request to the provider (its account,
  domain or sender endpoint, see each provider's :meth:`~Provider.preflight`): do the
  credentials work, is the sending domain verified?
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from digest.config import Config, missing_secrets
from digest.errors import DigestError, ProviderError

if TYPE_CHECKING:  # imported where used: a plain `digest check` loads no provider stack
    from digest.delivery.providers.base import Check

SEND_SECRETS = ("provider.", "serve.secret")
"""The config keys whose ``${VAR}`` a send needs (checked before anything is recorded)."""


@dataclass
class Preflight:
    config: str
    provider: str
    missing: list[dict[str, str]] = field(default_factory=list)  # key, variable, needed_by
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        needed = any(m["needed_by"] == "send" for m in self.missing)
        return not needed and all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "provider": self.provider,
            "missing": self.missing,
            "checks": [asdict(c) for c in self.checks],
            "ok": self.ok,
        }


def preflight(config: Config, *, provider: bool = False) -> Preflight:
    """Resolve every ``${VAR}``; with ``provider``, ask the provider about the credentials."""
    result = Preflight(str(config.source or "config"), config.provider.name)
    for key, ref in missing_secrets(config):
        result.missing.append(
            {
                "key": key,
                "variable": ref.env_var,
                "needed_by": "send" if key.startswith(SEND_SECRETS) else "serve",
            }
        )
    if not provider:
        return result
    # Start-up time: only a check that asks the provider loads the provider stack.
    from digest.delivery.providers.base import Check
    from digest.delivery.providers.registry import make_provider

    unset = [m for m in result.missing if m["key"].startswith("provider.")]
    if unset:
        names = ", ".join(m["variable"] for m in unset)
        result.checks.append(Check("credentials", False, f"not checked: {names} not set"))
        return result
    transport = make_provider(config)
    try:
        result.checks.extend(transport.preflight())
    except ProviderError as exc:
        name = "credentials" if exc.status in (401, 403) else "connection"
        result.checks.append(Check(name, False, str(exc)))
    except DigestError as exc:
        result.checks.append(Check("connection", False, str(exc)))
    finally:
        transport.close()
    return result
