"""The pre-send report: size as sent, largest images, text-to-image ratio, link count,
spam-trigger phrases in the subject, the postal address; in `digest check --email`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from click.testing import CliRunner

from digest.cli import main
from digest.email.presend import presend_checks, spam_phrases
from tests.test_smtp import composed

ADDRESS = "Field Notes, 12 Example Street, 10115 Berlin"


def _email(html: str, subject: str = "Weekly notes", text: str = "") -> object:
    return dataclasses.replace(composed(), html=html, subject=subject, text=text)


def _by_name(items: list) -> dict:  # type: ignore[type-arg]
    return {c.name: c for c in items}


def test_spam_phrases() -> None:
    assert spam_phrases("Weekly notes: three posts") == []
    assert spam_phrases("FREE cash inside!! Act now") == ["free", "act now", "cash", "!!", "FREE"]
    assert spam_phrases("Freedom of information") == []  # words, not parts of words


def test_report_items() -> None:
    body = "<p>" + "word " * 30 + '</p><a href="https://a.example/1">a</a>'
    html = f'<html><body>{body}<img src="https://a.example/i.png"><img src="x"></body></html>'
    email = _email(html, subject="Win a FREE prize", text=f"footer\n{ADDRESS}\n")
    items = _by_name(
        presend_checks(email, ADDRESS, {"https://a.example/i.png": 204_800, "https://b/j": 1024})  # type: ignore[arg-type]
    )
    assert items["image-bytes"].summary == (
        "largest images: https://a.example/i.png 200 KB, https://b/j 1 KB"
    )
    ratio = items["text-ratio"]
    assert (ratio.ok, ratio.level, ratio.summary) == (
        False,
        "warning",
        "151 characters of text, 2 images",
    )
    assert ratio.problems == ("75 characters per image",)
    assert items["link-count"].summary == "1 distinct links"
    assert (items["subject-words"].ok, items["subject-words"].problems) == (
        False,
        ("'free'", "'FREE'"),
    )
    assert items["postal-address"].ok
    missing = _by_name(presend_checks(email, "", None))  # type: ignore[arg-type]
    assert (missing["postal-address"].ok, missing["postal-address"].fix) == (
        False,
        "set sender.postal_address in config.yaml",
    )
    assert missing["image-bytes"].summary == "images not fetched (the link check did not run)"


def test_in_check_email(sample_site: Path) -> None:
    args = ["--config", str(sample_site / "config.yaml"), "check", "--email", "--offline"]
    result = CliRunner().invoke(main, [*args, "--week", "2026-W47"])
    assert result.exit_code == 0, result.output
    report = result.output.split("pre-send report:\n", 1)[1].splitlines()
    assert [line.split(":")[0].split()[-1] for line in report] == [
        "sent-size",
        "image-bytes",
        "text-ratio",
        "link-count",
        "subject-words",
        "postal-address",
    ]
    assert report[1] == "  ok    image-bytes: images not fetched (the link check did not run)"
    assert report[5] == "  ok    postal-address: the postal address is in the footer"
    assert "links:" not in result.output
