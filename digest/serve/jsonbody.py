"""JSON request bodies, read with limits: a bad body is a short 400 reason, never a 500.

Python's ``json`` module recurses once per nesting level (a body of 100,000 ``[`` raises
RecursionError) and turns a 10,000-digit number into an int that costs seconds to convert.
:func:`loads_bounded` refuses both before decoding: nesting deeper than ``max_depth``,
numbers longer than :data:`MAX_NUMBER_CHARS`, ``NaN``/``Infinity``, and text that is not
UTF-8. Every refusal is a :class:`BadJson` whose message is safe to send to the client.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

MAX_NUMBER_CHARS = 30
"""The longest number a body may hold (digits, sign, point and exponent)."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class BadJson(ValueError):
    """A body that is not JSON within the limits; ``str()`` is the reason for the client."""


def _refuse(reason: str) -> NoReturn:
    raise BadJson(reason)


def _number(text: str, kind: type[Any]) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        _refuse(f"a number longer than {MAX_NUMBER_CHARS} characters")
    return kind(text)


def _constant(name: str) -> Any:
    _refuse(f"{name} is not a JSON number")


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets inside strings do
    not count). Linear, with no recursion."""
    deepest = level = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def loads_bounded(body: bytes, *, max_depth: int = 32) -> Any:
    """The JSON value in ``body``; raises :class:`BadJson` with a short reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _refuse("the body is not UTF-8 text")
    # most bodies hold fewer brackets than the limit: nothing to scan
    if text.count("[") + text.count("{") > max_depth and depth(text) > max_depth:
        _refuse(f"the JSON is nested deeper than {max_depth} levels")
    try:
        return json.loads(
            text,
            parse_int=lambda t: _number(t, int),
            parse_float=lambda t: _number(t, float),
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        _refuse(f"the body is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
    except RecursionError:  # pragma: no cover - depth() keeps it from happening
        _refuse("the JSON is nested too deeply")


def text_field(data: dict[str, Any], key: str, *, limit: int, required: bool = False) -> str:
    """``data[key]`` as text of at most ``limit`` characters ('' when absent or null)."""
    value = data.get(key)
    if value is None:
        if required:
            _refuse(f"'{key}' is missing")
        return ""
    if not isinstance(value, str):
        _refuse(f"'{key}' must be a string")
    if len(value) > limit:
        _refuse(f"'{key}' is longer than {limit} characters")
    return value


def text_list(data: dict[str, Any], key: str, *, most: int, limit: int) -> list[str]:
    """``data[key]`` as a list of at most ``most`` strings ([] when absent or null)."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _refuse(f"'{key}' must be a list of strings")
    if len(value) > most:
        _refuse(f"'{key}' has more than {most} items")
    if any(len(v) > limit for v in value):
        _refuse(f"an item of '{key}' is longer than {limit} characters")
    return list(value)
