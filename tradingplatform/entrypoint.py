"""The container's entry command, and its health checks: `python -m tradingplatform.entrypoint ROLE`.

Roles: `web` (daphne, as tradingplatform.webserver runs it), `worker` and `beat` (Celery),
`ibkr-sessions` (one live IB session per IBKR account, brokers.ibkr.session), `migrate` (one-shot:
every migration, then the first operator). Each *replaces* this process
(exec), so that the server is PID 1 of its container and receives SIGTERM itself: daphne then
closes its websockets with a close frame and finishes its requests instead of being killed 10 s
later. No shell stands in between.

`python -m tradingplatform.entrypoint health ROLE` exits 0 when the role is healthy, 1 otherwise:
web answers /health/ready on $PORT, the worker answers a Celery ping, beat has ticked lately, the
IBKR session process answers `manage.py ibkr_sessions --check`.

This module imports nothing of Django (a health check must stay cheap, and exec must come first).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_PORT = "8000"
# DatabaseScheduler ticks at least every 5 s; a heartbeat older than this means beat is stuck.
BEAT_HEARTBEAT_MAX_AGE_SECONDS = 60.0


def beat_heartbeat_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The file beat touches on each tick (tradingplatform.beat.HeartbeatScheduler)."""
    return Path(environ.get("BEAT_HEARTBEAT_FILE") or "/tmp/celerybeat-heartbeat")


def _port(environ: Mapping[str, str]) -> str:
    return environ.get("PORT") or DEFAULT_PORT


def command(role: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The command line a role runs as (what exec replaces this process with)."""
    python = sys.executable
    if role == "web":
        # Proxy headers are read by the application (tradingplatform.network.ProxyHeadersMiddleware)
        # from the proxies in TRUSTED_PROXIES only; daphne's --proxy-headers would believe anyone.
        # tradingplatform.webserver is daphne that closes its websockets with 1001 on SIGTERM.
        return [python, "-m", "tradingplatform.webserver", "-b", environ.get("BIND_ADDRESS") or "0.0.0.0",
                "-p", _port(environ), "tradingplatform.asgi:application"]
    if role == "worker":
        return [python, "-m", "celery", "-A", "tradingplatform", "worker", "--loglevel", "INFO",
                "--concurrency", environ.get("WORKER_CONCURRENCY") or "2"]
    if role == "beat":
        return [python, "-m", "celery", "-A", "tradingplatform", "beat", "--loglevel", "INFO",
                "--scheduler", "tradingplatform.beat:HeartbeatScheduler"]
    if role == "ibkr-sessions":
        return [python, "manage.py", "ibkr_sessions"]
    if role == "migrate":
        return [python, "manage.py", "platform_setup"]
    raise SystemExit(f"unknown role {role!r}: web, worker, beat, ibkr-sessions, migrate or health ROLE")


def healthy(role: str, environ: Mapping[str, str] = os.environ) -> tuple[bool, str]:
    """Whether the role's process in this container is healthy, and why not."""
    if role == "web":
        url = f"http://127.0.0.1:{_port(environ)}/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status == 200, f"{url} answered {response.status}"
        except OSError as exc:  # refused, timed out, or 503 (HTTPError is an OSError)
            return False, f"{url}: {exc}"
    if role == "beat":
        path = beat_heartbeat_path(environ)
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False, f"no heartbeat yet at {path}"
        return age <= BEAT_HEARTBEAT_MAX_AGE_SECONDS, f"last tick {age:.0f} s ago"
    if role == "worker":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")
        from tradingplatform.celery import app

        node = f"celery@{socket.gethostname()}"
        replies = app.control.ping(destination=[node], timeout=5)
        return bool(replies), f"{node} answered a ping" if replies else f"{node} did not answer a ping"
    if role == "ibkr-sessions":
        check = subprocess.run([sys.executable, "manage.py", "ibkr_sessions", "--check"], capture_output=True,
                               text=True, timeout=20, check=False)
        return check.returncode == 0, (check.stdout or check.stderr).strip()[-500:]
    raise SystemExit(f"no health check for role {role!r}: web, worker, beat or ibkr-sessions")


def main(argv: Sequence[str]) -> None:
    if len(argv) >= 2 and argv[0] == "health":
        ok, why = healthy(argv[1])
        print(why, flush=True)
        sys.exit(0 if ok else 1)
    if len(argv) != 1:
        raise SystemExit("usage: python -m tradingplatform.entrypoint "
                         "web|worker|beat|ibkr-sessions|migrate|health ROLE")
    args = command(argv[0])
    sys.stdout.flush()
    os.execv(args[0], args)


if __name__ == "__main__":
    main(sys.argv[1:])
