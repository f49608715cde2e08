"""JSON request bodies read with limits (digest/serve/jsonbody.py)."""

from __future__ import annotations

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
