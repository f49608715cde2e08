"""The ``digest`` command line. Each command module registers itself on :data:`main`."""

from __future__ import annotations

from digest.cli import configcmd as _configcmd  # noqa: F401  (registers commands)
from digest.cli import build as _build  # noqa: F401
from digest.cli import content as _content  # noqa: F401
from digest.cli import preview as _preview  # noqa: F401
from digest.cli import schedule as _schedule  # noqa: F401
from digest.cli import send as _send  # noqa: F401
from digest.cli import serve as _serve  # noqa: F401
from digest.cli import subscribers as _subscribers  # noqa: F401
from digest.cli import suppressions as _suppressions  # noqa: F401
from digest.cli._app import main

__all__ = ["main"]
