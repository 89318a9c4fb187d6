"""End to end through a real daphne server: HTTP and the websocket stream, over TCP on loopback.

Daphne runs in a subprocess against the test database (it sees what the session committed: the
clients and their users) and the test Redis; events published here reach its consumer through the
Redis channel layer.
"""
import json
import struct
import time
import urllib.request

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from tradingplatform.testing import publish_fanned_out
from tradingplatform.tests.servers import Websocket, daphne_server, subprocess_env_for_tests


def _token(user) -> AccessToken:
    """A token for the user as the database has them now: the token carries a digest of the
    password hash (revocation on a password change), so one built from the session-wide fixture
    object is refused if any test left that row changed. (This module failed twice under heavy
    load in full runs with 4401 on such tokens, and never alone; the cause is not pinned down.)"""
    from django.contrib.auth import get_user_model

    return AccessToken.for_user(get_user_model().objects.get(pk=user.pk))


@pytest.fixture(scope="module")
def daphne(django_db_setup, django_db_blocker):
    with daphne_server(subprocess_env_for_tests()) as port:
        yield port


def test_http_through_daphne(daphne, alpha):
    with urllib.request.urlopen(f"http://127.0.0.1:{daphne}/health/ready", timeout=5) as response:
        assert json.load(response)["status"] == "ok"
    request = urllib.request.Request(f"http://127.0.0.1:{daphne}/clients/alpha/agent/status",
                                     headers={"Authorization": f"Bearer {_token(alpha.viewer)}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["client_id"] == "alpha"


def test_the_stream_through_daphne_delivers_published_events(daphne, alpha):
    ws = Websocket(daphne, f"/clients/alpha/stream?token={_token(alpha.viewer)}")
    try:
        assert ws.status == 101
        time.sleep(0.3)  # the consumer joins its group right after the handshake
        publish_fanned_out(client_id="alpha", type="halt", data={"scope": "client", "halted": True, "reason": "e2e"})
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
    ws = Websocket(daphne, f"/clients/alpha/stream?token={_token(alpha.viewer)}")
    try:
        assert ws.status == 101
        time.sleep(7)
        publish_fanned_out(client_id="alpha", type="halt", data={"scope": "client", "halted": False, "reason": "idle"})
        while True:
            opcode, payload = ws.frame()
            assert opcode == 1, f"the stream closed: opcode {opcode} {payload!r}"
            if json.loads(payload)["data"].get("reason") == "idle":
                break
    finally:
        ws.close()


def test_a_non_member_is_closed_with_4404_through_daphne(daphne, alpha, beta):
    ws = Websocket(daphne, f"/clients/beta/stream?token={_token(alpha.viewer)}")
    try:
        assert ws.status == 101
        opcode, payload = ws.frame()
        assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 4404
    finally:
        ws.close()
