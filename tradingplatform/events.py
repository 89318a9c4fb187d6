"""Live events for `WS /clients/{client_id}/stream`.

Every event is `{"type", "client_id", "seq", "ts", "data"}` with `seq` increasing per client
(a Redis counter, so it holds across processes). Each event is appended to a capped per-client
list (`client:{client_id}:events`) for late joiners, and sent to the client's channel-layer group
(`client.{client_id}`) that stream consumers join.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
from typing import Any

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)

EVENT_TYPES = frozenset({"agent_status", "greeks", "agent_message", "proposal", "trade", "order", "risk", "halt"})
RECENT_EVENTS_KEPT = 500


def client_key(client_id: str, name: str) -> str:
    return f"client:{client_id}:{name}"


def client_group(client_id: str) -> str:
    return f"client.{client_id}"


@functools.cache
def _client(url: str) -> redis.Redis:
    # One client (and connection pool) per process and URL: a connection per event cost 1.3 ms of
    # the 4 ms from publish to websocket (bench/README.md). redis-py's pool is thread-safe and
    # starts afresh in a forked child.
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def _redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


_layer_loop: tuple[int, asyncio.AbstractEventLoop] | None = None
_layer_loop_lock = threading.Lock()
GROUP_SEND_TIMEOUT_SECONDS = 5.0


def _channel_layer_loop() -> asyncio.AbstractEventLoop:
    """One event loop per process, in a daemon thread, for sending to the channel layer from sync
    code. `async_to_sync` would start a loop per call, and channels-redis a connection per loop:
    3.4 ms of the 4 ms from publish to websocket (bench/README.md). A forked child makes its own."""
    global _layer_loop
    with _layer_loop_lock:
        if _layer_loop is None or _layer_loop[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-layer", daemon=True).start()
            _layer_loop = (os.getpid(), loop)
        return _layer_loop[1]


def _group_send(group: str, message: dict[str, Any]) -> None:
    send = get_channel_layer().group_send(group, message)
    asyncio.run_coroutine_threadsafe(send, _channel_layer_loop()).result(timeout=GROUP_SEND_TIMEOUT_SECONDS)


def publish_event(*, client_id: str, type: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """Publish one event; returns it, or None when Redis is unreachable.

    Publishing never fails the caller: the audit trail, not the stream, is the record of what
    happened, and a trading decision must not be undone because a dashboard could not be told.
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    try:
        connection = _redis()
        seq = connection.incr(client_key(client_id, "seq"))
        event = {"type": type, "client_id": client_id, "seq": seq,
                 "ts": timezone.now().isoformat(), "data": data}
        text = json.dumps(event, default=str)
        pipeline = connection.pipeline()
        pipeline.lpush(client_key(client_id, "events"), text)
        pipeline.ltrim(client_key(client_id, "events"), 0, RECENT_EVENTS_KEPT - 1)
        pipeline.execute()
        _group_send(client_group(client_id), {"type": "stream.event", "event": json.loads(text)})
        return event
    except (redis.RedisError, OSError) as exc:
        logger.error("live event not published", extra={"event_type": type, "error": str(exc)})
        return None


def recent_events(*, client_id: str, limit: int = 50, since: int | None = None) -> list[dict[str, Any]]:
    """The client's kept events, oldest first: the last `limit`, or with `since` every kept event
    whose seq is greater (a reconnecting stream's catch-up; older ones than the kept are gone)."""
    kept = RECENT_EVENTS_KEPT if since is not None else limit
    raw = _redis().lrange(client_key(client_id, "events"), 0, kept - 1)
    events = [json.loads(item) for item in reversed(raw)]
    if since is not None:
        events = [event for event in events if event["seq"] > since]
    return events


def live_state_set(*, client_id: str, name: str, data: dict[str, Any]) -> None:
    """Latest value of a piece of live state (`client:{client_id}:{name}`), best effort."""
    try:
        _redis().set(client_key(client_id, name), json.dumps(data, default=str))
    except (redis.RedisError, OSError) as exc:
        logger.error("live state not stored", extra={"state": name, "error": str(exc)})


def live_state_get(*, client_id: str, name: str) -> dict[str, Any] | None:
    try:
        raw = _redis().get(client_key(client_id, name))
    except (redis.RedisError, OSError):
        return None
    return json.loads(raw) if raw else None


def flag_set_once(*, client_id: str, name: str, ttl_seconds: float) -> bool:
    """Set `client:{client_id}:{name}` unless it is set; True when this call set it. False also
    when Redis is unreachable: whatever the flag guards (queueing a task) cannot happen then."""
    try:
        return bool(_redis().set(client_key(client_id, name), "1", nx=True, ex=max(1, int(ttl_seconds))))
    except (redis.RedisError, OSError) as exc:
        logger.error("flag not set", extra={"flag": name, "error": str(exc)})
        return False
