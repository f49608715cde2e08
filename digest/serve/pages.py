"""The service's pages and its confirmation email, from ``templates/serve/``.

A file of the same name in ``<email.templates_dir>/serve/`` overrides the built-in one, the
same way the email's templates are overridden. Autoescaping is on for every template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    StrictUndefined,
)
from jinja2 import (
    TemplateError as JinjaError,
)

from digest.config import Config
from digest.email.loader import InsideLoader
from digest.errors import TemplateError

_PACKAGE = Path(__file__).resolve().parent.parent
# A source checkout keeps the templates in the top-level templates/; a wheel ships them as
# digest/_templates/.
BUILTIN_DIR = (
    _PACKAGE / "_templates" / "serve"
    if (_PACKAGE / "_templates").is_dir()
    else _PACKAGE.parent / "templates" / "serve"
)
STYLESHEET = "serve.css"


def _escape_html(name: str | None) -> bool:
    """Escape everything but the plain-text parts of the email (subject, text body)."""
    return name is None or not name.endswith((".txt.j2", ".subject.j2"))


class Pages:
    """Renders ``templates/serve/<name>`` with the site's name and language filled in."""

    def __init__(self, config: Config) -> None:
        folders: list[Path] = []
        if config.email.templates_dir is not None:
            folders.append(config.path(config.email.templates_dir) / "serve")
        folders.append(BUILTIN_DIR)
        self.folders = folders
        self.env = Environment(
            loader=ChoiceLoader([InsideLoader(str(f)) for f in folders]),
            autoescape=_escape_html,
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        self.common: dict[str, Any] = {
            "site_name": config.site.name,
            "site_url": config.site.base_url,
            "language": config.site.language,
            "postal_address": config.sender.postal_address,
        }

    def render(self, name: str, /, **context: Any) -> str:
        try:
            template = self.env.get_template(name)
            return template.render({**self.common, **context})
        except JinjaError as exc:
            line = getattr(exc, "lineno", None)
            raise TemplateError(str(exc), path=f"templates/serve/{name}", line=line) from None

    def stylesheet(self, name: str = STYLESHEET) -> bytes:
        """The pages' stylesheet, or another of their assets (``zone.js``)."""
        for folder in self.folders:
            path = folder / name
            if path.is_file():
                return path.read_bytes()
        return b""
