"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, loopback only.

:class:`Cluster` runs ``initdb`` in a temporary folder and starts ``postgres`` on 127.0.0.1
at a free port, with trust authentication and no Unix socket outside that folder. initdb
refuses to run as root, so when the tests run as root the cluster belongs to the
``postgres`` system user (Debian's package creates it) and is started through ``runuser``.

Durability settings are off (``fsync``, ``full_page_writes``): the tests kill clients, never
the server, and a throwaway cluster need not survive a power cut. ``Cluster(durable=True)``
keeps the server's defaults (the benchmarks, which compare it with SQLite's fsyncs).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.helpers import free_port as _free_port

SUPERUSER = "digest"


def find_bin(name: str) -> str | None:
    """``name`` on PATH, else in Debian's versioned folder (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


class Cluster:
    """One PostgreSQL server for a test session; :meth:`database` makes a fresh database."""

    def __init__(self, *, durable: bool = False, parent: str | None = None) -> None:
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError(
                "PostgreSQL's server binaries (initdb, pg_ctl) are not installed; "
                "`apt-get install postgresql` (scripts/test does it)"
            )
        self.pg_ctl = pg_ctl
        self.folder = Path(tempfile.mkdtemp(prefix="digest-pg-", dir=parent))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            self.prefix = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")
        self._run([initdb, "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.folder} -c max_connections=200"
        )
        if not durable:  # benchmarks ask for the server's default durability
            options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        self._run(
            [pg_ctl, "-D", str(self.data), "-l", str(self.folder / "log"), "-o", options,
             "-w", "-t", "60", "start"]
        )  # fmt: skip
        self.url = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}"

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(
            [*self.prefix, *command], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            log = self.folder / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command[:1])} failed ({result.returncode}): "
                f"{result.stderr.strip()}\n{tail}"
            )

    def database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
