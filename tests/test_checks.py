"""The email quality checks: each one passes on a good email and names the problem on a bad one."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from digest.config import load_config
from digest.content import pipeline
from digest.email.checks import CheckResult, all_passed, run_checks
from digest.email.compose import compose
from digest.email.message import ComposedEmail

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def good(sample_site: Path) -> ComposedEmail:
    config = load_config(sample_site / "config.yaml")
    selection = pipeline.load_and_select(config, NOW, week="2026-W47").selection
    return compose(config, selection, now=NOW)


def _result(composed: ComposedEmail, name: str) -> CheckResult:
    return next(r for r in run_checks(composed) if r.name == name)


def test_the_good_email_passes_every_check(good: ComposedEmail) -> None:
    results = run_checks(good)
    assert [r.name for r in results] == [
        "size", "images", "https", "lang", "tables", "unsubscribe", "list-headers", "preheader",
        "subject", "contrast",
    ]  # fmt: skip
    assert all_passed(results)


def test_size_over_budget(good: ComposedEmail) -> None:
    result = _result(replace(good, size_budget=1000), "size")
    assert not result.passed
    assert result.problems == (
        f"{good.sent_size:,} bytes is over the 1,000 byte budget; Gmail clips at about 102 KB",
    )


def test_image_without_width_or_alt(good: ComposedEmail) -> None:
    html = good.html.replace("<body", '<body><img src="https://x.test/a.png" width="100%"', 1)
    html = html.replace('width="100%"', 'width="100%">', 1)
    result = _result(replace(good, html=html), "images")
    assert not result.passed
    assert result.problems == (
        "<img src='https://x.test/a.png'> has no numeric width (width='100%')",
        "<img src='https://x.test/a.png'> has no alt text",
    )


@pytest.mark.parametrize(
    ("link", "problem"),
    [
        ("javascript:alert(1)", "'javascript:alert(1)' is not an https link"),
        ("http://example.com/", "'http://example.com/' is not an https link"),
    ],
)
def test_links_must_be_https(good: ComposedEmail, link: str, problem: str) -> None:
    html = good.html.replace("</body>", f'<a href="{link}">x</a></body>')
    result = _result(replace(good, html=html), "https")
    assert (result.passed, result.level) == (False, "error")
    assert problem in result.problems


def test_images_must_be_https(good: ComposedEmail) -> None:
    html = good.html.replace("</body>", '<img src="http://x.test/a.png" width="1" alt=""></body>')
    result = _result(replace(good, html=html), "https")
    assert "image 'http://x.test/a.png' is not https" in result.problems


def test_lang_and_presentation_tables(good: ComposedEmail) -> None:
    html = good.html.replace('<html lang="en"', "<html", 1)
    html = html.replace("</body>", "<table><tr><td>x</td></tr></table></body>")
    composed = replace(good, html=html)
    assert not _result(composed, "lang").passed
    tables = _result(composed, "tables")
    assert not tables.passed
    assert tables.summary.startswith("1 of ")


def test_unsubscribe_link_and_headers(good: ComposedEmail) -> None:
    html = good.html.replace('href="[[digest:unsubscribe_url]]"', 'href="https://x.test/"')
    headers = {k: v for k, v in good.headers.items() if k != "List-Unsubscribe-Post"}
    composed = replace(good, html=html, headers=headers)
    assert _result(composed, "unsubscribe").problems == (
        'the HTML has no <a href="[[digest:unsubscribe_url]]">',
    )
    assert _result(composed, "list-headers").problems == (
        "List-Unsubscribe-Post is not 'List-Unsubscribe=One-Click' (RFC 8058)",
    )


def test_preheader_length_and_presence(good: ComposedEmail) -> None:
    short = _result(replace(good, preheader="Too short"), "preheader")
    assert not short.passed
    assert short.summary == "the preheader is not in the HTML"
    html = good.html.replace(good.preheader, "Too short")
    result = _result(replace(good, preheader="Too short", html=html), "preheader")
    assert result.summary == "preheader is 9 characters"


def test_contrast_is_checked_in_both_schemes(good: ComposedEmail) -> None:
    from digest.email.checks import contrast

    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert _result(good, "contrast").ok
    pale = good.html.replace("color:#57606a", "color:#c8c8c8", 1)
    light = _result(replace(good, html=pale), "contrast")
    assert not light.passed
    assert light.problems[0].startswith("light: #c8c8c8 on #")
    dim = good.html.replace("color: #b1bac4 !important", "color: #30363d !important")
    dark = _result(replace(good, html=dim), "contrast")
    assert [p.split(" (")[0] for p in dark.problems] == ["dark: #30363d", "dark: #30363d"]
    bare = good.html.replace('<meta name="color-scheme" content="light dark">', "")
    assert _result(replace(good, html=bare), "contrast").problems == (
        "dark: no color-scheme meta or prefers-color-scheme: dark rules; clients invert the "
        "colours on their own",
    )


def test_a_long_subject_is_a_warning(good: ComposedEmail) -> None:
    assert _result(good, "subject").ok
    long = _result(replace(good, subject="x" * 71), "subject")
    assert (long.ok, long.passed, long.level) == (False, True, "warning")
    assert long.summary == "subject is 71 characters"
