"""Text for running ``digest run`` from cron, systemd or GitHub Actions.

Each generator returns the file(s) to install; nothing is written. All three call the same
idempotent ``digest run``, so a trigger that fires more often than the schedule (hourly) is
always correct: ``digest run`` sends only when an occurrence is due and not yet done.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from digest.config import Config
from digest.schedule.scheduler import Schedule

_DOW_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_DOW_INDEX = {name.lower(): i for i, name in enumerate(_DOW_NAMES)}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@dataclass(frozen=True)
class InstallFile:
    """One file to install: where it usually goes, and its text."""

    path: str
    text: str


def digest_command(digest_bin: str | None = None) -> list[str]:
    """The digest executable as an absolute path (cron and systemd search no virtualenv).

    ``digest_bin`` as given when it is a path; a bare name is looked up: beside this
    Python (the virtualenv's ``bin/``), then on ``$PATH``; failing both, this Python
    with ``-m digest``.
    """
    if digest_bin and ("/" in digest_bin or os.sep in digest_bin):
        return [str(Path(digest_bin).expanduser().resolve())]
    name = digest_bin or "digest"
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which(name)
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "digest"]


def _command(config: Config, digest_bin: str | None, *, each: bool = False) -> str:
    """``digest --config FILE run``; with ``each`` and several newsletters, the command
    names the config's newsletter (a crontab has one line per newsletter)."""
    source = (config.source or Path("config.yaml")).resolve()
    program = " ".join(shlex.quote(part) for part in digest_command(digest_bin))
    chosen = (
        f" --newsletter {shlex.quote(config.newsletter_name)}"
        if each and len(config.newsletter_names) > 1
        else ""
    )
    return f"{program} --config {shlex.quote(str(source))}{chosen} run"


def _poll_minutes(grace: timedelta) -> int:
    """How often a polling trigger must fire so no occurrence slips past the grace period."""
    half = max(1, int(grace.total_seconds() // 120))  # half the grace, in minutes
    for step in (60, 30, 20, 15, 10, 5, 1):
        if step <= half:
            return step
    return 1


def _five_fields(schedule: Schedule) -> list[str] | None:
    text = _ALIASES.get(schedule.cron.lower(), schedule.cron)
    fields = text.split()
    return fields if len(fields) == 5 else None


def _poll_cron(minutes: int) -> str:
    return "7 * * * *" if minutes == 60 else f"*/{minutes} * * * *"


def crontab(config: Config, *, digest_bin: str | None = None) -> InstallFile:
    """A crontab entry. Uses CRON_TZ when the schedule is plain cron; also gives the
    polling line for crons that ignore CRON_TZ (Debian's, busybox's)."""
    schedule = Schedule.from_config(config)
    command = _command(config, digest_bin, each=True)
    log_file = shlex.quote(str(config.path(Path("data/digest-run.log"))))
    minutes = _poll_minutes(config.schedule.grace)
    line = f"{command} >> {log_file} 2>&1"
    fields = _five_fields(schedule)
    head = (
        f"# digest: send the issue on {schedule.cron!r} in {schedule.tz.key}.\n"
        "# `digest run` is idempotent: it sends only what is due and not yet sent, so it is\n"
        "# safe to call more often than the schedule.\n"
    )
    if fields is None:
        body = (
            f"# {schedule.cron!r} has a seconds field, which cron cannot express:\n"
            f"# poll every minute instead.\n* * * * * {line}\n"
        )
    else:
        body = (
            f"CRON_TZ={schedule.tz.key}\n{' '.join(fields)} {line}\n"
            "# If your cron ignores CRON_TZ (Debian's and busybox's do), use this line instead;\n"
            f"# it polls every {minutes} minutes, within schedule.grace "
            f"({_grace(config.schedule.grace)}):\n"
            f"# {_poll_cron(minutes)} {line}\n"
        )
    return InstallFile("crontab -e", head + body)


def _grace(grace: timedelta) -> str:
    seconds = int(grace.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def _calendar_part(field: str, lo: int, hi: int, names: dict[str, int] | None = None) -> str | None:
    """One cron field as systemd calendar syntax, or None when it has no equivalent."""
    if field == "*":
        return "*"
    out: list[str] = []
    for part in field.split(","):
        step_match = re.fullmatch(r"(\*|\d+)/(\d+)", part)
        if step_match:
            start = lo if step_match.group(1) == "*" else int(step_match.group(1))
            out.append(f"{start:02d}/{int(step_match.group(2))}")
            continue
        range_match = re.fullmatch(r"(\w+)-(\w+)", part)
        if range_match:
            a, b = (_number(x, names) for x in range_match.groups())
            if a is None or b is None or not lo <= a <= b <= hi:
                return None
            out.append(f"{a:02d}..{b:02d}")
            continue
        value = _number(part, names)
        if value is None or not lo <= value <= hi:
            return None
        out.append(f"{value:02d}")
    return ",".join(out)


def _number(text: str, names: dict[str, int] | None) -> int | None:
    if text.isdigit():
        return int(text)
    if names is not None:
        return names.get(text.lower()[:3])
    return None


def _weekdays(field: str) -> str | None:
    """The day-of-week field in systemd's form ("Mon..Fri", "Sat,Sun"; "" for every day).

    systemd's week runs Monday to Sunday and its ranges cannot wrap, while cron counts
    Sunday as 0 (and 7): cron's ``0-5`` is ``Mon..Fri,Sun`` and ``0-7`` every day.
    """
    if field == "*":
        return ""
    days: list[str] = []
    every: set[int] = set()
    for part in field.split(","):
        match = re.fullmatch(r"(\w+)(?:-(\w+))?", part)
        if not match:
            return None
        a = _number(match.group(1), _DOW_INDEX)
        b = _number(match.group(2), _DOW_INDEX) if match.group(2) else a
        if a is None or b is None or not 0 <= a <= b <= 7:
            return None
        chosen = {day % 7 for day in range(a, b + 1)}
        every |= chosen
        monday_first = [day for day in (1, 2, 3, 4, 5, 6, 0) if day in chosen]
        runs: list[list[int]] = []
        for day in monday_first:
            if runs and (runs[-1][-1] + 1) % 7 == day and runs[-1][-1] != 0:
                runs[-1].append(day)
            else:
                runs.append([day])
        for run in runs:
            first, last = _DOW_NAMES[run[0]], _DOW_NAMES[run[-1]]
            days.append(first if len(run) == 1 else f"{first}..{last}")
    if len(every) == 7:
        return ""
    return ",".join(days) + " "


def on_calendar(schedule: Schedule) -> str | None:
    """The systemd ``OnCalendar=`` for a cron schedule, or None when it has none."""
    fields = _five_fields(schedule)
    if fields is None:
        return None
    minute, hour, dom, month, dow = fields
    if dom != "*" and dow != "*":
        return None  # cron ORs the two day fields; systemd ANDs them
    parts = (
        _calendar_part(minute, 0, 59),
        _calendar_part(hour, 0, 23),
        _calendar_part(dom, 1, 31),
        _calendar_part(month, 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
        _weekdays(dow),
    )
    if any(p is None for p in parts):
        return None
    m, h, d, mo, days = parts
    return f"{days}*-{mo}-{d} {h}:{m}:00 {schedule.tz.key}"


def systemd(config: Config, *, digest_bin: str | None = None) -> list[InstallFile]:
    """A oneshot service and the timer that starts it."""
    schedule = Schedule.from_config(config)
    calendar = on_calendar(schedule)
    root = config.root
    minutes = _poll_minutes(config.schedule.grace)
    poll = "hourly" if minutes == 60 else f"*:00/{minutes}"
    if calendar is None:
        calendars = [poll]
        why = (
            f"# {schedule.cron!r} has no OnCalendar equivalent, so the timer polls and\n"
            "# `digest run` decides (it is idempotent).\n"
        )
    else:
        calendars = [calendar, poll]
        why = (
            "# The first OnCalendar= fires at the schedule's own times; the second retries a\n"
            "# failed or interrupted send (`digest run` does nothing when nothing is due).\n"
            "# Persistent= catches up after downtime, within schedule.grace.\n"
        )
    service = (
        "# /etc/systemd/system/digest-run.service\n"
        "[Unit]\n"
        "Description=Send the newsletter digest when it is due (digest run)\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"WorkingDirectory={root}\n"
        f"ExecStart={_command(config, digest_bin)}\n"
        "# Provider tokens and DIGEST_SECRET: KEY=value lines, readable only by root.\n"
        "EnvironmentFile=-/etc/digest/env\n"
        "# SIGTERM lets the send stop at a safe point; the next run resumes it.\n"
        "TimeoutStopSec=120\n"
        "# Exit 5 (nothing to send) is not a failure.\n"
        "SuccessExitStatus=5\n"
    )
    timer = (
        "# /etc/systemd/system/digest-run.timer\n"
        f"{why}"
        "# Enable with: systemctl daemon-reload && systemctl enable --now digest-run.timer\n"
        "[Unit]\n"
        "Description=Run digest on its schedule\n\n"
        "[Timer]\n" + "".join(f"OnCalendar={c}\n" for c in calendars) + "Persistent=true\n"
        "RandomizedDelaySec=0\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return [
        InstallFile("/etc/systemd/system/digest-run.service", service),
        InstallFile("/etc/systemd/system/digest-run.timer", timer),
    ]


def _relative(config: Config, path: Path) -> str:
    full = config.path(path)
    try:
        return str(full.relative_to(config.root))
    except ValueError:
        return str(full)


def _secret_env(config: Config) -> list[str]:
    names: list[str] = []
    for value in config.provider.options().values():
        match = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", str(value).strip())
        if match:
            names.append(match.group(1))
    if config.serve.secret is not None:
        names.append(config.serve.secret.env_var)
    if "DIGEST_SECRET" not in names:
        names.append("DIGEST_SECRET")
    return names


def github_actions(config: Config) -> InstallFile:
    """A workflow that runs ``digest run`` hourly, keeping the state in the Actions cache."""
    schedule = Schedule.from_config(config)
    config_file = _relative(config, config.source or Path("config.yaml"))
    state = sorted(
        {
            _relative(config, config.subscribers.database),
            _relative(config, config.ledger.database),
            *(
                _relative(config, config.for_newsletter(name).schedule.database)
                for name in config.newsletter_names
            ),
            _relative(config, config.path(config.content.feeds_dir)),
        }
    )
    state_paths = "\n".join(f"            {p}" for p in state)
    secrets = "\n".join(f"      {n}: ${{{{ secrets.{n} }}}}" for n in _secret_env(config))
    text = f"""\
# .github/workflows/digest.yml
# Sends the digest on {schedule.cron!r} ({schedule.tz.key}).
#
# GitHub's cron is UTC and may start late, so the workflow runs hourly and `digest run`
# decides: it sends only when an occurrence is due (within schedule.grace) and the issue
# has not gone out, so DST and delays need no care here.
#
# State: the subscriber store, the send ledger and the runs table must survive between
# runs, or digest cannot know what was already sent. This workflow keeps them in the
# Actions cache, which is best-effort: GitHub evicts entries unused for 7 days or over
# the size limit. Keeping them is your responsibility: back them up (or store them
# somewhere durable) and see docs/schedule.md before relying on this.
name: digest

on:
  schedule:
    - cron: "7 * * * *"
  workflow_dispatch: {{}}

# Never two runs at once: the file lock does not reach across runners.
concurrency:
  group: digest-send
  cancel-in-progress: false

jobs:
  run:
    runs-on: ubuntu-latest
    timeout-minutes: 60
    env:
      DIGEST_CONFIG: {config_file}
{secrets}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - run: pip install digest  # pin the version you tested with
      - name: Restore the ledger and subscriber store
        uses: actions/cache/restore@v4
        with:
          path: |
{state_paths}
          key: digest-state-${{{{ github.run_id }}}}
          restore-keys: digest-state-
      - name: Send whatever is due
        run: digest run
      - name: Save the ledger and subscriber store
        if: always()
        uses: actions/cache/save@v4
        with:
          path: |
{state_paths}
          key: digest-state-${{{{ github.run_id }}}}
"""
    return InstallFile(".github/workflows/digest.yml", text)
