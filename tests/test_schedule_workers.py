"""`digest run --workers N` and `digest schedule --workers N`: a due wave is queued by the
run and sent through the worker machinery of `digest send --workers` (which
tests/test_waves_kills.py runs for real, through SIGKILLs); here, what reaches it."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest.audience.rhythm import Rhythms
from digest.audience.subscribers import SubscriberStore
from digest.cli import main
from digest.delivery.deliverability import CheckedComposer
from digest.delivery.send_report import SendReport
from digest.schedule import sending
from digest.schedule.scheduler import run_newsletters
from digest.store.database import locate
from tests.helpers import edit_config
from tests.test_local_waves import SteppingClock


def test_a_wave_run_with_workers_is_sent_from_worker_processes(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = edit_config(sample_site, schedule={"cron": "0 9 * * MON", "local_time": "09:00"})
    joined = datetime(2026, 10, 20, tzinfo=timezone.utc)
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        store.add("tokyo@example.com", now=joined)
        Rhythms(store).set("tokyo@example.com", timezone="Asia/Tokyo", now=joined, config=config)
    calls: list[dict[str, Any]] = []

    def in_processes(config: Any, **kwargs: Any) -> SendReport:
        calls.append(kwargs)
        return SendReport(kwargs["week"], "outbox", sent=1, complete=True, ledger={"sent": 1})

    def in_this_process(*args: Any, **kwargs: Any) -> SendReport:
        raise AssertionError("sent in the run's own process")

    monkeypatch.setattr(sending, "send_in_processes", in_processes)
    monkeypatch.setattr(sending, "send_issue", in_this_process)
    # the Tokyo wave of 2026-W44 (Monday 09:00 JST), a minute late
    clock = SteppingClock(datetime(2026, 11, 2, 0, 1, tzinfo=timezone.utc))
    [result] = run_newsletters(config, ["weekly"], clock, stop=threading.Event(), workers=3)
    assert result.report is not None and result.report.run is not None
    assert (result.report.run.outcome, result.report.run.detail) == ("sent", "1 message")
    [call] = calls
    composer = call.pop("composer")
    assert isinstance(composer, CheckedComposer) and composer.gated
    assert call.pop("progress") is not None and call.pop("clock") == clock.now
    assert call == {
        "workers": 3,
        "now": datetime(2026, 11, 2, 0, 1, tzinfo=timezone.utc),
        "week": "2026-W44",
        "new_subscribers": True,  # each wave queues the readers it reaches
        "due_by": datetime(2026, 11, 2, 0, 0, tzinfo=timezone.utc),
    }


def test_schedule_hands_its_workers_to_every_newsletters_scheduler(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[str], int]] = []

    def run_forever_each(config: Any, names: list[str], clock: Any, **kwargs: Any) -> None:
        seen.append((list(names), kwargs["workers"]))

    monkeypatch.setattr("digest.cli.schedule.run_forever_each", run_forever_each)
    result = CliRunner().invoke(
        main, ["--config", str(sample_site / "config.yaml"), "schedule", "--workers", "4"]
    )
    assert result.exit_code == 0, result.output
    assert result.output == "digest schedule: stopped\n"
    assert seen == [(["weekly", "links"], 4)]


def test_run_refuses_fewer_than_one_worker(sample_site: Path) -> None:
    result = CliRunner().invoke(
        main, ["--config", str(sample_site / "config.yaml"), "run", "--workers", "0"]
    )
    assert result.exit_code == 2
    assert "Invalid value for '--workers': 0 is not in the range x>=1." in result.output
