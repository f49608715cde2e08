"""Local-time waves through SIGKILLs on PostgreSQL: each wave of one issue for 2,000
readers over 10 zones is sent by `digest run --workers 4`; in three waves the whole process
tree (the run and its four workers) is SIGKILLed once the outbox has taken part of the wave,
and the same command is run again. Every reader gets the issue exactly once (an inotify
watch counts each message renamed into the outbox). The routine is tests/wavekills.py;
bench/bench_waves_kill.py runs it at 20,000 readers over 50 zones with 10 kills."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.delivery.ledger import SENT
from tests.helpers import edit_config
from tests.wavekills import ZONES, add_readers, send_waves_through_kills

pytestmark = [pytest.mark.slow, pytest.mark.integration]

READERS = 2000


@pytest.mark.parametrize("site_backend", ["postgresql"], indirect=True)
def test_waves_sent_by_four_workers_through_sigkills_reach_every_reader_once(
    sample_site: Path,
) -> None:
    assert len(set(ZONES)) == 50
    config = edit_config(
        sample_site,
        schedule={"cron": "0 9 * * MON", "grace": "6h", "local_time": "09:00"},
        send={"batch_size": 50, "lease": "2s"},
    )
    add_readers(config, READERS, ZONES[::5])  # ten zones, from Kiritimati to Honolulu
    outcome = send_waves_through_kills(
        sample_site, config, readers=READERS, workers=4, kills=3, seed=26, say=print
    )
    print(outcome.line())
    assert outcome.kills == 3, "a run finished before its kill came"
    assert outcome.ledger == {SENT: READERS}
    assert (outcome.lost, outcome.duplicated, outcome.sent_without_file) == (0, 0, 0)
    assert outcome.files == READERS
