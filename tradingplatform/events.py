"""Live events for `WS /clients/{client_id}/stream`.

Every event is `{"type", "client_id", "seq", "ts", "data"}` with `seq` increasing per client
(a Redis counter, so it holds across processes). Each event is appended to a capped per-client
list (`client:{client_id}:events`) for late joiners, and sent to the client's channel-layer group
(`client.{client_id}`) that stream consumers join.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)

EVENT_TYPES = frozenset({"agent_status", "greeks", "agent_message", "proposal", "trade", "risk", "halt"})
RECENT_EVENTS_KEPT = 500


def client_key(client_id: str, name: str) -> str:
    return f"client:{client_id}:{name}"


def client_group(client_id: str) -> str:
    return f"client.{client_id}"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def publish_event(*, client_id: str, type: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """Publish one event; returns it, or None when Redis is unreachable.

    Publishing never fails the caller: the audit trail, not the stream, is the record of what
    happened, and a trading decision must not be undone because a dashboard could not be told.
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    try:
        connection = _redis()
        try:
            seq = connection.incr(client_key(client_id, "seq"))
            event = {"type": type, "client_id": client_id, "seq": seq,
                     "ts": timezone.now().isoformat(), "data": data}
            text = json.dumps(event, default=str)
            pipeline = connection.pipeline()
            pipeline.lpush(client_key(client_id, "events"), text)
            pipeline.ltrim(client_key(client_id, "events"), 0, RECENT_EVENTS_KEPT - 1)
            pipeline.execute()
        finally:
            connection.close()
        async_to_sync(get_channel_layer().group_send)(
            client_group(client_id), {"type": "stream.event", "event": json.loads(text)}
        )
        return event
    except (redis.RedisError, OSError) as exc:
        logger.error("live event not published", extra={"event_type": type, "error": str(exc)})
        return None


def recent_events(*, client_id: str, limit: int = 50, since: int | None = None) -> list[dict[str, Any]]:
    """The client's kept events, oldest first: the last `limit`, or with `since` every kept event
    whose seq is greater (a reconnecting stream's catch-up; older ones than the kept are gone)."""
    connection = _redis()
    try:
        raw = connection.lrange(client_key(client_id, "events"), 0, (RECENT_EVENTS_KEPT if since is not None else limit) - 1)
    finally:
        connection.close()
    events = [json.loads(item) for item in reversed(raw)]
    if since is not None:
        events = [event for event in events if event["seq"] > since]
    return events


def live_state_set(*, client_id: str, name: str, data: dict[str, Any]) -> None:
    """Latest value of a piece of live state (`client:{client_id}:{name}`), best effort."""
    try:
        connection = _redis()
        try:
            connection.set(client_key(client_id, name), json.dumps(data, default=str))
        finally:
            connection.close()
    except (redis.RedisError, OSError) as exc:
        logger.error("live state not stored", extra={"state": name, "error": str(exc)})


def live_state_get(*, client_id: str, name: str) -> dict[str, Any] | None:
    try:
        connection = _redis()
        try:
            raw = connection.get(client_key(client_id, name))
        finally:
            connection.close()
    except (redis.RedisError, OSError):
        return None
    return json.loads(raw) if raw else None


def flag_set_once(*, client_id: str, name: str, ttl_seconds: float) -> bool:
    """Set `client:{client_id}:{name}` unless it is set; True when this call set it. False also
    when Redis is unreachable: whatever the flag guards (queueing a task) cannot happen then."""
    try:
        connection = _redis()
        try:
            return bool(connection.set(client_key(client_id, name), "1", nx=True, ex=max(1, int(ttl_seconds))))
        finally:
            connection.close()
    except (redis.RedisError, OSError) as exc:
        logger.error("flag not set", extra={"flag": name, "error": str(exc)})
        return False
