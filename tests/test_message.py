"""Properties of the per-recipient message (digest.email.message), tokens and rate-limit
headers, over generated inputs (hypothesis)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.audience.tokens import (
    PURPOSES,
    Subject,
    TokenError,
    handle_of,
    make_token,
    verify_token,
)
from digest.delivery.providers.base import WIRE_POLICY
from digest.delivery.providers.http import parse_rate_limit
from digest.email import message
from digest.email.message import (
    MARKER,
    WireTemplate,
    fill,
    marker_names,
    qp_lines,
    rewrite,
    sent_bytes,
    to_message,
)
from tests.helpers import composed

from .test_send import _assert_same_message

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
FIELD_NOTES = "Field Notes <news@fieldnotes.example.com>"
ONE_CLICK = {
    "List-Unsubscribe": "<[[digest:unsubscribe_url]]>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}

# Text a person could type: no control characters, no lone surrogates.
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), max_codepoint=0x2FFF), max_size=80
)
WORDS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), max_codepoint=0x2FFF),
    min_size=1,
    max_size=60,
).filter(lambda s: s.strip() == s and "  " not in s)
NAMES = st.sampled_from(["name", "email", "unsubscribe_url", "preferences_url", "other_1"])


@pytest.mark.slow  # seconds of work even alone: outside the fast lane
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=WORDS,
    name=TEXT,
    lines=st.lists(TEXT, min_size=1, max_size=8),
    url_tail=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=300),
)
def test_wire_bytes_equal_what_the_email_package_writes(
    subject: str, name: str, lines: list[str], url_tail: str
) -> None:
    body = "\n".join(lines)
    html = f'<p>Hi [[digest:name]]</p>\n<p>{body}</p>\n<a href="[[digest:unsubscribe_url]]">x</a>'
    text = f"Hi [[digest:name]]\n{body}\nUnsubscribe: [[digest:unsubscribe_url]]"
    email = composed(subject, html, text, sender=FIELD_NOTES, headers=ONE_CLICK)
    values = {"name": name, "unsubscribe_url": f"https://example.com/unsubscribe/{url_tail}"}
    fast = WireTemplate(email, date=NOW).render(
        to="reader@example.org", values=values, message_id="<m1@fieldnotes.example.com>"
    )
    reference = to_message(
        email,
        to="reader@example.org",
        values=values,
        message_id="<m1@fieldnotes.example.com>",
        date=NOW,
    )
    _assert_same_message(fast, reference.as_bytes(policy=WIRE_POLICY))


@given(text=TEXT, values=st.dictionaries(NAMES, TEXT, max_size=5), html=st.booleans())
def test_fill_leaves_no_marker_and_escapes_only_html(
    text: str, values: dict[str, str], html: bool
) -> None:
    template = f"{text}[[digest:name]]|[[digest:other_1]]|[[digest:missing]]"
    filled = fill(template, values, html=html)
    assert MARKER.search(filled) is None or MARKER.search(text + "".join(values.values()))
    name = values.get("name", "")
    if html:
        assert "&" not in name or "&amp;" in filled
    else:
        assert filled == f"{text}{name}|{values.get('other_1', '')}|"


@given(names=st.lists(NAMES, max_size=6))
def test_marker_names_and_rewrite_agree(names: list[str]) -> None:
    text = " ".join(f"[[digest:{n}]]" for n in names)
    assert marker_names(text) == list(dict.fromkeys(names))
    assert rewrite(text, lambda n: "{{" + n + "}}") == " ".join("{{" + n + "}}" for n in names)


@settings(max_examples=80, deadline=None)
@given(
    secret=st.binary(min_size=16, max_size=64),
    purpose=st.sampled_from(PURPOSES),
    key=st.binary(min_size=16, max_size=64),
    hours=st.one_of(st.none(), st.integers(min_value=1, max_value=24 * 400)),
)
def test_tokens_round_trip_and_refuse_any_other_key_purpose_or_time(
    secret: bytes, purpose: str, key: bytes, hours: int | None
) -> None:
    expires = NOW + timedelta(hours=hours) if hours is not None else None
    handle = handle_of(secret)
    token = make_token(purpose, handle, key, expires_at=expires)
    assert verify_token(token, purpose, lambda e: key, now=NOW) == Subject(handle=handle)
    with pytest.raises(TokenError):
        verify_token(token, purpose, lambda e: key + b"x", now=NOW)
    other = next(p for p in PURPOSES if p != purpose)
    with pytest.raises(TokenError):
        verify_token(token, other, lambda e: key, now=NOW)
    if expires is not None:
        with pytest.raises(TokenError):
            verify_token(token, purpose, lambda e: key, now=expires + timedelta(seconds=1))


@given(
    token=st.text(max_size=300),
    purpose=st.sampled_from(PURPOSES),
)
def test_any_string_is_a_token_error_never_a_crash(token: str, purpose: str) -> None:
    with pytest.raises(TokenError):  # nothing but a signed token verifies
        verify_token(token, purpose, lambda e: b"k" * 32, now=NOW)


@given(
    prefix=st.sampled_from(["RateLimit-", "X-RateLimit-", "X-Sib-RateLimit-"]),
    upper=st.booleans(),
    limit=st.integers(min_value=1, max_value=100_000),
    remaining=st.integers(min_value=0, max_value=100_000),
    reset=st.integers(min_value=0, max_value=86_400),
    epoch=st.booleans(),
    retry=st.one_of(st.none(), st.integers(min_value=0, max_value=3600)),
)
def test_rate_limit_headers_of_every_family(
    prefix: str,
    upper: bool,
    limit: int,
    remaining: int,
    reset: int,
    epoch: bool,
    retry: int | None,
) -> None:
    now = 1_800_000_000.0
    name = prefix.upper() if upper else prefix.lower()
    headers = {
        f"{name}Limit": f"{limit}, {limit};w=60",
        f"{name}Remaining": str(remaining),
        f"{name}Reset": str(int(now) + reset if epoch else reset),
    }
    if retry is not None:
        headers["Retry-After"] = str(retry)
    parsed = parse_rate_limit(httpx.Headers(headers), now=now)
    assert parsed.limit == limit
    assert parsed.remaining == remaining
    assert parsed.reset_after == pytest.approx(reset)
    assert parsed.retry_after == (None if retry is None else float(retry))


def test_a_composed_email_is_immutable() -> None:
    email = composed("s", "h", "t", sender=FIELD_NOTES, headers=ONE_CLICK)
    with pytest.raises(dataclasses.FrozenInstanceError):
        email.subject = "other"  # type: ignore[misc]


def test_a_variants_html_is_encoded_once_for_its_size_checks_and_its_wire_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    html = "<p>caf\u00e9 = " + "x" * 200 + "</p>\n" * 40 + "<a href='[[digest:unsubscribe_url]]'>"
    email = composed(html=html + "[[digest:name]]</a>\n<p>end</p>")
    values = {"unsubscribe_url": "https://e.example/u?t=" + "t" * 90, "name": "<Ada & Co>"}
    encoded: list[int] = []
    real = message._qp

    def counting(lines: list[str]) -> bytes:
        encoded.append(len(lines))
        return real(lines)

    expected = len(qp_lines(fill(email.html, values, html=True)))
    monkeypatch.setattr(message, "_qp", counting)
    message.encoded_body.cache_clear()
    size = sent_bytes(email.html, values)
    assert size == expected
    static = sum(n for n in encoded if n > 1)  # runs of lines without markers
    assert static == 40
    assert sent_bytes(email.html, values) == size  # measured again: nothing encoded again
    wire = WireTemplate(email, date=NOW)
    assert wire.html is message.encoded_body(email.html, True)
    wire.render(to="ada@example.com", values=values, message_id="<1@example.com>")
    # after the first measure, only the lines with markers are encoded again
    assert sum(n for n in encoded if n > 1) == static
