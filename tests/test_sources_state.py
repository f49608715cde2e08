"""Each source's cache and health record (content/sources/state.py): kept across runs, a
damaged or foreign file read as a fresh start (with a warning), never an error that stops
a load; a record that cannot be saved is a warning too."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest

from digest.config import SourceConfig
from digest.content.sources.state import STATE_VERSION, SourceState, SourceStates

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
FEED = SourceConfig(feed="https://blog.example.com/feed.xml", name="Blog feed")


def a_record(states: SourceStates) -> SourceState:
    state = states.get(FEED)
    state.etag, state.entries = '"v1"', [{"id": "one"}]
    state.succeeded("fetched", NOW, posts=1)
    states.put(FEED, state)
    return state


def test_a_record_is_kept_and_a_no_cache_run_keeps_only_the_health(tmp_path: Path) -> None:
    states = SourceStates(tmp_path / "feeds", tmp_path)
    assert states.get(FEED) == SourceState("Blog feed", "https://blog.example.com/feed.xml")
    saved = a_record(states)
    assert states.get(FEED) == saved
    fresh = SourceStates(tmp_path / "feeds", tmp_path, fresh=True).get(FEED)
    assert (fresh.etag, fresh.entries) == (None, None)  # the cache is not used
    assert (fresh.last_success, fresh.posts) == (NOW.isoformat(), 1)  # the health is


@pytest.mark.parametrize(
    ("text", "warned"),
    [
        ("{not json", True),
        (json.dumps([1, 2]), False),
        (json.dumps({"version": STATE_VERSION + 1, "label": "x", "location": "y"}), False),
        (json.dumps({"version": STATE_VERSION, "label": "x"}), False),  # no location
    ],
)
def test_a_damaged_or_foreign_record_is_a_fresh_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, warned: bool
) -> None:
    states = SourceStates(tmp_path / "feeds", tmp_path)
    a_record(states)
    (path,) = (tmp_path / "feeds").glob("*.json")
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="digest.content.sources.state"):
        assert states.get(FEED) == SourceState("Blog feed", "https://blog.example.com/feed.xml")
    assert any("unreadable" in r.getMessage() for r in caplog.records) is warned


def test_a_record_that_cannot_be_saved_is_a_warning_and_leaves_no_temporary_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    states = SourceStates(tmp_path / "feeds", tmp_path)
    a_record(states)
    (path,) = (tmp_path / "feeds").glob("*.json")
    path.unlink()
    path.mkdir()  # something in the way of the record's name
    with caplog.at_level(logging.WARNING, logger="digest.content.sources.state"):
        a_record(states)
    assert [r.getMessage().split(" (")[0].split(":")[0] for r in caplog.records] == [
        f"source state {path} unreadable",  # reading it first: a fresh start
        f"source state {path} not saved",
    ]
    assert sorted(p.name for p in (tmp_path / "feeds").iterdir()) == [path.name]
    blocked = SourceStates(tmp_path / "file", tmp_path)
    (tmp_path / "file").write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="digest.content.sources.state"):
        a_record(blocked)
    assert "not saved" in caplog.records[-1].getMessage()
