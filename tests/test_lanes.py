"""The fast lane keeps its promise: no subprocess, socket, database or browser in it."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.lanes import OUTSIDE_FAST_LANE, LaneViolation, fast_lane_guard

# The planted runs need neither the cache nor hypothesis (whose summary imports all of it).
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
PLANTED_CONFTEST = """
from tests.lanes import (
    pytest_addoption, pytest_collection_modifyitems, pytest_runtest_makereport,
    pytest_runtest_protocol,
)
"""
PLANTED = """
import socket, subprocess, sys
import pytest

def test_pure():
    assert 1 + 1 == 2

def test_starts_a_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_binds_a_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))

def test_swallows_the_refusal():
    try:
        subprocess.run([sys.executable, "-c", "pass"])
    except Exception:
        pass

@pytest.mark.integration
def test_marked_starts_a_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

@pytest.mark.slow
def test_marked_slow():
    pass
"""


def test_the_guard_refuses_and_records_processes_and_internet_sockets() -> None:
    found: list[str] = []
    before = (subprocess.Popen.__init__, socket.socket.bind, socket.socket.connect)
    with fast_lane_guard(found.append):
        with pytest.raises(LaneViolation, match="a subprocess"):
            subprocess.run([sys.executable, "-c", "pass"])
        with socket.socket() as probe, pytest.raises(LaneViolation, match="bound to"):
            probe.bind(("127.0.0.1", 0))
        with socket.socket() as probe, pytest.raises(LaneViolation, match="connected to"):
            probe.connect(("127.0.0.1", 9))
        left, right = socket.socketpair()  # a Unix socket pair (asyncio's self-pipe) is fine
        left.close()
        right.close()
    assert len(found) == 3
    assert found[0].endswith(
        "in the fast lane: mark the test integration (or slow, browser, corpus; see tests/lanes.py)"
    )
    # the guard is gone afterwards (another may be around this test: the lane's own)
    assert (subprocess.Popen.__init__, socket.socket.bind, socket.socket.connect) == before


def test_fast_deselects_marked_tests_and_fails_a_process_or_socket(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(PLANTED_CONFTEST)
    pytester.makepyfile(test_planted=PLANTED)
    pytester.makeini(
        "[pytest]\nmarkers =\n"
        + "".join(f"    {name}: planted\n" for name in OUTSIDE_FAST_LANE)
        + "    backends: planted\n"
    )
    result = pytester.runpytest_inprocess("--fast", *QUIET_PLUGINS, "-rA")
    result.assert_outcomes(passed=1, failed=3, deselected=2)
    output = result.stdout.str()
    assert "PASSED test_planted.py::test_pure" in output
    for name in ("test_starts_a_process", "test_binds_a_port", "test_swallows_the_refusal"):
        assert f"FAILED test_planted.py::{name}" in output
    assert "a socket bound to ('127.0.0.1', 0) in the fast lane" in output


@pytest.mark.parametrize(("ci", "outcome"), [("true", "failed"), ("", "skipped")])
def test_a_missing_corpus_fails_under_ci_and_is_skipped_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    import tests.conftest

    missing = pytester.path / "no-corpus.tar.gz"
    monkeypatch.setattr(tests.conftest, "CORPUS_TARBALL", missing)
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest("from tests.conftest import corpus_dir\n")
    pytester.makepyfile(test_corpus_planted="def test_reads(corpus_dir):\n    pass\n")
    result = pytester.runpytest_inprocess(*QUIET_PLUGINS, "-rA")
    result.assert_outcomes(**{"errors" if outcome == "failed" else outcome: 1})
    said = f"the corpus is not at {missing} (or DIGEST_CORPUS_DIR)"
    if ci:
        said += "; CI=true runs every corpus test"
    assert said in result.stdout.str()
