"""Quality checks on a composed email, run on every build and by ``digest check --email``.

Each check returns a :class:`CheckResult` with what is wrong and how to fix it. A failed
check with ``level="error"`` fails the build (exit 1); a warning is reported and passes.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from lxml import html as lxml_html  # type: ignore[import-untyped]

from digest.email.compose import KB
from digest.email.headline import PREHEADER_MAX, PREHEADER_MIN, SUBJECT_MAX
from digest.email.message import MARKER, PLACEHOLDERS, ComposedEmail

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    summary: str
    problems: tuple[str, ...] = ()
    fix: str = ""
    level: Literal["error", "warning"] = "error"

    @property
    def passed(self) -> bool:
        return self.ok or self.level == "warning"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "level": self.level,
            "summary": self.summary,
            "problems": list(self.problems),
            "fix": self.fix,
        }


@dataclass
class _Doc:
    composed: ComposedEmail
    tree: Any
    extra: dict[str, Any] = field(default_factory=dict)


def all_passed(results: list[CheckResult]) -> bool:
    return all(r.passed for r in results)


def run_checks(composed: ComposedEmail) -> list[CheckResult]:
    """Every check, in a stable order."""
    tree = lxml_html.document_fromstring(composed.html.encode("utf-8"))
    doc = _Doc(composed, tree)
    return [check(doc) for check in CHECKS]


def check_size(doc: _Doc) -> CheckResult:
    composed = doc.composed
    size = composed.sent_size if composed.sent_size is not None else composed.html_size
    budget = doc.composed.size_budget
    summary = f"HTML part as sent is {size / KB:.1f} KB of a {budget / KB:.0f} KB budget"
    if doc.composed.trimmed:
        summary += f" (trimmed: {'; '.join(doc.composed.trimmed)})"
    if size <= budget:
        return CheckResult("size", True, summary)
    return CheckResult(
        "size",
        False,
        summary,
        (f"{size:,} bytes is over the {budget:,} byte budget; Gmail clips at about 102 KB",),
        "lower limits.per_category or limits.total, add fewer_posts/compact_cards to "
        "email.trim_policy, or shorten the intro",
    )


def check_images(doc: _Doc) -> CheckResult:
    problems = []
    images = doc.tree.iter("img")
    count = 0
    for img in images:
        count += 1
        src = img.get("src", "")
        width = img.get("width")
        if width is None or not width.isdigit():
            problems.append(f"<img src={src!r}> has no numeric width (width={width!r})")
        if img.get("alt") is None:
            problems.append(f"<img src={src!r}> has no alt text")
    return CheckResult(
        "images",
        not problems,
        f"{count} images, each needs a numeric width and alt text",
        tuple(problems),
        'give every image in the templates width="N" (pixels) and an alt attribute',
    )


def _link_problem(url: str) -> tuple[str, bool] | None:
    """(problem, is it only a warning), or None for a good link."""
    value = url.strip()
    if MARKER.fullmatch(value) or value.startswith("#"):
        return None
    scheme = urlsplit(value).scheme.casefold()
    if scheme == "https" and urlsplit(value).netloc:
        return None
    if scheme == "mailto":
        return None
    if scheme == "http" and (urlsplit(value).hostname or "") in _LOOPBACK:
        return f"{value} is plain http on this machine (fine for testing only)", True
    return f"{value!r} is not an https link", False


def check_https(doc: _Doc) -> CheckResult:
    errors: list[str] = []
    warnings: list[str] = []
    for element, attribute in ((e, "href") for e in doc.tree.iter("a")):
        _collect(element.get(attribute), errors, warnings)
    for element in doc.tree.iter("img"):
        src = element.get("src")
        if src is not None and not src.strip().casefold().startswith("https://"):
            errors.append(f"image {src!r} is not https")
    if errors:
        return CheckResult(
            "https",
            False,
            f"{len(errors)} links or images are not https",
            tuple(dict.fromkeys(errors + warnings)),
            "use https:// addresses for site.base_url, serve.public_url, post links and "
            "cover images",
        )
    if warnings:
        return CheckResult(
            "https",
            False,
            "links use plain http on this machine",
            tuple(dict.fromkeys(warnings)),
            "set serve.public_url to the public https address before sending for real",
            level="warning",
        )
    return CheckResult("https", True, "every link and image is https")


def _collect(url: str | None, errors: list[str], warnings: list[str]) -> None:
    if url is None:
        return
    problem = _link_problem(url)
    if problem is not None:
        (warnings if problem[1] else errors).append(problem[0])


def check_lang(doc: _Doc) -> CheckResult:
    lang = doc.tree.get("lang")
    if lang:
        return CheckResult("lang", True, f'<html lang="{lang}">')
    return CheckResult(
        "lang",
        False,
        "<html> has no lang",
        ("screen readers cannot tell the email's language",),
        "set site.language in config.yaml and keep lang on <mjml> in email.mjml.j2",
    )


def check_layout_tables(doc: _Doc) -> CheckResult:
    bad = [t for t in doc.tree.iter("table") if t.get("role") != "presentation"]
    total = sum(1 for _ in doc.tree.iter("table"))
    if not bad:
        return CheckResult("tables", True, f'{total} layout tables, all role="presentation"')
    return CheckResult(
        "tables",
        False,
        f'{len(bad)} of {total} tables lack role="presentation"',
        tuple(f"table at line {t.sourceline}" for t in bad[:10]),
        'add role="presentation" to layout tables in your templates (MJML adds it to its own)',
    )


def check_unsubscribe(doc: _Doc) -> CheckResult:
    marker = PLACEHOLDERS["unsubscribe_url"]
    if doc.composed.web:
        return CheckResult("unsubscribe", True, "web version: no unsubscribe link needed")
    in_html = any((a.get("href") or "").strip() == marker for a in doc.tree.iter("a"))
    in_text = marker in doc.composed.text
    problems = []
    if not in_html:
        problems.append(f'the HTML has no <a href="{marker}">')
    if not in_text:
        problems.append(f"the text part has no {marker}")
    return CheckResult(
        "unsubscribe",
        not problems,
        "an unsubscribe link in the HTML and the text part",
        tuple(problems),
        "keep {{ links.unsubscribe }} in footer.mjml.j2 and email.txt.j2",
    )


def check_list_headers(doc: _Doc) -> CheckResult:
    headers = doc.composed.headers
    problems = []
    value = headers.get("List-Unsubscribe", "")
    uris = re.findall(r"<([^>]*)>", value)
    if not any(u.startswith(("https://", "[[digest:")) for u in uris):
        problems.append("List-Unsubscribe has no https (one-click) address")
    if not any(u.startswith("mailto:") for u in uris):
        problems.append("List-Unsubscribe has no mailto: address")
    if headers.get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click":
        problems.append("List-Unsubscribe-Post is not 'List-Unsubscribe=One-Click' (RFC 8058)")
    if not headers.get("List-Id"):
        problems.append("List-Id is missing")
    only_mailto = problems == ["List-Unsubscribe has no mailto: address"]
    return CheckResult(
        "list-headers",
        not problems,
        "List-Id, List-Unsubscribe (https and mailto), List-Unsubscribe-Post",
        tuple(problems),
        "set sender.unsubscribe_mailto in config.yaml" if only_mailto else "",
        level="warning" if only_mailto else "error",
    )


def check_preheader(doc: _Doc) -> CheckResult:
    text = doc.composed.preheader
    length = len(text)
    if text and html_lib.escape(text, quote=False) not in doc.composed.html:
        return CheckResult(
            "preheader",
            False,
            "the preheader is not in the HTML",
            ("inbox previews will show the email's first words instead",),
            "keep <mj-preview> with {{ preheader }} in email.mjml.j2",
        )
    if PREHEADER_MIN <= length <= PREHEADER_MAX:
        return CheckResult("preheader", True, f"preheader, {length} characters")
    return CheckResult(
        "preheader",
        False,
        f"preheader is {length} characters",
        (f"keep it between {PREHEADER_MIN} and {PREHEADER_MAX} characters: {text!r}",),
        "set email.preheader in config.yaml, or preheader in the issue intro's front matter",
    )


# --------------------------------------------------------------------------- contrast

MIN_CONTRAST = 4.5  # WCAG AA for body text
_HEX = r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b"
_DARK_BLOCK = re.compile(r"@media[^{]*prefers-color-scheme:\s*dark[^{]*\{((?:[^{}]*\{[^{}]*\})*)")


def _rgb(value: str) -> tuple[float, float, float]:
    digits = value.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return (int(digits[0:2], 16) / 255, int(digits[2:4], 16) / 255, int(digits[4:6], 16) / 255)


def _luminance(value: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(value))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(foreground: str, background: str) -> float:
    """The WCAG contrast ratio of two #rrggbb colours (1 to 21)."""
    high, low = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _style_colour(style: str, prop: str) -> str | None:
    found = re.findall(rf"(?:^|;)\s*{prop}\s*:\s*({_HEX})", style or "")
    return found[-1] if found else None


def _light_pairs(tree: Any) -> list[tuple[str, str, str]]:
    """(text colour, background behind it, where) for every element with text and a colour."""
    pairs = []
    for element in tree.iter():
        if not isinstance(element.tag, str) or not (element.text or "").strip():
            continue
        colour = None
        node = element
        while node is not None and colour is None:
            colour = _style_colour(node.get("style", ""), "color")
            node = node.getparent()
        background = None
        node = element
        while node is not None and background is None:
            style = node.get("style", "")
            background = _style_colour(style, "background-color") or _style_colour(
                style, "background"
            )
            node = node.getparent()
        if colour and not _hidden(element):
            pairs.append((colour, background or "#ffffff", element.tag))
    return pairs


def _hidden(element: Any) -> bool:
    node = element
    while node is not None:
        if "display:none" in (node.get("style") or "").replace(" ", ""):
            return True
        node = node.getparent()
    return False


def check_contrast(doc: _Doc) -> CheckResult:
    """Text against its background in the light scheme (inline styles) and in the dark one
    (the ``prefers-color-scheme: dark`` rules), and that the dark scheme is declared."""
    problems: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for colour, background, tag in _light_pairs(doc.tree):
        ratio = contrast(colour, background)
        if ratio < MIN_CONTRAST and (colour, background, "light") not in seen:
            seen.add((colour, background, "light"))
            problems.append(f"light: {colour} on {background} ({tag}) is {ratio:.1f}:1")
    html = doc.composed.html
    block = _DARK_BLOCK.search(html)
    declared = bool(doc.tree.xpath("//meta[@name='color-scheme']"))
    if block is None or not declared:
        problems.append(
            "dark: no color-scheme meta or prefers-color-scheme: dark rules; clients "
            "invert the colours on their own"
        )
    else:
        rules = re.findall(r"([^{}]+)\{([^{}]*)\}", block.group(1))
        backgrounds = [
            c
            for _, body in rules
            for c in re.findall(rf"background(?:-color)?\s*:\s*({_HEX})", body)
        ]
        colours = [
            (selector.strip(), c)
            for selector, body in rules
            for c in re.findall(rf"(?<![-\w])color\s*:\s*({_HEX})", body)
        ]
        for selector, colour in colours:
            for background in backgrounds:
                ratio = contrast(colour, background)
                if ratio < MIN_CONTRAST and (colour, background, "dark") not in seen:
                    seen.add((colour, background, "dark"))
                    problems.append(f"dark: {colour} ({selector}) on {background} is {ratio:.1f}:1")
    return CheckResult(
        "contrast",
        not problems,
        f"text contrast at least {MIN_CONTRAST}:1 in the light and dark schemes",
        tuple(problems),
        "change the colours in email.css or the dark-mode rules in email.mjml.j2",
    )


def check_subject(doc: _Doc) -> CheckResult:
    subject = doc.composed.subject
    length = len(subject)
    if 0 < length <= SUBJECT_MAX:
        return CheckResult("subject", True, f"subject, {length} characters")
    return CheckResult(
        "subject",
        False,
        f"subject is {length} characters",
        (f"inboxes show about {SUBJECT_MAX} characters: {subject!r}",),
        "shorten email.subject in config.yaml, or subject in the issue intro's front matter",
        level="warning",
    )


CHECKS = (
    check_size,
    check_images,
    check_https,
    check_lang,
    check_layout_tables,
    check_unsubscribe,
    check_list_headers,
    check_preheader,
    check_subject,
    check_contrast,
)
