"""The service's pages and its confirmation email, from ``templates/serve/``.

A file of the same name in ``<email.templates_dir>/serve/`` overrides the built-in one, the
same way the email's templates are overridden. Autoescaping is on for every template.

Each is rendered in one language (:mod:`digest.i18n`): the reader's, or for a browser
without a subscriber, the one its Accept-Language asks for among those digest speaks.
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

from digest import i18n
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
        self.site_language = config.site.language
        self.default = i18n.language_of(None, config.site.language)
        self.envs: dict[str, Environment] = {}
        self.common: dict[str, Any] = {
            "site_name": config.site.name,
            "site_url": config.site.base_url,
            "postal_address": config.sender.postal_address,
            "ask_engagement": config.analytics.clicks == "per_subscriber",
        }

    def env(self, language: str) -> Environment:
        """The templates with the words of ``language`` (one environment per language)."""
        env = self.envs.get(language)
        if env is None:
            env = Environment(
                loader=ChoiceLoader([InsideLoader(str(f)) for f in self.folders]),
                autoescape=_escape_html,
                undefined=StrictUndefined,
                keep_trailing_newline=True,
                extensions=["jinja2.ext.i18n"],
            )
            i18n.install(env, language)
            self.envs[language] = env
        return env

    def language(self, stored: str | None = None, accept: str | None = None) -> str:
        """A reader's language: their stored one, else what their browser accepts."""
        if stored:
            return i18n.language_of(stored, self.site_language)
        return i18n.negotiate(accept, self.site_language)

    def to_store(self, given: str | None, accept: str | None) -> str:
        """The language a subscribe request keeps: the form's choice when digest speaks it,
        else what the browser accepts; '' when that is the site's own."""
        spoken = i18n.spoken(given) if given else None
        chosen = spoken or (i18n.negotiate(accept, self.site_language) if accept else "")
        return "" if chosen == self.default else chosen

    def render(self, name: str, /, *, language: str | None = None, **context: Any) -> str:
        spoken = language or self.default
        # the page's lang attribute: the site's own spelling while it speaks the site's
        lang = self.site_language if spoken == self.default else spoken.replace("_", "-")
        try:
            template = self.env(spoken).get_template(name)
            return template.render({**self.common, "language": lang, **context})
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
