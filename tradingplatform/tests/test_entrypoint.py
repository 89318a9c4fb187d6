"""The image's entry command, outside any container engine: `python -m tradingplatform.entrypoint
web` *becomes* daphne (exec: same pid, no shell), honours PORT, and a SIGTERM ends it cleanly, its
websockets closed with a close frame; the health checks; the proxy-header middleware."""
from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil
import pytest
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from tradingplatform import entrypoint
from tradingplatform.network import ProxyHeadersMiddleware
from tradingplatform.tests.servers import Websocket, celery_worker, free_port, subprocess_env_for_tests

GUARD_SECONDS = 60  # failure guards only


def _health(role: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradingplatform.entrypoint", "health", role],
                          cwd=settings.BASE_DIR, env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=GUARD_SECONDS)


@pytest.fixture
def entry_web(django_db_setup, django_db_blocker):
    """`python -m tradingplatform.entrypoint web` on a port that is not 8000; yields (process, port)."""
    port = free_port()
    env = dict(os.environ, **subprocess_env_for_tests(), PORT=str(port), BIND_ADDRESS="127.0.0.1")
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "tradingplatform.entrypoint", "web"],
                                   cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + GUARD_SECONDS
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        pytest.fail(f"the entry command did not serve: {log.read().decode()[-2000:]}")
                    time.sleep(0.2)
            yield process, port
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=GUARD_SECONDS)


def test_the_web_role_is_daphne_itself_on_PORT(entry_web):
    process, port = entry_web
    cmdline = psutil.Process(process.pid).cmdline()
    # exec'd: the pid we started is daphne's own
    assert "tradingplatform.webserver" in cmdline and str(port) in cmdline, cmdline
    assert psutil.Process(process.pid).children() == []  # and nothing stands between
    assert "sh" not in os.path.basename(cmdline[0])


def test_the_web_health_check_follows_PORT(entry_web):
    _process, port = entry_web
    assert _health("web", PORT=str(port)).returncode == 0
    other = _health("web", PORT=str(free_port()))
    assert other.returncode == 1 and "/health/ready" in other.stdout


def test_sigterm_closes_websockets_with_a_close_frame_and_daphne_exits_cleanly(entry_web, alpha):
    from django.contrib.auth import get_user_model

    process, port = entry_web
    token = AccessToken.for_user(get_user_model().objects.get(pk=alpha.viewer.pk))
    ws = Websocket(port, f"/clients/alpha/stream?token={token}")
    try:
        assert ws.status == 101
        time.sleep(0.3)  # the consumer joins its group right after the handshake
        process.send_signal(signal.SIGTERM)
        while True:
            opcode, payload = ws.frame()  # a cut connection raises ConnectionError here instead
            if opcode == 8:
                break
        assert struct.unpack("!H", payload[:2])[0] == 1001  # going away
    finally:
        ws.close()
    assert process.wait(timeout=GUARD_SECONDS) == 0


def test_the_roles_commands():
    environ = {"PORT": "9123", "WORKER_CONCURRENCY": "3"}
    web = entrypoint.command("web", environ)
    assert web[1:] == ["-m", "tradingplatform.webserver", "-b", "0.0.0.0", "-p", "9123",
                       "tradingplatform.asgi:application"]
    assert entrypoint.command("worker", environ)[-2:] == ["--concurrency", "3"]
    assert "tradingplatform.beat:HeartbeatScheduler" in entrypoint.command("beat", environ)
    assert entrypoint.command("migrate", environ)[1:] == ["manage.py", "platform_setup"]
    with pytest.raises(SystemExit):
        entrypoint.command("shell", environ)


def test_the_beat_health_check_reads_the_heartbeats_age(tmp_path):
    heartbeat = tmp_path / "beat-heartbeat"
    assert _health("beat", BEAT_HEARTBEAT_FILE=str(heartbeat)).returncode == 1  # no heartbeat yet
    heartbeat.touch()
    assert _health("beat", BEAT_HEARTBEAT_FILE=str(heartbeat)).returncode == 0
    # from the file's own (real) time: this process's time.time is the suite clock's
    stale = heartbeat.stat().st_mtime - entrypoint.BEAT_HEARTBEAT_MAX_AGE_SECONDS - 30
    os.utime(heartbeat, (stale, stale))
    result = _health("beat", BEAT_HEARTBEAT_FILE=str(heartbeat))
    assert result.returncode == 1 and "last tick" in result.stdout


def test_the_worker_health_check_pings_this_hosts_worker(tmp_path):
    env = subprocess_env_for_tests()
    with celery_worker(env, log=tmp_path / "worker.log"):  # node celery@<this host>, as in its container
        result = _health("worker", **env)
        assert result.returncode == 0, result.stdout + result.stderr
    result = _health("worker", **env)
    assert result.returncode == 1 and "did not answer" in result.stdout


def _through_middleware(scope: dict) -> dict:
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    asyncio.run(ProxyHeadersMiddleware(app)(scope, None, None))
    return seen


@pytest.mark.parametrize("kind, secure", [("http", "https"), ("websocket", "wss")])
def test_a_trusted_proxys_headers_give_the_client_and_scheme(settings, kind, secure):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    headers = [(b"x-forwarded-for", b"198.51.100.7, 203.0.113.9"), (b"X-Forwarded-Proto", b"https")]
    seen = _through_middleware({"type": kind, "client": ["10.1.2.3", 5555], "headers": headers, "scheme": "x"})
    # read from the right, as client_ip does: the leftmost entry is whatever the client wrote
    assert (seen["client"][0], seen["scheme"]) == ("203.0.113.9", secure)


def test_anyone_elses_proxy_headers_change_nothing(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    headers = [(b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-proto", b"https")]
    scope = {"type": "http", "client": ["192.0.2.1", 5555], "headers": headers, "scheme": "http"}
    seen = _through_middleware(dict(scope))
    assert (seen["client"], seen["scheme"]) == (["192.0.2.1", 5555], "http")
