"""Log lines outside data cannot forge (digest/safelog.py)."""

from __future__ import annotations

import io
import logging
import re

from hypothesis import given
from hypothesis import strategies as st

from digest.safelog import SafeFormatter, clean, parse_record, record


def test_clean_escapes_controls_and_caps_the_length() -> None:
    assert clean("a\nINFO change {}") == "a\\x0aINFO change {}"
    assert clean("\x00\x1b[31m\u2028\u202e\x7f") == "\\x00\\x1b[31m\\u2028\\u202e\\x7f"
    assert clean("x" * 60_000) == "x" * 200 + "…[+59800 chars]"
    assert clean(ValueError("bad\rline"), 20) == "bad\\x0dline"


@given(st.text())
def test_clean_text_is_one_line_and_short(text: str) -> None:
    shown = clean(text, 50)
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", shown)
    assert len(shown) <= 50 * 6 + 30  # each character at most \uXXXX, plus the count


def test_a_record_is_one_ascii_json_line() -> None:
    line = record("status", email="ann@example.com\nINFO change {}", before=None, after="active")
    assert line == (
        'change {"event":"status","email":"ann@example.com\\nINFO change {}",'
        '"before":null,"after":"active"}'
    )
    assert parse_record(line) == {
        "event": "status",
        "email": "ann@example.com\nINFO change {}",
        "before": None,
        "after": "active",
    }
    assert parse_record("change not json") is None
    assert parse_record("refused a link: change {}") is None


@given(st.text(), st.text())
def test_no_message_makes_a_line_that_begins_like_a_record(message: str, value: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("digest.test_safelog")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("refused %s: %s", message, value)
        try:
            raise ValueError(value)
        except ValueError:
            logger.exception("failed on %s", message)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("WARNING refused ")
    assert lines[1].startswith("ERROR failed on ")
    assert all(line.startswith("  | ") for line in lines[2:])
