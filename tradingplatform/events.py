"""Live events for `WS /clients/{client_id}/stream`.

Every event is `{"type", "client_id", "seq", "ts", "data"}`. It is written in PostgreSQL with the
change that causes it (the outbox, `stream.StreamEvent`, in the caller's transaction), numbered by
the client's counter row (`stream.StreamCounter`): `seq` is strictly increasing per client and
without gaps, whatever happens to Redis, and events commit in `seq` order. Redis only fans them
out: once the transaction commits, the event is sent to the client's channel-layer group
(`client.{client_id}`) that stream consumers join; whatever could not be sent then (Redis down)
the relay (`events_relay`, every STREAM_RELAY_SECONDS) sends later. A reconnecting stream replays
from PostgreSQL (`events_after`), so a replay after any outage misses nothing.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import threading
from datetime import timedelta
from typing import Any

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.utils import timezone

from stream.models import StreamEvent

logger = logging.getLogger(__name__)

EVENT_TYPES = frozenset({"agent_status", "greeks", "agent_message", "proposal", "trade", "order", "risk", "halt"})
REPLAY_PAGE = 500
# Events published this recently are left to their own transaction's fan-out by the relay.
RELAY_GRACE_SECONDS = 2.0


def client_key(client_id: str, name: str) -> str:
    return f"client:{client_id}:{name}"


def client_group(client_id: str) -> str:
    return f"client.{client_id}"


@functools.cache
def _client(url: str) -> redis.Redis:
    # One client (and connection pool) per process and URL: a connection per event cost 1.3 ms of
    # the 4 ms from publish to websocket (bench/README.md). redis-py's pool is thread-safe and
    # starts afresh in a forked child; a connection found dead is dropped and the command retried
    # once on a fresh one (a restarted Redis), and idle ones are checked before use.
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=10,
                                retry=settings.REDIS_RETRY)


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


def _legacy_seq(client_id: str) -> int:
    """The client's last seq from before the outbox (a Redis counter), so that the first event
    numbered here continues above what streams last saw; 0 when there is none or Redis is down."""
    try:
        return int(_redis().get(client_key(client_id, "seq")) or 0)
    except (redis.RedisError, OSError, ValueError):
        return 0


def _counter_ensure(cursor, client_id: str) -> None:
    # The first number continues the pre-outbox Redis counter (best effort), so that streams that
    # saw seqs before the upgrade do not see them go backwards.
    cursor.execute("INSERT INTO stream_counter (client_id, seq) VALUES (%s, %s) ON CONFLICT (client_id) DO NOTHING",
                   [client_id, _legacy_seq(client_id)])


def _next_seq(client_id: str) -> int:
    """The client's next seq; the counter row stays locked until the caller's transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE stream_counter SET seq = seq + 1 WHERE client_id = %s RETURNING seq", [client_id])
        row = cursor.fetchone()
        if row is None:
            _counter_ensure(cursor, client_id)
            cursor.execute("UPDATE stream_counter SET seq = seq + 1 WHERE client_id = %s RETURNING seq", [client_id])
            row = cursor.fetchone()
    return row[0]


def stream_lock(*, client_id: str) -> None:
    """Hold the client's stream (its counter row) until the caller's transaction ends: no other
    event of the client commits meanwhile, so what `published_values` read stays true."""
    if not connection.in_atomic_block:
        raise RuntimeError("stream_lock needs a transaction")
    with connection.cursor() as cursor:
        _counter_ensure(cursor, client_id)
        cursor.execute("SELECT seq FROM stream_counter WHERE client_id = %s FOR UPDATE", [client_id])


def published_values(*, client_id: str, type: str, key: str) -> QuerySet:
    """`data[key]` (as text) of every stored event of the client of this type (within retention),
    as a subquery: `.exclude(field__in=published_values(...))` is an anti-join in PostgreSQL, so
    nothing is read into Python to learn what has not been published yet."""
    return (StreamEvent.objects.filter(client_id=client_id, type=type)
            .annotate(published_key=KT(f"data__{key}"))
            .filter(published_key__isnull=False)  # NOT IN over a NULL would match nothing at all
            .values("published_key"))


def publish_event(*, client_id: str, type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Write one event to the client's stream, in the caller's transaction (or its own); returns it.

    It commits or rolls back with the change that causes it, and is sent to the client's open
    streams once committed. Redis being down delays the sending, never the change. The client's
    counter row stays locked until the transaction ends (concurrent publishers for the same client
    wait): keep such transactions short. A database error raises, failing the change with it.
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    stored = json.loads(json.dumps(data, default=str))
    with transaction.atomic():
        row = StreamEvent.objects.create(client_id=client_id, seq=_next_seq(client_id), type=type,
                                         ts=timezone.now(), data=stored)
        transaction.on_commit(functools.partial(_fan_out, [row]), robust=True)
    return row.as_event()


def _fan_out(rows: list[StreamEvent]) -> int:
    """Send committed events to their clients' groups, in order, and mark those sent; stops at the
    first the channel layer refuses (the rest wait for the relay). Returns how many were sent."""
    sent: list[int] = []
    try:
        for row in rows:
            _group_send(client_group(row.client_id), {"type": "stream.event", "event": row.as_event()})
            sent.append(row.pk)
    except (redis.RedisError, OSError) as exc:
        logger.warning("live events not fanned out yet; the relay will send them",
                       extra={"events": len(rows) - len(sent), "error": str(exc)[:200]})
    if sent:
        try:
            _mark_fanned_out(sent)
        except DatabaseError as exc:
            logger.warning("fanned-out events not marked", extra={"error": str(exc)[:200]})
    return len(sent)


def _mark_fanned_out(ids: list[int]) -> None:
    if connection.in_atomic_block:  # a caller's transaction (a test's): marked with it
        StreamEvent.objects.filter(pk__in=ids).update(fanned_out=True)
        return
    # Its own transaction in one round trip (integers only: no parameters, so several statements
    # may go together), committed without waiting for the flush to disk: a mark lost in a crash
    # only has the relay send the event again, which streams drop (measured: 2.9 ms with a
    # transaction of three round trips waiting for the disk, 0.4 ms so).
    listed = ",".join(str(int(pk)) for pk in ids)
    with connection.cursor() as cursor:
        try:
            cursor.execute("BEGIN; SET LOCAL synchronous_commit TO OFF;"
                           f" UPDATE stream_event SET fanned_out = true WHERE id IN ({listed}); COMMIT")
        except DatabaseError:
            with contextlib.suppress(DatabaseError):  # leave no aborted transaction behind
                cursor.execute("ROLLBACK")
            raise


def events_relay(*, grace_seconds: float = RELAY_GRACE_SECONDS, batch: int = 1000) -> int:
    """Send the committed events whose fan-out failed (Redis was down), oldest first; the number
    sent. Streams drop a seq they already have, so sending one twice is harmless."""
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    pending = list(StreamEvent.objects.filter(fanned_out=False, ts__lt=cutoff).order_by("id")[:batch])
    pending.sort(key=lambda row: (row.client_id, row.seq))
    return _fan_out(pending) if pending else 0


def events_prune() -> int:
    """Forget events older than STREAM_RETENTION_HOURS (the replay horizon); the count deleted.
    The counters stay, so seq keeps increasing."""
    cutoff = timezone.now() - timedelta(hours=settings.STREAM_RETENTION_HOURS)
    deleted, _ = StreamEvent.objects.filter(ts__lt=cutoff).delete()
    return deleted


def last_seq(*, client_id: str) -> int:
    """The client's newest seq (0 before its first event)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT seq FROM stream_counter WHERE client_id = %s", [client_id])
        row = cursor.fetchone()
    return row[0] if row else 0


def events_after(*, client_id: str, after: int, before: int | None = None,
                 limit: int = REPLAY_PAGE) -> list[dict[str, Any]]:
    """The client's stored events with after < seq (< before), oldest first, at most `limit`."""
    rows = StreamEvent.objects.filter(client_id=client_id, seq__gt=after)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    return [row.as_event() for row in rows.order_by("seq")[:limit]]


def recent_events(*, client_id: str, limit: int = 50, since: int | None = None) -> list[dict[str, Any]]:
    """The client's stored events, oldest first: the last `limit`, or with `since` every stored
    event whose seq is greater (older ones than STREAM_RETENTION_HOURS are gone)."""
    if since is not None:
        events: list[dict[str, Any]] = []
        while page := events_after(client_id=client_id, after=events[-1]["seq"] if events else since):
            events.extend(page)
        return events
    rows = StreamEvent.objects.filter(client_id=client_id).order_by("-seq")[:limit]
    return [row.as_event() for row in reversed(rows)]


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
