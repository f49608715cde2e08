"""Sending: the per-variant wire template against the reference message, and the send loop
through the outbox (resume, limits, dry run, refusals, failures, preferences, tokens)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from digest import build
from digest.compose import ComposedEmail, WireTemplate, qp_lines, to_message
from digest.config import load_config
from digest.providers.base import WIRE_POLICY
from digest.providers.smtp import _data_bytes

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- wire template


@pytest.fixture(scope="module")
def composed() -> ComposedEmail:
    config = load_config(ROOT / "config.yaml")
    result = build.build_issue(config, now=NOW, week="2026-W47", write=False)
    email: ComposedEmail = result.composed
    return email


def _values(name: str, url_tail: str = "tok") -> dict[str, str]:
    return {
        "name": name,
        "unsubscribe_url": f"https://fieldnotes.example.com/unsubscribe/{url_tail}",
        "preferences_url": f"https://fieldnotes.example.com/preferences/{url_tail}",
    }


RECIPIENTS = [
    ("ada@example.com", _values("Ada"), "<2026-W47.a1@fieldnotes.example.com>"),
    (
        "Zoë Ünïcode-Ça <zoe+news@example.org>",
        _values("Zoë Ünïcode-Ça", "zo%C3%AB"),
        "<2026-W47.b2@fieldnotes.example.com>",
    ),
    ("long@example.net", _values("Long", "x" * 400), "<2026-W47.c3@fieldnotes.example.com>"),
    ("esc@example.com", _values('<b>"Tom" & Jerry</b>'), "<2026-W47.d4@fieldnotes.example.com>"),
    ("noname@example.com", _values(""), "<2026-W47.e5@fieldnotes.example.com>"),
]


def _parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _assert_same_message(fast: bytes, reference: bytes) -> None:
    got, want = _parse(fast), _parse(reference)
    assert not got.defects and not want.defects
    names = [k for k, _ in want.items()]
    assert [k for k, _ in got.items()] == names
    for name in names:
        if name == "Content-Type":
            assert got.get_content_type() == want.get_content_type() == "multipart/alternative"
            continue
        assert str(got[name]) == str(want[name]), name
    got_parts, want_parts = list(got.iter_parts()), list(want.iter_parts())
    assert len(got_parts) == len(want_parts) == 2
    for g, w in zip(got_parts, want_parts, strict=True):
        assert g.items() == w.items()
        assert g.get_content() == w.get_content()
    # Wire form: CRLF only, no line over 998, body lines within the RFC 2045 limit of 76.
    assert b"\n" not in fast.replace(b"\r\n", b"") and b"\r" not in fast.replace(b"\r\n", b"")
    head, _, body = fast.partition(b"\r\n\r\n")
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert fast.isascii()


@pytest.mark.parametrize(("to", "values", "message_id"), RECIPIENTS)
def test_wire_template_matches_to_message(
    composed: ComposedEmail, to: str, values: dict[str, str], message_id: str
) -> None:
    template = WireTemplate(composed, date=NOW)
    fast = template.render(to=to, values=values, message_id=message_id)
    reference = to_message(composed, to=to, values=values, message_id=message_id, date=NOW)
    _assert_same_message(fast, reference.as_bytes(policy=WIRE_POLICY))
    html = _parse(fast).get_body(("html",))
    assert html is not None
    content = html.get_content()
    assert values["unsubscribe_url"] in content
    assert "[[digest:" not in content


def test_wire_template_encodes_a_non_ascii_display_name(composed: ComposedEmail) -> None:
    template = WireTemplate(composed, date=NOW)
    to, values, message_id = RECIPIENTS[1]
    fast = template.render(to=to, values=values, message_id=message_id)
    to_line = next(line for line in fast.split(b"\r\n") if line.startswith(b"To: "))
    assert to_line == b"To: =?utf-8?b?Wm/DqyDDnG7Dr2NvZGUtw4dh?= <zoe+news@example.org>"
    assert str(_parse(fast)["To"]) == "Zoë Ünïcode-Ça <zoe+news@example.org>"


def test_wire_template_with_markers_in_the_subject_and_awkward_text(
    composed: ComposedEmail,
) -> None:
    odd = dataclasses.replace(
        composed,
        subject="Für [[digest:name]] — die Wöche in " + "sehr langen Worten " * 6,
        text=(
            "trailing space \n.leading dot\n"
            + "x" * 200
            + "\r\nCR only\rtab\t\nHi [[digest:name]] \nend = [[digest:email]]"
        ),
        html=composed.html.replace("<body", "<body data-x='=[[digest:name]]='", 1),
    )
    template = WireTemplate(odd, date=NOW)
    for to, values, message_id in RECIPIENTS:
        fast = template.render(to=to, values=values, message_id=message_id)
        reference = to_message(odd, to=to, values=values, message_id=message_id, date=NOW)
        _assert_same_message(fast, reference.as_bytes(policy=WIRE_POLICY))
    ada = _parse(template.render(to="ada@example.com", values=_values("Ada"), message_id="<a@b>"))
    assert str(ada["Subject"]).startswith("Für Ada — die Wöche")


def test_wire_template_boundary_is_fixed_per_variant(composed: ComposedEmail) -> None:
    template = WireTemplate(composed, date=NOW)
    first = _parse(template.render(to="a@example.com", values=_values("A"), message_id="<1@x>"))
    second = _parse(template.render(to="b@example.com", values=_values("B"), message_id="<2@x>"))
    assert first.get_boundary() == second.get_boundary()
    assert str(first.get_boundary()).startswith("=_digest_")
    other = WireTemplate(dataclasses.replace(composed, html=composed.html + " "), date=NOW)
    third = _parse(other.render(to="a@example.com", values=_values("A"), message_id="<1@x>"))
    assert third.get_boundary() != first.get_boundary()


def test_qp_lines_follows_rfc_2045() -> None:
    assert qp_lines("a = b\n") == b"a =3D b\r\n"
    assert qp_lines("end space \nend tab\t") == b"end space=20\r\nend tab=09\r\n"
    assert qp_lines("é\r\n.dot") == b"=C3=A9\r\n.dot\r\n"
    long = qp_lines("y" * 100)
    assert long == b"y" * 75 + b"=\r\n" + b"y" * 25 + b"\r\n"


def test_smtp_data_bytes_fast_path_matches_the_general_one() -> None:
    crlf = b"From: a\r\n\r\n.one\r\ntwo\r\n..three\r\n"
    assert _data_bytes(crlf) == b"From: a\r\n\r\n..one\r\ntwo\r\n...three\r\n"
    assert _data_bytes(b".x\r\ny") == b"..x\r\ny\r\n"
    assert _data_bytes(b"a\n.b\rc") == b"a\r\n..b\r\nc\r\n"
