"""Cron expressions in the config, checked when the config is read."""

from __future__ import annotations

from datetime import datetime

CRON_EXAMPLE = '"0 9 * * MON" (minute hour day-of-month month day-of-week)'


def check_cron(expression: str) -> str:
    """Validate a cron expression; return it tidied, or raise ValueError saying how to fix it.

    Five fields (minute hour day-of-month month day-of-week), or six with seconds first
    (``*/10 * * * * *``), or an alias such as ``@weekly``.
    """
    # croniter is imported here, not at the top: only a config with a schedule pays for it.
    from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

    text = " ".join(expression.split())
    fields = text.split(" ")
    if not text.startswith("@") and len(fields) not in (5, 6):
        raise ValueError(
            f"'{expression}' has {len(fields)} field{'s' if len(fields) != 1 else ''}; "
            f"a cron expression has five, such as {CRON_EXAMPLE}, or six with seconds first"
        )
    try:
        iterator = croniter(text, datetime(2000, 1, 1), second_at_beginning=True)
        iterator.get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(
            f"'{expression}' never happens (no date matches it); "
            f"use a date that exists, such as {CRON_EXAMPLE}"
        ) from None
    except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
        raise ValueError(
            f"'{expression}' is not a cron expression ({exc}); write one such as {CRON_EXAMPLE}"
        ) from None
    return text
