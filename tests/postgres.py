"""A throwaway PostgreSQL server for the service's tests (issue 11), registered in conftest.py.

``postgres_server`` (session): ``initdb`` into a new temporary folder and ``pg_ctl start`` with the
server binaries of /usr/lib/postgresql/<newest>/bin, listening on 127.0.0.1 at a free port (and on a
socket in the same folder), trust authentication for the ``postgres`` role; stopped (``pg_ctl stop -m
fast``) and deleted at the end of the session, also when tests fail. Run as root (a container), the
server runs as the ``postgres`` user (or ``nobody``), since PostgreSQL refuses to run as root.
``fsync=off``: the tests kill the service's processes, never the machine, and a kill loses nothing
that is committed whether or not the server flushes to the disk; the durability of a commit is the
server's job and is not what these tests measure.

``postgres_url`` (per test): a new empty database on that server, as ``postgresql://postgres@127.0.0.1:
PORT/NAME``, dropped after the test (``WITH (FORCE)`` ends connections a failed test left open).

Without server binaries every test that asks for these fixtures is skipped with the reason below.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

SKIP_REASON = "PostgreSQL server not installed: run tools/system-deps.sh"
_names = itertools.count()


def server_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl, or None."""
    found = []
    for folder in Path("/usr/lib/postgresql").glob("*/bin"):
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            version = folder.parent.name
            found.append((int(version) if version.isdigit() else 0, folder))
    return max(found)[1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, binaries: Path):
        self.binaries = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="lifelong-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses root: run it as an ordinary user that owns the folder
            user = "postgres" if _has_user("postgres") else "nobody"
            entry = pwd.getpwnam(user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            self.prefix = ["runuser", "-u", user, "--"]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=timeout, cwd=self.folder, check=False
        )

    def start(self) -> None:
        init = self.run(
            str(self.binaries / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c max_connections=200"
        start = self.run(
            str(self.binaries / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if start.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {start.stderr.strip()} {log}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """One statement outside a transaction (CREATE / DROP DATABASE), as the postgres role."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(sql)

    def new_database(self) -> str:
        name = f"t{os.getpid()}_{next(_names)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_server():
    binaries = server_binaries()
    if binaries is None:
        pytest.skip(SKIP_REASON)
    server = PostgresServer(binaries)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    name = postgres_server.new_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
