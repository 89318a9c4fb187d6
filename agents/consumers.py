"""`WS /clients/{client_id}/stream`: the client's live events.

The tenant middleware has already authenticated the token and checked membership (close 4401 /
4404 otherwise). On connect the consumer replays the client's recent events from PostgreSQL (so a
dashboard that joins late is not blank) — or, with `?since=<seq>`, every stored event after that
seq (a reconnect catching up) — then forwards the events fanned out to the client's group.

A socket receives each seq once, in increasing order and without gaps: an event it already sent
(the replay raced the fan-out, the relay sent one again) is dropped, and one that arrives ahead of
those before it (fan-outs of concurrent commits cross, the relay sends late what Redis missed)
first has the missing ones read from PostgreSQL and sent. A dependency down closes the socket
1013 (try again later; `tradingplatform.outages`): the client reconnects with `?since=`.

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
from tradingplatform.events import client_group, events_after, last_seq, recent_events
from tradingplatform.outages import WS_CLOSE_TRY_AGAIN_LATER, outage_logged, unavailable_dependency

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
        self.client_id = client_id
        since = _since(self.scope.get("query_string", b""))
        if since is None:
            replay = await database_sync_to_async(recent_events)(client_id=client_id, limit=REPLAYED_EVENTS)
            self.last_seq = replay[0]["seq"] - 1 if replay else await database_sync_to_async(last_seq)(
                client_id=client_id)
            await self._send_in_order(replay)
        else:
            # A seq ahead of the client's newest (a stream numbered before the outbox) starts from
            # the newest: nothing after it is dropped as already seen.
            self.last_seq = min(since, await database_sync_to_async(last_seq)(client_id=client_id))
            await self._catch_up(before=None)
        self.watchdog = asyncio.ensure_future(self._watch_access(client_id))

    async def _watch_access(self, client_id: str) -> None:
        raw_token = self.scope.get("ws_token", "")
        session_key = self.scope.get("ws_session_key", "")
        verdict = database_sync_to_async(stream_access_verdict)
        while True:
            await asyncio.sleep(settings.WS_REAUTH_SECONDS)
            try:
                code = await verdict(raw_token=raw_token, client_id=client_id, session_key=session_key)
            except Exception as exc:
                # Access that cannot be checked (the database is down) does not hold: try again later.
                if (dependency := unavailable_dependency(exc)) is None:
                    raise
                outage_logged(dependency, exc, self.scope.get("path", ""))
                code = WS_CLOSE_TRY_AGAIN_LATER
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
        event = message["event"]
        if event["seq"] <= self.last_seq:
            return
        if event["seq"] > self.last_seq + 1:
            await self._catch_up(before=event["seq"])
        await self._send_in_order([event])

    async def _catch_up(self, *, before: int | None) -> None:
        """Send the stored events after the last one sent (and before `before`), page by page."""
        read = database_sync_to_async(events_after)
        while page := await read(client_id=self.client_id, after=self.last_seq, before=before):
            await self._send_in_order(page)

    async def _send_in_order(self, events: list[dict]) -> None:
        for event in events:
            if event["seq"] > self.last_seq:
                await self.send_json(event)
                self.last_seq = event["seq"]
