"""`WS /clients/{client_id}/stream`: the client's live events.

The tenant middleware has already authenticated the token and checked membership (close 4401 /
4404 otherwise). On connect the consumer replays the client's recent events (so a dashboard that
joins late is not blank) — or, with `?since=<seq>`, every kept event after that seq (a reconnect
catching up) — then forwards every event published to the client's group. An event published
while the replay is read may arrive twice; `seq` lets the reader drop the repeat.

Access is not judged once: every WS_REAUTH_SECONDS the consumer asks again whether its token and
its user's access still hold, and closes 4401 (token expired, user deactivated, password changed)
or 4404 (membership removed, role no longer allows) when they do not.
"""
from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from tenants.resolution import stream_access_verdict
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
        self.watchdog = asyncio.ensure_future(self._watch_access(client_id))

    async def _watch_access(self, client_id: str) -> None:
        raw_token = self.scope.get("ws_token", "")
        session_key = self.scope.get("ws_session_key", "")
        verdict = database_sync_to_async(stream_access_verdict)
        while True:
            await asyncio.sleep(settings.WS_REAUTH_SECONDS)
            code = await verdict(raw_token=raw_token, client_id=client_id, session_key=session_key)
            if code is not None:
                await self.close(code=code)
                return

    async def disconnect(self, code: int) -> None:
        if (watchdog := getattr(self, "watchdog", None)) is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watchdog
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        # The stream is one-way; chat goes through POST /clients/{id}/agent/chat.
        await self.send_json({"type": "error", "data": {"detail": "This stream does not take messages."}})

    async def stream_event(self, message: dict) -> None:
        await self.send_json(message["event"])
