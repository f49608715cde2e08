"""JSON request bodies, read with limits: a bad body is a short 400 reason, never a 500.

Python's ``json`` module recurses once per nesting level (a body of 100,000 ``[`` raises
RecursionError) and turns a 10,000-digit number into an int that costs seconds to convert.
:func:`loads_bounded` refuses both before decoding: nesting deeper than ``max_depth``,
numbers longer than :data:`MAX_NUMBER_CHARS`, ``NaN``/``Infinity``, text that is not
UTF-8, and strings holding a lone surrogate (``"\\ud800"`` decodes to text that cannot be
written anywhere). Every refusal is a :class:`BadJson` whose message is safe to send to the
client.

Every step is linear in the body's length (a 1 MB body of any shape is read in well under a
second); routes still call it off the event loop, since a second is long for a server.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, NoReturn

MAX_NUMBER_CHARS = 30
"""The longest number a body may hold (digits, sign, point and exponent)."""

# One match per run of strings (each with the text up to the next bracket or quote). The
# quantifiers are possessive, and a string may also end at the end of the body, so a match
# that has started can neither backtrack nor fail: the scan reads each byte a bounded number
# of times, whatever the body holds (unterminated strings, a million escaped quotes).
_STRINGS = re.compile(rb'(?:"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)[^"\[\]{}]*+)++', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _byte in b"[{":
    _STEP[_byte] = 1
for _byte in b"]}":
    _STEP[_byte] = -1


class BadJson(ValueError):
    """A body that is not JSON within the limits; ``str()`` is the reason for the client."""


def _refuse(reason: str) -> NoReturn:
    raise BadJson(reason)


def _number(text: str, kind: type[Any]) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        _refuse(f"a number longer than {MAX_NUMBER_CHARS} characters")
    value = kind(text)
    if not math.isfinite(value):  # 1e999 reads as infinity
        _refuse(f"the number {text} is out of range")
    return value


def _constant(name: str) -> Any:
    _refuse(f"{name} is not a JSON number")


def depth(body: bytes | str) -> int:
    """The deepest nesting of arrays and objects in ``body`` (brackets inside strings do
    not count). Linear, with no recursion: strings are cut out in one pass (UTF-8 never
    uses a byte below 0x80 inside a longer character, so bytes are safe to scan), the
    brackets left are kept, and the running level is summed in C."""
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    brackets = _STRINGS.sub(b"", data).translate(None, _NOT_BRACKET)
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


def _lone_surrogate(value: Any) -> bool:
    """Whether any string in ``value`` (keys included) holds an unpaired surrogate."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def loads_bounded(body: bytes, *, max_depth: int = 32) -> Any:
    """The JSON value in ``body``; raises :class:`BadJson` with a short reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _refuse("the body is not UTF-8 text")
    # most bodies hold fewer brackets than the limit: nothing to scan
    if body.count(b"[") + body.count(b"{") > max_depth and depth(body) > max_depth:
        _refuse(f"the JSON is nested deeper than {max_depth} levels")
    try:
        value = json.loads(
            text,
            parse_int=lambda t: _number(t, int),
            parse_float=lambda t: _number(t, float),
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        _refuse(f"the body is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
    except RecursionError:  # pragma: no cover - depth() keeps it from happening
        _refuse("the JSON is nested too deeply")
    if "\\u" in text and _lone_surrogate(value):
        _refuse("the JSON holds a lone surrogate (\\ud800-\\udfff without its pair)")
    return value


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
