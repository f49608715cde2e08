"""Where the built-in templates are, in a source checkout and in an installed wheel.

The project keeps them in the top-level ``templates/`` folder; a wheel ships the same files
as ``digest/_templates`` (see ``[tool.setuptools]`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def builtin_templates() -> Path:
    """The folder of built-in templates (``email.mjml.j2``, ``preview/``, ``serve/``, …)."""
    installed = _PACKAGE / "_templates"
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / "templates"


BUILTIN_TEMPLATES = builtin_templates()
