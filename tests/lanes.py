"""The fast lane (``pytest --fast``, ``bash scripts/test --fast``): which tests are in it, and
the guard that keeps it honest.

A test is out of the fast lane when it carries one of ``OUTSIDE_FAST_LANE``:

* ``browser``: it drives Chromium;
* ``integration``: it starts a subprocess (``run_digest``, a second digest holding a lock),
  a real server on loopback (SMTP, the provider emulators, ``digest serve``, a feed server)
  or the PostgreSQL cluster. A test that asks for ``pg_url`` or ``pg_cluster`` is marked
  here; in a module marked ``backends`` the PostgreSQL run is (``tests/conftest.py``), the
  SQLite run stays in the lane;
* ``slow``: it takes seconds of work even without any of the above;
* ``corpus``: it reads the real blog's 12,763 posts.

Everything else runs in the fast lane, under ``fast_lane_guard``: a test there that starts
a subprocess or opens an internet socket (bind or connect, loopback included) fails and
says which marker it needs, so the lane cannot quietly grow slow again.
"""

from __future__ import annotations

import importlib
import socket
import subprocess
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

OUTSIDE_FAST_LANE = ("browser", "integration", "slow", "corpus")
# Fixtures whose use puts a test outside the lane by itself, and the marker each implies.
IMPLIED = {"pg_cluster": "integration", "pg_url": "integration", "corpus_dir": "corpus"}
_INTERNET = (socket.AF_INET, socket.AF_INET6)
VIOLATIONS = pytest.StashKey[list[str]]()
# Libraries whose import starts a process or binds a socket, once: croniter runs `file -b`
# (platform.architecture()), urllib3 binds [::1]:0 to learn whether IPv6 works.
PREIMPORTED = ("croniter", "urllib3")


class LaneViolation(Exception):
    """A test in the fast lane reached for a process or a socket."""


def in_fast_lane(item: pytest.Item) -> bool:
    return not any(item.get_closest_marker(name) for name in OUTSIDE_FAST_LANE)


@contextmanager
def fast_lane_guard(record: Callable[[str], None]) -> Iterator[None]:
    """While active, starting a subprocess or binding or connecting an internet socket is
    recorded (``record``) and refused with ``LaneViolation``."""

    def refuse(what: str) -> LaneViolation:
        message = (
            f"{what} in the fast lane: mark the test integration "
            "(or slow, browser, corpus; see tests/lanes.py)"
        )
        record(message)
        return LaneViolation(message)

    popen_init = subprocess.Popen.__init__
    bind, connect, connect_ex = socket.socket.bind, socket.socket.connect, socket.socket.connect_ex

    def no_popen(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        raise refuse(f"a subprocess ({args!r})")

    def guarded(original: Callable[..., Any], verb: str) -> Callable[..., Any]:
        def call(self: socket.socket, address: Any, *rest: Any) -> Any:
            if self.family in _INTERNET:
                raise refuse(f"a socket {verb} {address!r}")
            return original(self, address, *rest)

        return call

    subprocess.Popen.__init__ = no_popen  # type: ignore[assignment,method-assign]
    socket.socket.bind = guarded(bind, "bound to")  # type: ignore[method-assign]
    socket.socket.connect = guarded(connect, "connected to")  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded(connect_ex, "connected to")  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]
        socket.socket.bind = bind  # type: ignore[method-assign]
        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


# --------------------------------------------------------------------------- pytest hooks
# tests/conftest.py imports these names, which registers them.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="Run only the fast lane: no browser, subprocess, server, database or corpus "
        "(tests/lanes.py), and fail a test there that starts one.",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in IMPLIED.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
    if not config.getoption("--fast"):
        return
    # Imported here, before the guard, so that the first test to import them is not blamed.
    for name in PREIMPORTED:
        importlib.import_module(name)
    kept = [item for item in items if in_fast_lane(item)]
    dropped = [item for item in items if not in_fast_lane(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    if not item.config.getoption("--fast"):
        yield
        return
    found = item.stash.setdefault(VIOLATIONS, [])
    with fast_lane_guard(found.append):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, None]:
    """A violation fails the test even when the code under test caught the exception."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    found = item.stash.get(VIOLATIONS, [])
    if found and report.when == "call" and report.passed:
        report.outcome = "failed"
        report.longrepr = "\n".join(found)
