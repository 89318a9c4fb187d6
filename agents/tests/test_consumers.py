"""The live stream through the whole ASGI application: tenant middleware, routing, consumer and the
Redis channel layer.

The consumer reads the outbox through `database_sync_to_async`, which closes a connection found
inside a transaction; these tests therefore run on the session's committed clients with their
writes committed at once (no test transaction), on `race` and `beta`.
"""
import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import TestCase
from rest_framework_simplejwt.tokens import AccessToken

from tradingplatform.asgi import application
from tradingplatform.events import client_group, last_seq, publish_event


@pytest.fixture
def committed(django_db_setup, django_db_blocker):
    """The session's clients, with this test's writes committed at once."""
    with django_db_blocker.unblock():
        yield django_db_setup


async def _replay(communicator) -> list[dict]:
    """What a stream sends before anything is published: its replay."""
    replay = []
    while not await communicator.receive_nothing(timeout=0.3):
        replay.append(json.loads((await communicator.receive_output())["text"]))
    return replay


def _stream(path: str, publish=None, expect: int = 1, subprotocols=None):
    async def run():
        communicator = WebsocketCommunicator(application, path, subprotocols=subprotocols)
        connected, subprotocol = await communicator.connect()
        received = []
        if connected:
            if publish is not None:
                await publish()
            for _ in range(expect):
                message = await communicator.receive_output(timeout=5)
                if message["type"] == "websocket.close":
                    return connected, received, message["code"]
                received.append(json.loads(message["text"]))
            await communicator.disconnect()
        return connected, received, subprotocol

    return async_to_sync(run)()


def test_a_member_receives_recent_events_then_live_ones(committed):
    before = publish_event(client_id="race", type="risk", data={"event": "before"})
    token = AccessToken.for_user(committed["race"].viewer)

    async def run():
        communicator = WebsocketCommunicator(application, f"/clients/race/stream?token={token}")
        connected, _ = await communicator.connect()
        replay = await _replay(communicator)
        await database_sync_to_async(publish_event)(client_id="race", type="halt", data={"event": "live"})
        live = json.loads((await communicator.receive_output(timeout=5))["text"])
        await communicator.disconnect()
        return connected, replay, live

    connected, replay, live = async_to_sync(run)()
    assert connected
    assert 1 <= len(replay) <= 50 and replay[-1] == before  # the recent ones, oldest first, up to now
    assert [event["seq"] for event in replay] == sorted(event["seq"] for event in replay)
    assert live["data"] == {"event": "live"} and live["seq"] == before["seq"] + 1
    assert set(live) == {"type", "client_id", "seq", "ts", "data"} and live["client_id"] == "race"


def test_events_of_another_client_never_reach_a_stream(committed):
    publish_event(client_id="beta", type="risk", data={"event": "beta, before"})
    token = AccessToken.for_user(committed["race"].viewer)

    async def run():
        communicator = WebsocketCommunicator(application, f"/clients/race/stream?token={token}&since=0")
        connected, _ = await communicator.connect()
        await database_sync_to_async(publish_event)(client_id="beta", type="risk", data={"event": "beta, live"})
        while not await communicator.receive_nothing(timeout=0.5):
            assert json.loads((await communicator.receive_output())["text"])["client_id"] == "race"
        await communicator.disconnect()
        return connected

    assert async_to_sync(run)()


def test_a_non_member_is_closed_with_4404_and_a_bad_token_with_4401(alpha, beta):
    # In a test transaction (the `db` fixture): this module's one test that needs the test database
    # made when it runs alone; refused sockets never reach the consumer's reads.
    assert _stream(f"/clients/beta/stream?token={AccessToken.for_user(alpha.viewer)}")[2] == 4404
    assert _stream("/clients/alpha/stream?token=not-a-token")[2] == 4401


def test_the_token_may_come_in_the_subprotocol_header(committed):
    publish_event(client_id="race", type="risk", data={"event": "x"})
    token = str(AccessToken.for_user(committed["race"].trader))
    connected, events, subprotocol = _stream("/clients/race/stream", subprotocols=["bearer", token])
    assert connected and subprotocol == "bearer" and events


def test_a_reconnect_with_since_replays_exactly_what_it_missed(committed):
    seqs = [publish_event(client_id="race", type="greeks", data={"n": n})["seq"] for n in range(80)]
    token = AccessToken.for_user(committed["race"].viewer)
    connected, events, _ = _stream(f"/clients/race/stream?token={token}&since={seqs[9]}", expect=70)
    assert connected
    assert [event["seq"] for event in events] == seqs[10:]  # beyond the usual 50: all it missed
    assert [event["data"]["n"] for event in events] == list(range(10, 80))


def test_a_reconnect_after_more_than_a_page_misses_nothing(committed):
    seqs = [publish_event(client_id="race", type="greeks", data={"n": n})["seq"] for n in range(502)]
    token = AccessToken.for_user(committed["race"].viewer)
    connected, events, _ = _stream(f"/clients/race/stream?token={token}&since={seqs[0]}", expect=501)
    assert connected and [event["seq"] for event in events] == seqs[1:]


def test_a_since_ahead_of_the_clients_newest_seq_still_gets_what_follows(committed):
    """A seq from before the outbox (or another counter) is no reason to drop new events."""
    token = AccessToken.for_user(committed["race"].viewer)
    ahead = last_seq(client_id="race") + 1000

    async def publish():
        await database_sync_to_async(publish_event)(client_id="race", type="halt", data={"event": "after"})

    connected, events, _ = _stream(f"/clients/race/stream?token={token}&since={ahead}", publish=publish)
    assert connected and events[0]["data"] == {"event": "after"}


def test_a_malformed_since_falls_back_to_the_recent_replay(committed):
    recent = publish_event(client_id="race", type="risk", data={"event": "recent"})
    token = AccessToken.for_user(committed["race"].viewer)

    async def run():
        communicator = WebsocketCommunicator(application, f"/clients/race/stream?token={token}&since=yesterday")
        connected, _ = await communicator.connect()
        replay = await _replay(communicator)
        await communicator.disconnect()
        return connected, replay

    connected, replay = async_to_sync(run)()
    assert connected and 1 <= len(replay) <= 50 and replay[-1] == recent


def test_each_seq_reaches_a_socket_once_in_order_whatever_order_the_fan_out_arrives_in(committed):
    """Fan-outs of concurrent commits cross, and the relay sends late (or twice) what Redis missed:
    the socket fills a gap from PostgreSQL and drops what it already sent."""
    token = AccessToken.for_user(committed["race"].viewer)
    layer = get_channel_layer()

    async def run():
        communicator = WebsocketCommunicator(application, f"/clients/race/stream?token={token}")
        connected, _ = await communicator.connect()
        await _replay(communicator)

        def publish_unsent(n: int) -> list[dict]:
            # Committed, but their fan-out (on commit) is held back, as when Redis was down.
            with TestCase.captureOnCommitCallbacks(execute=False):
                return [publish_event(client_id="race", type="greeks", data={"n": i}) for i in range(n)]

        events = await database_sync_to_async(publish_unsent)(3)
        for event in (events[2], events[0], events[2], events[1]):
            await layer.group_send(client_group("race"), {"type": "stream.event", "event": event})
        received = [json.loads((await communicator.receive_output(timeout=5))["text"]) for _ in range(3)]
        nothing_more = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return connected, events, received, nothing_more

    connected, events, received, nothing_more = async_to_sync(run)()
    assert connected and nothing_more
    assert [event["seq"] for event in received] == [event["seq"] for event in events]
    assert [event["data"]["n"] for event in received] == [0, 1, 2]
