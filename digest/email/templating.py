"""The email's templates: the jinja2 environment (a user's email.templates_dir first, then
the built-in templates; autoescape on, the reader's language installed), rendering a
template with errors that name it, and MJML -> HTML with email.css inlined by premailer
(which never fetches anything)."""

from __future__ import annotations

import logging
import re
import textwrap
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from mjml import mjml2html
from premailer import Premailer

from digest import i18n
from digest.config import Config
from digest.email.covers import shape_covers
from digest.email.loader import InsideLoader
from digest.errors import TemplateError
from digest.resources import BUILTIN_TEMPLATES

HTML_TEMPLATE = "email.mjml.j2"
TEXT_TEMPLATE = "email.txt.j2"
CSS_FILE = "email.css"


@lru_cache(maxsize=4096)  # the same excerpts are wrapped again for every variant
def _wrap(text: str, width: int = 72, indent: str = "", hanging: str | None = None) -> str:
    subsequent = indent if hanging is None else hanging
    paragraphs = [p for p in re.split(r"\n\s*\n", str(text))]
    wrapped = [
        textwrap.fill(
            " ".join(p.split()),
            width=width,
            initial_indent=indent,
            subsequent_indent=subsequent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for p in paragraphs
        if p.strip()
    ]
    return "\n\n".join(wrapped)


def spoken(config: Config) -> str:
    """The language digest's own words are written in for ``config`` (its site.language;
    a language variant's config has the reader's)."""
    return i18n.language_of(None, config.site.language)


@lru_cache(maxsize=8)
def _environment(user_dir: str | None, language: str = i18n.SOURCE) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if user_dir:
        loaders.append(InsideLoader(user_dir))
    loaders.append(InsideLoader(str(BUILTIN_TEMPLATES)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=lambda name: name is None or not name.endswith(".txt.j2"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        extensions=["jinja2.ext.i18n"],
    )
    i18n.install(env, language)
    env.filters["wrap"] = _wrap
    return env


def environment(config: Config) -> jinja2.Environment:
    user = config.email.templates_dir
    return _environment(str(config.path(user)) if user else None, spoken(config))


def render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"template {exc.name!r} not found in {_searched(env)}", path=str(exc.name)
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            exc.message or "syntax error", path=exc.filename, line=exc.lineno
        ) from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"{exc.message}; the names a template can use are {', '.join(sorted(context))}",
            path=name,
        ) from None


def _searched(env: jinja2.Environment) -> str:
    loader = env.loader
    folders: list[str] = []
    if isinstance(loader, jinja2.ChoiceLoader):
        for inner in loader.loaders:
            if isinstance(inner, jinja2.FileSystemLoader):
                folders.extend(str(p) for p in inner.searchpath)
    return ", ".join(folders)


def _css(env: jinja2.Environment) -> str:
    assert env.loader is not None
    try:
        source, _, _ = env.loader.get_source(env, CSS_FILE)
    except jinja2.TemplateNotFound:
        return ""
    return source


def _mjml_to_html(
    mjml: str,
    css: str,
    inline: bool = True,
    covers: tuple[str, str, Mapping[str, str]] = ("alt", "", {}),
) -> str:
    try:
        result = mjml2html(mjml)
    except Exception as exc:  # mjml-python raises plain exceptions for bad markup
        raise TemplateError(f"MJML could not render the email: {exc}", path=HTML_TEMPLATE) from None
    html: str = shape_covers(result if isinstance(result, str) else str(result), *covers)
    if not inline:
        return html
    # MJML's own <style> blocks (resets, @media, Outlook fixes) are left exactly as they are;
    # premailer only inlines email.css, and adds its @media rules to <head>.
    html = html.replace(
        '<style type="text/css">', '<style type="text/css" data-premailer="ignore">'
    )
    # premailer keeps a doctype only when it matches lxml's spelling.
    html = re.sub(r"^\s*<!doctype html>", "<!DOCTYPE html>", html, flags=re.IGNORECASE)
    premailer = Premailer(
        css_text=[css] if css else None,
        keep_style_tags=False,
        allow_network=False,
        allow_loading_external_files=False,
        disable_validation=True,
        disable_link_rewrites=True,
        remove_classes=False,
        strip_important=False,
        disable_basic_attributes=["width", "height"],
        cssutils_logging_level=logging.CRITICAL,
        cache_css_parsing=True,
    )
    inlined: str = premailer.transform(html).replace(' data-premailer="ignore"', "")
    if not inlined.lstrip().upper().startswith("<!DOCTYPE"):
        inlined = "<!DOCTYPE html>\n" + inlined
    return inlined


# --------------------------------------------------------------------------- issue markers

# The subject, preheader and preheader padding reach the HTML template as markers and are
# filled in after MJML and premailer, escaped for where each stands (text or an attribute
# value): MJML copies the title into an attribute with its own escaping, and the same
