"""`WS /clients/{client_id}/stream`: the client's live events.

The tenant middleware has already authenticated the token and checked membership (close 4401 /
4404 otherwise). On connect the consumer replays the client's recent events (so a dashboard that
joins late is not blank) — or, with `?since=<seq>`, every kept event after that seq (a reconnect
catching up) — then forwards every event published to the client's group. An event published
while the replay is read may arrive twice; `seq` lets the reader drop the repeat.
"""
from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tradingplatform.events import client_group, recent_events

REPLAYED_EVENTS = 50


def _since(query_string: bytes) -> int | None:
    """`?since=<seq>` as a non-negative int; absent or malformed means the usual recent replay."""
    values = parse_qs(query_string.decode("latin-1")).get("since")
    if not values or not values[0].isdigit():
        return None
    return int(values[0])


class ClientStreamConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        client_id = self.scope["client_access"].client.client_id
        self.group = client_group(client_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept(self.scope.get("ws_subprotocol"))
        since = _since(self.scope.get("query_string", b""))
        replay = await database_sync_to_async(recent_events)(client_id=client_id, limit=REPLAYED_EVENTS, since=since)
        for event in replay:
            await self.send_json(event)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        # The stream is one-way; chat goes through POST /clients/{id}/agent/chat.
        await self.send_json({"type": "error", "data": {"detail": "This stream does not take messages."}})

    async def stream_event(self, message: dict) -> None:
        await self.send_json(message["event"])
