"""The ``digest`` command line. Each command module registers itself on :data:`main`."""

from __future__ import annotations

from digest.cli import (  # noqa: F401  (importing a module registers its commands)
    build,
    configcmd,
    content,
    db,
    keys,
    preview,
    schedule,
    send,
    serve,
    subscribers,
    suppressions,
)
from digest.cli._app import main

__all__ = ["main"]
