"""Real servers for tests and benchmarks: daphne and a Celery worker as subprocesses, and a
minimal websocket client. They run with this process's environment plus `env` (the test
database's URL, say), so they see the same PostgreSQL and Redis."""
from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings


def subprocess_env_for_tests() -> dict[str, str]:
    """The environment that points a subprocess at the test database (not the development one)
    and the test Redis."""
    url = urlsplit(settings.DATABASE_URL)._replace(path="/" + settings.DATABASES["default"]["NAME"]).geturl()
    return {"DATABASE_URL": url, "REDIS_URL": settings.REDIS_URL, "ENVIRONMENT": "test"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def daphne_server(env: dict[str, str] | None = None) -> Iterator[int]:
    """daphne on a free loopback port, serving once `/health` answers; yields the port."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "tradingplatform.asgi:application"],
            cwd=settings.BASE_DIR, env=dict(os.environ, **(env or {})), stdout=subprocess.DEVNULL, stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"daphne did not start: {log.read().decode()[-2000:]}") from None
                    time.sleep(0.2)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)


@contextlib.contextmanager
def celery_worker(env: dict[str, str] | None = None, *, concurrency: int | None = None, name: str | None = None,
                  log: Path | None = None) -> Iterator[subprocess.Popen]:
    """A Celery worker of the platform's app; yields its (main) process. The solo pool by default;
    with `concurrency`, the prefork pool with that many pool processes, as in production. With
    `name` (several workers at once) it is that node; with `log` it logs at INFO there, and is
    yielded once ready."""
    pool = ["--pool", "solo"] if concurrency is None else ["--pool", "prefork", "--concurrency", str(concurrency)]
    command = [sys.executable, "-m", "celery", "-A", "tradingplatform", "worker", *pool,
               "--without-gossip", "--without-mingle", "--without-heartbeat",
               "--loglevel", "INFO" if log else "WARNING"]
    if name:
        command += ["--hostname", f"{name}@%h"]
    with open(log, "w") if log else contextlib.nullcontext() as output:
        worker = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=dict(os.environ, **(env or {})), stdout=subprocess.DEVNULL,
            stderr=output or subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while log and " ready." not in log.read_text():
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield worker
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)


@contextlib.contextmanager
def celery_beat(env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Celery beat of the platform's app, on the settings' schedule (kept in a temporary file
    rather than the database, so that each run starts afresh); yields its process."""
    with tempfile.TemporaryDirectory() as folder:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tradingplatform", "beat", "--loglevel", "WARNING",
             "--scheduler", "celery.beat:PersistentScheduler", "--schedule", os.path.join(folder, "schedule")],
            cwd=settings.BASE_DIR, env=dict(os.environ, **(env or {})), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield beat
        finally:
            beat.terminate()
            beat.wait(timeout=20)


class Websocket:
    """Just enough of RFC 6455 for a client that reads text frames and close codes."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(4096)
        head, self.buffer = response.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def frame(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(length)

    def close(self) -> None:
        self.sock.close()
