"""A real ``lifelong serve`` process for the HTTP and page tests (issue 11): started on 127.0.0.1 at a port
the server picks itself (``--port 0``; it prints its address), waited for until ``/healthz`` answers, and
always stopped by the test that started it (``stop()`` in a finally / fixture teardown).

Servers run with one torch thread (OMP_NUM_THREADS=1): the machine has 2 cores and other work on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ADDRESS = re.compile(r"http://127\.0\.0\.1:(\d+)")


class ServerProcess:
    def __init__(self, state_dir: Path, *args: str, db: str | None = None, log_dir: Path | None = None):
        self.state_dir = Path(state_dir)
        self.db = db
        self.args = [*args, *(["--db", db] if db else [])]
        self.log_dir = Path(log_dir or self.state_dir.parent)
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0

    @property
    def store_url(self) -> str:
        return self.db or f"sqlite:///{(self.state_dir / 'serve.db').resolve()}"

    def start(self, timeout: float = 90) -> ServerProcess:
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.out = self.log_dir / f"server-{self.state_dir.name}-{self.starts}.out"
        self.err = self.log_dir / f"server-{self.state_dir.name}-{self.starts}.err"
        command = [sys.executable, "-m", "lifelong.cli", "serve", "--port", "0", "--state-dir", str(self.state_dir)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen([*command, *self.args], stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + timeout
        while not (found := ADDRESS.search(self.out.read_text())):
            self._alive_or_fail()
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the server printed no address in {timeout} s: {self.err.read_text()[-2000:]}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{found.group(1)}"
        while True:  # the socket listens before uvicorn answers: wait for the first health check
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return self
            self._alive_or_fail()
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"/healthz did not answer in {timeout} s: {self.err.read_text()[-2000:]}")
            time.sleep(0.05)

    def _alive_or_fail(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited with {self.process.returncode}: {self.err.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it has not exited in 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(15)

    def client(self, key: str | None = None, timeout: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def add_key(self, scopes: set[str], name: str = "test") -> str:
        """A key written straight into the store (the CLI's `keys create` costs a process; one test runs it).
        The store keeps a key's sha256 (store.py's api_keys table)."""
        from lifelong.serve.store import Store

        key = "llk_test_" + os.urandom(12).hex()
        store = Store(self.store_url)
        try:
            store.add_key(hashlib.sha256(key.encode()).hexdigest(), name, sorted(scopes))
        finally:
            store.close()
        return key


def wait_for(condition, timeout: float, every: float = 0.25, what: str = "the condition"):
    """Poll ``condition()`` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s")
        time.sleep(every)
