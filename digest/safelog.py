"""Log lines that outside data cannot forge: escaped values and structured change records.

Two rules keep digest's logs trustworthy when they hold values from requests, tokens and
content files:

- :func:`clean` escapes control characters (a newline in a token cannot start a line of its
  own) and caps the length (a 60,000-character token writes 200 characters, not 45 KB).
- Every state change is logged by :func:`log_change` as one *record*: the word ``change``
  and a JSON object, ``change {"event":"status","email":"ann@example.com",...}``, on the
  logger ``digest.changes``. The JSON is ASCII-only, so no value can end the line early.

:class:`SafeFormatter` (installed by ``digest serve``) applies the same escaping to every
message of every logger, and indents the lines of a traceback, so that no line the service
writes can begin like a record unless it is one.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

MAX_VALUE = 200
"""The most characters of one outside value a log line shows."""

RECORD_PREFIX = "change "
changes = logging.getLogger("digest.changes")

# Every C0/C1 control, DEL, the Unicode line and paragraph separators and the bidirectional
# overrides: anything that could end a line or make it read differently.
_UNSAFE = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: object, limit: int = MAX_VALUE) -> str:
    """``value`` as text for a log line: control characters escaped, at most ``limit``
    characters of it (the rest counted, not shown)."""
    text = value if isinstance(value, str) else str(value)
    cut = text[:limit]
    shown = _UNSAFE.sub(_escape, cut)
    if len(text) > limit:
        shown += f"…[+{len(text) - limit} chars]"
    return shown


def _field(value: Any) -> Any:
    if isinstance(value, str):
        return value[:MAX_VALUE] + (
            f"…[+{len(value) - MAX_VALUE}]" if len(value) > MAX_VALUE else ""
        )
    if isinstance(value, (list, tuple)):
        return [_field(v) for v in value[:50]]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _field(str(value))


def record(event: str, **fields: Any) -> str:
    """One state change as a line: ``change {"event": …, …}`` (ASCII JSON, one line)."""
    data = {"event": event, **{k: _field(v) for k, v in fields.items()}}
    return RECORD_PREFIX + json.dumps(data, ensure_ascii=True, separators=(",", ":"))


def log_change(event: str, **fields: Any) -> None:
    """Log one state change on ``digest.changes`` (INFO)."""
    if changes.isEnabledFor(logging.INFO):
        changes.info("%s", record(event, **fields))


def parse_record(line: str) -> dict[str, Any] | None:
    """The record a log message holds (None when it is not one), for tools and tests."""
    if not line.startswith(RECORD_PREFIX):
        return None
    try:
        data = json.loads(line[len(RECORD_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and "event" in data else None


class SafeFormatter(logging.Formatter):
    """Formats like :class:`logging.Formatter`, with every message escaped (:func:`clean`,
    up to ``limit`` characters) and every traceback line indented by ``"  | "``."""

    def __init__(self, fmt: str | None = None, *, limit: int = 2000) -> None:
        super().__init__(fmt)
        self.limit = limit

    def formatMessage(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        safe.message = clean(record.message, self.limit)
        return super().formatMessage(safe)

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return "\n".join("  | " + clean(line, self.limit) for line in text.splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("  | " + clean(line, self.limit) for line in stack_info.splitlines())


def install(level_names: tuple[str, ...] = ("digest.serve", "digest.changes")) -> None:
    """Give every handler of the root logger a :class:`SafeFormatter` (keeping its format
    string) and make sure the named loggers log at INFO."""
    root = logging.getLogger()
    for handler in root.handlers:
        fmt = handler.formatter._fmt if handler.formatter is not None else None
        handler.setFormatter(SafeFormatter(fmt))
    for name in level_names:
        logger = logging.getLogger(name)
        logger.setLevel(min(logging.INFO, logger.getEffectiveLevel()))
