"""Secrets in the config: references to environment variables, never values."""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from digest.errors import ConfigError

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class Secret(str):
    """A reference to an environment variable, such as ``${POSTMARK_TOKEN}``.

    ``str(secret)`` is the reference, never the value, so a secret cannot leak into a log
    or a report by accident. :meth:`resolve` reads the variable when it is needed.
    """

    @property
    def env_var(self) -> str:
        match = _ENV_REF.match(self)
        assert match is not None  # guaranteed by validation
        return match.group(1)

    def resolve(self, environ: dict[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        value = env.get(self.env_var)
        if not value:
            raise ConfigError(
                f"the environment variable {self.env_var} is not set "
                f"(the config refers to it as {self})"
            )
        return value

    def is_set(self, environ: dict[str, str] | None = None) -> bool:
        env = os.environ if environ is None else environ
        return bool(env.get(self.env_var))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _to_secret, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )


def _to_secret(value: Any) -> Secret:
    if not isinstance(value, str) or not _ENV_REF.match(value.strip()):
        raise ValueError(
            "secrets must come from the environment: write a reference such as "
            "${MY_PROVIDER_TOKEN} and set that variable"
        )
    return Secret(value.strip())
