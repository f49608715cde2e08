"""How a scheduled run sends its issue: in this process, or from ``--workers N`` processes.

``digest run --workers N`` and ``digest schedule --workers N`` send each due issue (each
wave, with ``schedule.local_time``) the way ``digest send --workers N`` does
(:mod:`digest.delivery.workers`): this process queues the rows the run reaches, then N
processes lease and send them from the one ledger. The pre-send checks gate the queueing,
so a failed check fails the run before anything is queued.

A stop (SIGTERM, Ctrl-C) with workers ends the worker processes at once: the rows they held
are settled by the next run, as after a crash (the ledger's leases, docs/sending.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime

from digest.config import Config
from digest.delivery.deliverability import CheckedComposer
from digest.delivery.send import send_issue
from digest.delivery.send_report import Progress, SendReport
from digest.delivery.workers import send_in_processes


def send_scheduled(
    config: Config,
    *,
    workers: int,
    now: datetime,
    week: str,
    progress: Progress,
    clock: Callable[[], datetime],
    due_by: datetime | None,
) -> SendReport:
    """Send ``week`` (an issue id) as a scheduled run does: to the readers due by
    ``due_by`` who have not had it (``schedule.local_time``), else to every active reader;
    from ``workers`` processes when more than one."""
    composer = CheckedComposer(gated=True)  # a failed pre-send check fails the run
    # each wave queues the readers it reaches; the first wave completes the issue
    local = due_by is not None
    send = send_issue if workers <= 1 else functools.partial(send_in_processes, workers=workers)
    return send(
        config,
        now=now,
        week=week,
        progress=progress,
        clock=clock,
        composer=composer,
        new_subscribers=local,
        due_by=due_by,
    )
