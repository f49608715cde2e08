"""JSON request bodies read with limits (digest/serve/jsonbody.py)."""

from __future__ import annotations

import contextlib
import time

import pytest

from digest.serve.jsonbody import BadJson, depth, loads_bounded, text_field, text_list


def test_a_good_body_is_read() -> None:
    assert loads_bounded(b'{"email": "a@example.com", "n": [1, 2.5, "]"]}') == {
        "email": "a@example.com",
        "n": [1, 2.5, "]"],
    }


def test_depth_ignores_brackets_in_strings() -> None:
    assert depth('{"a": "[[[[{{{{", "b": [[1]]}') == 3
    assert depth(r'["\"[[["]') == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100 + b"]" * 100, "the JSON is nested deeper than 32 levels"),
        (b"[" * 100_000, "the JSON is nested deeper than 32 levels"),
        (b'{"n": ' + b"9" * 10_000 + b"}", "a number longer than 30 characters"),
        (b"[1e999999999999999999999999999999]", "a number longer than 30 characters"),
        (b"[1e999]", "the number 1e999 is out of range"),
        (b"[NaN]", "NaN is not a JSON number"),
        (b"[-Infinity]", "-Infinity is not a JSON number"),
        (b'"\xff"', "the body is not UTF-8 text"),
        (b'{"a": 1', "the body is not JSON (line 1, column 8: Expecting ',' delimiter)"),
    ],
)
def test_bodies_past_the_limits_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(BadJson) as caught:
        loads_bounded(body)
    assert str(caught.value) == reason


def test_fields_of_the_wrong_type_are_refused_by_name() -> None:
    data = {"name": ["one"], "email": "a@example.com", "categories": ["a", 1]}
    with pytest.raises(BadJson, match="'name' must be a string"):
        text_field(data, "name", limit=200)
    with pytest.raises(BadJson, match="'email' is longer than 5 characters"):
        text_field(data, "email", limit=5)
    with pytest.raises(BadJson, match="'missing' is missing"):
        text_field(data, "missing", limit=5, required=True)
    with pytest.raises(BadJson, match="'categories' must be a list of strings"):
        text_list(data, "categories", most=5, limit=10)
    assert text_field({"name": None}, "name", limit=5) == ""
    assert text_list({}, "categories", most=5, limit=10) == []


# One request froze `digest serve`: the depth check's string pattern backtracked, so a 1 MB
# body of escaped quotes took minutes. Each shape below is read (or refused) within a budget
# a linear scan meets many times over; the old pattern needed ten seconds for 32 KB of the
# first one.
HOSTILE_MB = {
    "escaped quotes in an unclosed string": b"[" * 40 + b'"' + b'\\"' * 524_288,
    "empty arrays": b"[]," * 349_525,
    "empty strings": b'"",' * 349_525,
    "backslashes": b'["' + b"\\\\" * 524_000 + b'"]',
    "open brackets": b"[" * 1_000_000,
    "quotes": b'"' * 1_000_000,
    "strings between brackets": b'[""],' * 200_000,
    "a quote and a backslash": b'"\\' * 500_000,
}


@pytest.mark.parametrize("body", HOSTILE_MB.values(), ids=HOSTILE_MB.keys())
def test_one_request_freezes_digest_serve_depth_check_is_linear(body: bytes) -> None:
    started = time.process_time()  # this process's CPU time: other load does not count
    with contextlib.suppress(BadJson):
        loads_bounded(body, max_depth=32)
    assert time.process_time() - started < 1.0


def test_depth_of_hostile_shapes_is_exact() -> None:
    assert depth(HOSTILE_MB["escaped quotes in an unclosed string"]) == 40
    assert depth(HOSTILE_MB["open brackets"]) == 1_000_000
    assert depth(HOSTILE_MB["quotes"]) == 0
    assert depth(b'["\\') == 1  # a string cut off after a backslash
    assert depth(b'[{"a": "\\\\"}, ["]"]]') == 2
    assert depth('["\u00e9[", {}]') == 2


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "\\ud800"}',
        b'{"name": "x\\udfff"}',
        b'{"\\ud800": 1}',
        b'[[["ok", "\\ude00\\ud83d"]]]',
    ],
)
def test_500s_with_tracebacks_lone_surrogates_are_refused(body: bytes) -> None:
    with pytest.raises(BadJson) as caught:
        loads_bounded(body)
    assert str(caught.value) == "the JSON holds a lone surrogate (\\ud800-\\udfff without its pair)"


def test_a_surrogate_pair_is_one_character() -> None:
    assert loads_bounded(b'{"name": "\\ud83d\\ude00"}') == {"name": "\U0001f600"}
