"""Shared fixtures: every test runs with its own state, and real sites to work on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Beside the checkout by default; DIGEST_CORPUS_TARBALL points elsewhere (e.g. from a worktree).
CORPUS_TARBALL = Path(
    os.environ.get("DIGEST_CORPUS_TARBALL")
    or ROOT.parent / "shared" / "corpus" / "aivibe-posts.tar.gz"
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads the developer's config, secrets or home folder."""
    for name in list(os.environ):
        if name.startswith("DIGEST_") or name.endswith(("_TOKEN", "_API_KEY")):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    # A server secret as a real deployment has one; tests of its absence delete it.
    monkeypatch.setenv("DIGEST_SECRET", "test-server-secret-" + tmp_path.name)
    yield


@pytest.fixture
def sample_site(tmp_path: Path) -> Path:
    """A private copy of the bundled sample site (content/ and config.yaml)."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copytree(ROOT / "content", site / "content")
    shutil.copy(ROOT / "config.yaml", site / "config.yaml")
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
        pytest.skip(f"the corpus is not at {CORPUS_TARBALL}")
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
