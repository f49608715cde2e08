"""Several processes opening the same new SQLite file at once all get a working store."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from digest.audience.subscribers import SubscriberStore
from digest.content.cache import PostCache
from digest.delivery.ledger import Ledger
from digest.schedule.runs import RunStore

pytestmark = pytest.mark.integration  # processes opening one file together

PROCESSES = 4
ROUNDS = 15


def _open(kind: str, path: str) -> str:
    try:
        if kind == "runs":
            with RunStore(Path(path)):
                pass
        elif kind == "ledger":
            Ledger(Path(path)).close()
        elif kind == "subscribers":
            SubscriberStore(Path(path)).close()
        else:
            cache = PostCache(Path(path))
            return "ok" if cache.index() == {} and cache._db is not None else "cache unusable"
        return "ok"
    except Exception as exc:  # reported to the parent as text
        return repr(exc)


@pytest.mark.parametrize("kind", ["runs", "ledger", "subscribers", "cache"])
def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path, kind: str) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a threaded test process
    with context.Pool(PROCESSES) as pool:
        for round_ in range(ROUNDS):
            name = "cache" if kind == "cache" else f"{kind}.sqlite"
            target = str(tmp_path / str(round_) / name)
            results = pool.starmap(_open, [(kind, target)] * PROCESSES)
            assert results == ["ok"] * PROCESSES, (round_, results)
