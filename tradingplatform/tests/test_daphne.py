"""End to end through a real daphne server: HTTP and the websocket stream, over TCP on loopback.

Daphne runs in a subprocess against the test database (it sees what the session committed: the
clients and their users) and the test Redis; events published here reach its consumer through the
Redis channel layer.
"""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from tradingplatform.events import publish_event


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def daphne(django_db_setup, django_db_blocker):
    port = _free_port()
    # The same server and credentials, the test database.
    url = urlsplit(settings.DATABASE_URL)._replace(path="/" + settings.DATABASES["default"]["NAME"]).geturl()
    env = dict(os.environ, DATABASE_URL=url, REDIS_URL=settings.REDIS_URL, ENVIRONMENT="test")
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "tradingplatform.asgi:application"],
        cwd=settings.BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"daphne did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield port
    process.terminate()
    process.wait(timeout=10)


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


def test_http_through_daphne(daphne, alpha):
    with urllib.request.urlopen(f"http://127.0.0.1:{daphne}/health/ready", timeout=5) as response:
        assert json.load(response)["status"] == "ok"
    request = urllib.request.Request(f"http://127.0.0.1:{daphne}/clients/alpha/agent/status",
                                     headers={"Authorization": f"Bearer {AccessToken.for_user(alpha.viewer)}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["client_id"] == "alpha"


def test_the_stream_through_daphne_delivers_published_events(daphne, alpha):
    ws = Websocket(daphne, f"/clients/alpha/stream?token={AccessToken.for_user(alpha.viewer)}")
    try:
        assert ws.status == 101
        time.sleep(0.3)  # the consumer joins its group right after the handshake
        publish_event(client_id="alpha", type="halt", data={"scope": "client", "halted": True, "reason": "e2e"})
        while True:
            opcode, payload = ws.frame()
            assert opcode == 1
            event = json.loads(payload)
            if event["data"].get("reason") == "e2e":
                break
        assert (event["type"], event["client_id"]) == ("halt", "alpha")
    finally:
        ws.close()


def test_an_idle_stream_stays_open_and_still_delivers(daphne, alpha):
    """The channel layer blocks up to 5 s per receive; a client-side read timeout at or under that
    (redis-py 8's default) tore down every idle consumer."""
    ws = Websocket(daphne, f"/clients/alpha/stream?token={AccessToken.for_user(alpha.viewer)}")
    try:
        assert ws.status == 101
        time.sleep(7)
        publish_event(client_id="alpha", type="halt", data={"scope": "client", "halted": False, "reason": "idle"})
        while True:
            opcode, payload = ws.frame()
            assert opcode == 1, f"the stream closed: opcode {opcode} {payload!r}"
            if json.loads(payload)["data"].get("reason") == "idle":
                break
    finally:
        ws.close()


def test_a_non_member_is_closed_with_4404_through_daphne(daphne, alpha, beta):
    ws = Websocket(daphne, f"/clients/beta/stream?token={AccessToken.for_user(alpha.viewer)}")
    try:
        assert ws.status == 101
        opcode, payload = ws.frame()
        assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 4404
    finally:
        ws.close()
