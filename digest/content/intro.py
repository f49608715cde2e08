"""An issue's optional intro: ``<issues_dir>/<issue-id>.md``, Markdown with front matter.

The front matter may set the issue's ``subject`` and ``preheader``; the body becomes the
note at the top of the email. Raw HTML in the Markdown is shown as text, not passed on, and
links that are not http(s) or mailto are refused by the Markdown parser, so an intro cannot
smuggle a script or a ``javascript:`` link into the email.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from digest.config import Config
from digest.content.files import read_inside
from digest.content.frontmatter import FrontMatterTooLarge, YamlLimits, load_bounded
from digest.errors import ContentError
from digest.textsafe import defuse_markers, defuse_url, strip_controls

_SAFE_LINK = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)
_INTRO_MAX_BYTES = 200_000
INTRO_MAX_CHARS = 32_000
"""An intro is a note of a few paragraphs; Markdown parsing costs up to ~20 µs a character
on hostile input, so a longer one is refused rather than parsed."""


@dataclass(frozen=True)
class Intro:
    """The intro of one issue, as HTML (for the email) and as plain text."""

    issue_id: str
    path: Path
    html: str
    text: str
    subject: str | None = None
    preheader: str | None = None


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "typographer": False})
    default_validate = md.validateLink

    def validate(url: str) -> bool:
        return default_validate(url) and bool(_SAFE_LINK.match(url.strip()))

    md.validateLink = validate  # type: ignore[method-assign]
    return md


_MD = _markdown()


def intro_path(config: Config, issue_id: str) -> Path:
    return config.path(config.content.issues_dir) / f"{issue_id}.md"


def load_intro(config: Config, issue_id: str) -> Intro | None:
    """The intro written for ``issue_id``, or None when there is no such file."""
    path = intro_path(config, issue_id)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        data = read_inside(path.parent, path, max_bytes=_INTRO_MAX_BYTES)
        source = data.decode("utf-8-sig")
    except FileNotFoundError:
        if path.is_symlink():
            raise ContentError(f"{path}: a symbolic link to nothing; not read") from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContentError(f"{path}: cannot read the issue intro: {exc}") from None
    return parse_intro(source, issue_id=issue_id, path=path)


def parse_intro(source: str, *, issue_id: str, path: Path) -> Intro:
    if len(source) > INTRO_MAX_CHARS:
        raise ContentError(
            f"{path}: the intro is {len(source):,} characters, over {INTRO_MAX_CHARS:,}; shorten it"
        )
    meta, body = _split_front_matter(source, path)
    unknown = sorted(set(meta) - {"subject", "preheader"})
    if unknown:
        raise ContentError(
            f"{path}: unknown front matter key(s) {', '.join(unknown)}; "
            "an intro may set only subject and preheader"
        )
    subject = _optional_text(meta, "subject", path)
    preheader = _optional_text(meta, "preheader", path)
    tokens = _MD.parse(body)
    for token in tokens:  # an address keeps working with its brackets percent-encoded
        for child in token.children or []:
            if child.type == "link_open" and isinstance(child.attrs.get("href"), str):
                child.attrs["href"] = defuse_url(str(child.attrs["href"]))
    html = _MD.renderer.render(tokens, _MD.options, {}).strip()
    # The intro is content: markers come only from templates (references such as
    # "&#91;" are decoded by the parser, so the syntax is broken in what it rendered).
    return Intro(
        issue_id=issue_id,
        path=path,
        html=defuse_markers(html),
        text=defuse_markers(_to_text(tokens)),
        subject=None if subject is None else defuse_markers(subject),
        preheader=None if preheader is None else defuse_markers(preheader),
    )


def _split_front_matter(source: str, path: Path) -> tuple[dict[str, Any], str]:
    if not source.startswith("---"):
        return {}, source
    match = re.match(r"^---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", source, re.DOTALL | re.MULTILINE)
    if match is None:
        raise ContentError(f"{path}: the front matter is never closed; add a line '---' after it")
    try:
        meta = load_bounded(match.group(1), YamlLimits()) or {}
    except FrontMatterTooLarge as exc:
        raise ContentError(f"{path}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 2}" if mark is not None else ""
        raise ContentError(f"{path}: the front matter is not valid YAML{line}") from None
    if not isinstance(meta, dict):
        raise ContentError(f"{path}: the front matter must be a mapping such as 'subject: …'")
    return meta, source[match.end() :]


def _optional_text(meta: dict[str, Any], key: str, path: Path) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ContentError(f"{path}: '{key}' in the front matter must be text")
    return " ".join(strip_controls(value).split())


def _to_text(tokens: list[Token]) -> str:
    """Plain text of the Markdown: paragraphs kept, a link's address after its words."""
    blocks: list[str] = []
    prefix = ""
    for token in tokens:
        if token.type == "bullet_list_open":
            prefix = "- "
        elif token.type == "bullet_list_close":
            prefix = ""
        elif token.type == "inline":
            blocks.append(prefix + _inline_text(token.children or []))
        elif token.type in ("fence", "code_block"):
            blocks.append(token.content.rstrip())
    return "\n\n".join(block for block in blocks if block.strip())


def _inline_text(children: list[Token]) -> str:
    parts: list[str] = []
    hrefs: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "link_open":
            hrefs.append(str(child.attrs.get("href", "")))
        elif child.type == "link_close" and hrefs:
            href = hrefs.pop()
            parts.append(f" <{href}>")
        elif child.type == "image":
            parts.append(child.content)
    return " ".join("".join(parts).split())
