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


def test_record_fields_are_capped_lists_kept_and_other_values_shown_as_text() -> None:
    from datetime import datetime, timezone

    from digest.safelog import MAX_VALUE

    data = parse_record(
        record(
            "import",
            rows=[f"r{n}" for n in range(60)],
            path=("a", 1, None),
            at=datetime(2026, 11, 23, tzinfo=timezone.utc),
            reason="x" * (MAX_VALUE + 5),
        )
    )
    assert data is not None
    assert data["rows"] == [f"r{n}" for n in range(50)]  # at most 50 items
    assert data["path"] == ["a", 1, None]
    assert data["at"] == "2026-11-23 00:00:00+00:00"
    assert data["reason"] == "x" * MAX_VALUE + "…[+5]"


def test_a_stack_in_a_log_line_is_indented_and_escaped() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("digest.test_safelog.stack")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("here\nchange {}", stack_info=True)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "WARNING here\\x0achange {}"
    assert len(lines) > 2 and all(line.startswith("  | ") for line in lines[1:])


def test_install_gives_the_root_handlers_the_safe_format_and_logs_changes() -> None:
    from digest.safelog import install

    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    bare = logging.StreamHandler(io.StringIO())  # no formatter of its own
    changes = logging.getLogger("digest.changes")
    level = changes.level
    formatters = {h: h.formatter for h in root.handlers}  # pytest's own, put back after
    root.addHandler(handler)
    root.addHandler(bare)
    try:
        changes.setLevel(logging.WARNING)
        install()
        assert isinstance(handler.formatter, SafeFormatter)
        assert handler.formatter._fmt == "%(name)s: %(message)s"  # its format is kept
        assert isinstance(bare.formatter, SafeFormatter)
        assert changes.getEffectiveLevel() == logging.INFO
    finally:
        root.removeHandler(handler)
        root.removeHandler(bare)
        changes.setLevel(level)
        for other, formatter in formatters.items():
            other.setFormatter(formatter)
