"""The live stream through the whole ASGI application: tenant middleware, routing, consumer and the
Redis channel layer."""
import json

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from tradingplatform.asgi import application
from tradingplatform.events import publish_event


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


def test_a_member_receives_recent_events_then_live_ones(alpha):
    publish_event(client_id="alpha", type="risk", data={"event": "before"})
    token = AccessToken.for_user(alpha.viewer)

    async def publish():
        from channels.db import database_sync_to_async

        await database_sync_to_async(publish_event)(client_id="alpha", type="halt", data={"event": "live"})

    connected, events, _ = _stream(f"/clients/alpha/stream?token={token}", publish=publish, expect=2)
    assert connected
    assert [event["data"]["event"] for event in events] == ["before", "live"]
    assert events[0]["seq"] < events[1]["seq"]
    assert {event["client_id"] for event in events} == {"alpha"}
    assert set(events[1]) == {"type", "client_id", "seq", "ts", "data"}


def test_events_of_another_client_never_reach_a_stream(alpha, beta):
    publish_event(client_id="beta", type="risk", data={"event": "beta, before"})
    token = AccessToken.for_user(alpha.viewer)

    async def run():
        from channels.db import database_sync_to_async

        communicator = WebsocketCommunicator(application, f"/clients/alpha/stream?token={token}")
        connected, _ = await communicator.connect()
        await database_sync_to_async(publish_event)(client_id="beta", type="risk", data={"event": "beta, live"})
        nothing = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return connected, nothing

    assert async_to_sync(run)() == (True, True)


def test_a_non_member_is_closed_with_4404_and_a_bad_token_with_4401(alpha, beta):
    assert _stream(f"/clients/beta/stream?token={AccessToken.for_user(alpha.viewer)}")[2] == 4404
    assert _stream("/clients/alpha/stream?token=not-a-token")[2] == 4401


def test_the_token_may_come_in_the_subprotocol_header(alpha):
    publish_event(client_id="alpha", type="risk", data={"event": "x"})
    connected, events, subprotocol = _stream("/clients/alpha/stream",
                                             subprotocols=["bearer", str(AccessToken.for_user(alpha.trader))])
    assert connected and subprotocol == "bearer" and events


def test_a_reconnect_with_since_replays_exactly_what_it_missed(alpha):
    seqs = [publish_event(client_id="alpha", type="greeks", data={"n": n})["seq"] for n in range(80)]
    token = AccessToken.for_user(alpha.viewer)
    connected, events, _ = _stream(f"/clients/alpha/stream?token={token}&since={seqs[9]}", expect=70)
    assert connected
    assert [event["seq"] for event in events] == seqs[10:]  # beyond the usual 50: all it missed
    assert [event["data"]["n"] for event in events] == list(range(10, 80))


def test_a_malformed_since_falls_back_to_the_recent_replay(alpha):
    publish_event(client_id="alpha", type="risk", data={"event": "recent"})
    token = AccessToken.for_user(alpha.viewer)
    connected, events, _ = _stream(f"/clients/alpha/stream?token={token}&since=yesterday", expect=1)
    assert connected and events[0]["data"]["event"] == "recent"
