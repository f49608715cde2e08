"""Shared fixtures: every test runs with its own state, and real sites to work on."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from digest.config import DatabaseURL
from digest.safelog import RateLimit
from digest.store.database import Target
from tests.lanes import (  # the fast lane's hooks (registered by being named here)
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    pytest_runtest_protocol,
)

__all__ = [
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_runtest_makereport",
    "pytest_runtest_protocol",
]
pytest_plugins = ("pytester",)  # tests/test_lanes.py runs planted tests through the lane

ROOT = Path(__file__).resolve().parent.parent
# Beside the checkout by default; DIGEST_CORPUS_TARBALL points elsewhere (e.g. from a worktree).
CORPUS_TARBALL = Path(
    os.environ.get("DIGEST_CORPUS_TARBALL")
    or ROOT.parent / "shared" / "corpus" / "aivibe-posts.tar.gz"
)


_SERVER_LOGGERS = ("digest.serve", "digest.changes")  # safelog.install raises these


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads the developer's config, secrets or home folder."""
    for name in list(os.environ):
        if name.startswith("DIGEST_") or name.endswith(("_TOKEN", "_API_KEY")):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # any user cache: under HOME
    # A server secret as a real deployment has one; tests of its absence delete it.
    monkeypatch.setenv("DIGEST_SECRET", "test-server-secret-" + tmp_path.name)
    levels = {name: logging.getLogger(name).level for name in _SERVER_LOGGERS}
    yield
    # `digest serve` in this process raises its loggers to INFO, as a server should: the
    # next test starts with the levels as they were
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    # `digest serve` run in this process (CliRunner) rate-limits the root logger's handlers,
    # pytest's own among them: the next test starts with every record logged again
    for handler in logging.getLogger().handlers:
        for log_filter in [f for f in handler.filters if isinstance(f, RateLimit)]:
            handler.removeFilter(log_filter)


@pytest.fixture
def sample_site(tmp_path: Path, site_backend: str, request: pytest.FixtureRequest) -> Path:
    """A private copy of the bundled sample site (content/ and config.yaml).

    In a module marked ``backends`` it runs twice: on the SQLite files, and with
    ``database:`` pointing at a fresh PostgreSQL database.
    """
    site = tmp_path / "site"
    site.mkdir()
    shutil.copytree(ROOT / "content", site / "content")
    shutil.copy(ROOT / "config.yaml", site / "config.yaml")
    if site_backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        with (site / "config.yaml").open("a", encoding="utf-8") as config:
            config.write(f"\ndatabase: {url}\n")
    return site


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real blog's 12,763 posts, unpacked once per test session.

    ``DIGEST_CORPUS_DIR`` names a folder where they are unpacked already (read-only use).
    """
    unpacked = os.environ.get("DIGEST_CORPUS_DIR")
    if unpacked and (Path(unpacked) / "posts").is_dir():
        return Path(unpacked) / "posts"
    if not CORPUS_TARBALL.exists():
        where = f"the corpus is not at {CORPUS_TARBALL} (or DIGEST_CORPUS_DIR)"
        if os.environ.get("CI", "").lower() == "true":  # a CI run must not pass by skipping
            pytest.fail(f"{where}; CI=true runs every corpus test")
        pytest.skip(where)
    target = tmp_path_factory.mktemp("corpus")
    with tarfile.open(CORPUS_TARBALL) as archive:
        archive.extractall(target, filter="data")
    return target / "posts"


def run_digest(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed `digest` command as a user would, in its own process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """One throwaway PostgreSQL server for the session (tests/pg.py), stopped at the end."""
    from tests.pg import Cluster

    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """The URL of a new, empty PostgreSQL database for this test."""
    return str(pg_cluster.database())


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests in a module marked ``backends`` run once per store backend."""
    if "site_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "backends"
    ):
        # The PostgreSQL run starts a database server: outside the fast lane (tests/lanes.py).
        params = [
            pytest.param(name, marks=[pytest.mark.integration] if name == "postgresql" else [])
            for name in BACKENDS
        ]
        metafunc.parametrize("site_backend", params, indirect=True)


@pytest.fixture
def site_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql``: where this test's stores live (sqlite unless the module
    is marked ``backends``)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store_at(
    tmp_path: Path, site_backend: str, request: pytest.FixtureRequest
) -> Callable[[str], Target]:
    """``store_at("subs.sqlite")``: that file in tmp_path, or the test's PostgreSQL database."""
    url = DatabaseURL(request.getfixturevalue("pg_url")) if site_backend == "postgresql" else None

    def target(name: str) -> Target:
        return url if url is not None else tmp_path / name

    return target
