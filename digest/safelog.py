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

:class:`RateLimit` (installed with it) keeps a flood of requests from becoming a flood of
log: lines of the same kind (logger, level and message template) beyond ``burst`` within
``interval`` seconds are counted, not written, and the next line of that kind written says
how many were left out. State-change records are never held back.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
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


class RateLimit(logging.Filter):
    """Lets at most ``burst`` records of one kind through per ``interval`` seconds; the
    first record let through after some were held back ends with ``[N more like this were
    not logged]``. A kind is the logger, the level and the message template (so ``"closed
    %s"`` with any value is one kind). Records on ``digest.changes`` always pass.

    ``clock`` returns seconds (monotonic); tests pass their own. Safe to call from threads.
    """

    def __init__(
        self,
        interval: float = 10.0,
        burst: int = 5,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 1000,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.burst = burst
        self.clock = clock
        self.max_kinds = max_kinds
        # kind -> [start of its interval, records let through in it, records held back]
        self._kinds: dict[tuple[str, int, str], list[float]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == changes.name:
            return True
        kind = (record.name, record.levelno, str(record.msg)[:200])
        now = self.clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is None or now - seen[0] >= self.interval:
                held = int(seen[2]) if seen is not None else 0
                if len(self._kinds) >= self.max_kinds:
                    self._kinds.clear()  # a flood of kinds: start counting again
                self._kinds[kind] = [now, 1, 0]
            elif seen[1] < self.burst:
                held = int(seen[2])
                seen[1] += 1
                seen[2] = 0
            else:
                seen[2] += 1
                return False
        if held:
            record.msg = f"{record.msg} [{held} more like this were not logged]"
        return True


def install(level_names: tuple[str, ...] = ("digest.serve", "digest.changes")) -> None:
    """Give every handler of the root logger a :class:`SafeFormatter` (keeping its format
    string) and a :class:`RateLimit`, and make sure the named loggers log at INFO."""
    root = logging.getLogger()
    for handler in root.handlers:
        fmt = handler.formatter._fmt if handler.formatter is not None else None
        handler.setFormatter(SafeFormatter(fmt))
        if not any(isinstance(f, RateLimit) for f in handler.filters):
            handler.addFilter(RateLimit())
    for name in level_names:
        logger = logging.getLogger(name)
        logger.setLevel(min(logging.INFO, logger.getEffectiveLevel()))
