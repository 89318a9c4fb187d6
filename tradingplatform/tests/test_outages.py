"""Redis and PostgreSQL outages, with real processes: daphne serving the platform, and a Redis or
PostgreSQL server of the test's own (tradingplatform.tests.faults) that it stops, crashes and
starts again. Nothing answers 500; a dependency down is a 503 naming it (a socket: close 1013);
the stream's seq never goes backwards and no event is lost; recovery needs no restart.

These tests commit (daphne is another process): they use the session's committed client `race`.
"""
from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken

from tradingplatform.events import events_relay, last_seq, publish_event
from tradingplatform.outages import WS_CLOSE_TRY_AGAIN_LATER
from tradingplatform.testing import PASSWORD
from tradingplatform.tests.faults import dedicated_postgres, dedicated_redis
from tradingplatform.tests.servers import Websocket, daphne_server, subprocess_env_for_tests

CLIENT = "race"
SOCKETS_AFTER_RECOVERY = 6


@pytest.fixture
def race(django_db_setup, django_db_blocker):
    """The session's committed client `race`; this test's writes commit at once."""
    with django_db_blocker.unblock():
        yield django_db_setup[CLIENT]


def _http(port: int, method: str, path: str, *, headers: dict | None = None,
          body: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class Stream:
    """A client of `WS /clients/race/stream`: its events, or the code it was closed with."""

    def __init__(self, port: int, token: str, since: int | None = None) -> None:
        query = f"?token={token}" + (f"&since={since}" if since is not None else "")
        self.ws = Websocket(port, f"/clients/{CLIENT}/stream{query}")
        assert self.ws.status == 101, f"the handshake answered HTTP {self.ws.status}"

    def next(self) -> dict | int:
        """The next event, or the close code."""
        while True:
            opcode, payload = self.ws.frame()
            if opcode == 8:
                self.ws.close()
                return struct.unpack("!H", payload[:2])[0]
            if opcode == 1:
                return json.loads(payload)

    def events(self, count: int) -> list[dict]:
        received: list[dict] = []
        for _ in range(count):
            item = self.next()
            assert isinstance(item, dict), f"the stream closed with {item} after {received}"
            received.append(item)
        return received

    def close(self) -> None:
        self.ws.close()


def _channel_layers(url: str) -> dict:
    """CHANNEL_LAYERS as configured, on the Redis at `url`."""
    layer = settings.CHANNEL_LAYERS["default"]
    host = dict(layer["CONFIG"]["hosts"][0], address=url)
    return {"default": dict(layer, CONFIG=dict(layer["CONFIG"], hosts=[host]))}


def test_redis_stopped_then_crashed_503s_no_500s_seq_never_backwards_no_event_lost(race):
    token = str(AccessToken.for_user(race.viewer))
    desk = {"Cookie": f"sessionid={_desk_session(race.trader)}", "Accept": "text/html"}
    published: list[int] = []

    def publish(n: int) -> dict:
        event = publish_event(client_id=CLIENT, type="trade", data={"fill": n})
        published.append(event["seq"])
        return event

    with dedicated_redis() as redis_server, \
            override_settings(REDIS_URL=redis_server.url, CHANNEL_LAYERS=_channel_layers(redis_server.url)), \
            daphne_server(subprocess_env_for_tests()) as port:
        seen = last_seq(client_id=CLIENT)
        stream = Stream(port, token, since=seen)
        first = publish(0)
        assert stream.next()["seq"] == first["seq"]
        seen = first["seq"]

        for round_, end in enumerate((redis_server.stop, redis_server.crash)):
            end()
            assert stream.next() == WS_CLOSE_TRY_AGAIN_LATER  # the open stream: try again later
            if round_ == 0:  # (the crash round opens nothing until Redis is back: a stale pool shows)
                assert Stream(port, token, since=seen).next() == WS_CLOSE_TRY_AGAIN_LATER
            statuses = {path: _http(port, "GET", path, headers={"Authorization": f"Bearer {token}"})[0]
                        for path in (f"/clients/{CLIENT}/agent/status", f"/clients/{CLIENT}/agent/parameters",
                                     f"/clients/{CLIENT}/agent/proposals")}
            statuses["desk"] = _http(port, "GET", f"/desk/{CLIENT}/", headers=desk)[0]
            assert 500 not in statuses.values() and set(statuses.values()) <= {200, 503}, statuses
            status, headers, body = _http(port, "GET", "/health/ready")
            assert status == 503 and json.loads(body)["failing"] == ["redis"]
            status, _, body = _http(port, "POST", "/auth/login",
                                    body={"username": race.trader.username, "password": PASSWORD})
            assert status == 200 and "access" in json.loads(body), body  # login works without Redis
            # Fills while Redis is down (an approval's trade): committed, fanned out later.
            missed = [publish(n) for n in range(1, 4)]

            redis_server.start()
            # The first sockets after Redis returns open (the channel layer reconnects by itself)
            # and catch up from PostgreSQL: every missed event, in order, once.
            streams = [Stream(port, token, since=seen) for _ in range(SOCKETS_AFTER_RECOVERY)]
            for each in streams:
                assert [event["seq"] for event in each.events(len(missed))] == [e["seq"] for e in missed]
            assert events_relay(grace_seconds=0) >= len(missed)  # the relay sends them too: dropped as seen
            live = publish(9)
            for each in streams:
                assert each.next()["seq"] == live["seq"]
            for each in streams[1:]:
                each.close()
            stream, seen = streams[0], live["seq"]
        stream.close()

    assert published == list(range(published[0], published[0] + len(published)))  # strictly +1, no gap


def _desk_session(user) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def test_postgres_restarted_503s_then_recovers_without_a_restart(race):
    token = str(AccessToken.for_user(race.viewer))
    cookie = {"Cookie": f"sessionid={_desk_session(race.trader)}", "Accept": "text/html"}
    bearer = {"Authorization": f"Bearer {token}"}
    kept = publish_event(client_id=CLIENT, type="risk", data={"event": "before the restart"})
    api = f"/clients/{CLIENT}/agent/status"
    page = f"/desk/{CLIENT}/"
    login = {"username": race.trader.username, "password": PASSWORD}

    with dedicated_postgres() as database, \
            daphne_server(dict(subprocess_env_for_tests(), DATABASE_URL=database.url)) as port:
        assert _http(port, "GET", api, headers=bearer)[0] == 200
        assert _http(port, "GET", page, headers=cookie)[0] == 200
        open_stream = Stream(port, token, since=kept["seq"] - 1)
        assert open_stream.next()["seq"] == kept["seq"]

        database.stop()
        assert open_stream.next() == WS_CLOSE_TRY_AGAIN_LATER  # its access can no longer be checked
        status, headers, body = _http(port, "GET", api, headers=bearer)
        assert (status, json.loads(body)["dependency"]) == (503, "database")
        assert int(headers["Retry-After"]) > 0
        status, headers, body = _http(port, "POST", "/auth/login", body=login)
        assert (status, json.loads(body)["code"], "Retry-After" in headers) == (503, "dependency_unavailable", True)
        status, headers, body = _http(port, "GET", page, headers=cookie)
        assert status == 503 and headers["Content-Type"].startswith("text/html")
        assert b"Temporarily unavailable" in body and b"Traceback" not in body
        assert Stream(port, token).next() == WS_CLOSE_TRY_AGAIN_LATER

        database.start()
        # The next requests use new connections: no restart of daphne.
        assert _http(port, "GET", api, headers=bearer)[0] == 200
        assert _http(port, "GET", page, headers=cookie)[0] == 200
        assert _http(port, "POST", "/auth/login", body=login)[0] == 200
        stream = Stream(port, token, since=kept["seq"] - 1)
        assert stream.next()["seq"] == kept["seq"]
        stream.close()


def test_a_database_outage_is_a_503_naming_it(db):
    """This module's one test in a test transaction (the test database is made when it runs
    alone): what the handler answers for each kind of failure."""
    import redis
    from django.db import OperationalError

    from tradingplatform.outages import unavailable_dependency

    assert unavailable_dependency(OperationalError("server closed the connection")) == "database"
    assert unavailable_dependency(redis.ConnectionError("Connection refused")) == "redis"
    try:
        try:
            raise redis.ConnectionError("refused")
        except redis.ConnectionError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert unavailable_dependency(wrapped) == "redis"
    assert unavailable_dependency(ValueError("a bug")) is None


def test_an_error_raised_outside_a_view_is_a_503_too_and_a_bug_stays_a_500(rf):
    """handler500 meets what a middleware raised (the session's query, say)."""
    import redis
    from django.db import InterfaceError

    from tradingplatform.urls import server_error

    for error, dependency in ((InterfaceError("connection already closed"), "database"),
                              (redis.TimeoutError("Timeout reading from socket"), "redis")):
        try:
            raise error
        except Exception:
            response = server_error(rf.get("/desk/race/", HTTP_ACCEPT="application/json"))
        assert response.status_code == 503 and json.loads(response.content)["dependency"] == dependency
        assert int(response["Retry-After"]) > 0
    try:
        raise KeyError("a bug")
    except KeyError:
        assert server_error(rf.get("/x")).status_code == 500
