"""``database:``: where every store lives when it is not the SQLite files."""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from digest.config.secret import _ENV_REF
from digest.errors import ConfigError

_ANY_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class DatabaseURL(str):
    """``database:``: a ``postgresql://`` URL whose secrets are ``${ENV}`` references.

    ``str(url)`` is the URL as written (references, never their values), safe to print;
    :meth:`resolve` substitutes the variables when the connection is made.
    """

    def resolve(self, environ: dict[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ

        def value(match: re.Match[str]) -> str:
            found = env.get(match.group(1))
            if not found:
                raise ConfigError(
                    f"the environment variable {match.group(1)} is not set "
                    f"(config.yaml refers to it in database: {self})"
                )
            return found

        return _ANY_ENV_REF.sub(value, str(self))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            parse_database_url, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )


def parse_database_url(value: Any) -> DatabaseURL:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a URL such as postgresql://digest:${PGPASSWORD}@db/digest")
    text = value.strip()
    if _ENV_REF.fullmatch(text):
        return DatabaseURL(text)  # the whole URL from the environment
    match = re.match(r"^(postgresql|postgres)://(?:([^:@/]*)(?::([^@/]*))?@)?", text)
    if match is None:
        raise ValueError(
            f"'{text}' is not a PostgreSQL URL; write postgresql://user:${{PGPASSWORD}}@host/db "
            "(leave database: out to keep the SQLite files)"
        )
    password = match.group(3)
    if password and not _ENV_REF.fullmatch(password):
        raise ValueError(
            "the password in the URL must come from the environment: write "
            "postgresql://user:${PGPASSWORD}@host/db and set that variable"
        )
    return DatabaseURL(text)
