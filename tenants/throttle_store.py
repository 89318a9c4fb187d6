"""Where the login throttle keeps its counts: the cache (Redis), or while Redis cannot be reached a
PostgreSQL table (the `login_throttle` cache alias, `tenants` migration 0004), so that logins keep
working during a Redis outage and keep being throttled by the same policy, never failing open.

Counts made in one store are not seen by the other: while Redis is down a username starts from the
failures it makes in PostgreSQL, and when Redis returns from those it had made there.
"""
from __future__ import annotations

import logging
from typing import Any

import redis
from django.core.cache import caches

logger = logging.getLogger(__name__)

FALLBACK_ALIAS = "login_throttle"


def _call(name: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return getattr(caches["default"], name)(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("login throttle: Redis unavailable, counting in PostgreSQL",
                       extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
        return getattr(caches[FALLBACK_ALIAS], name)(*args, **kwargs)


def get_many(keys: list[str]) -> dict[str, Any]:
    return _call("get_many", keys)


def add(key: str, value: Any, *, timeout: int) -> bool:
    return _call("add", key, value, timeout=timeout)


def incr(key: str) -> int:
    return _call("incr", key)


def touch(key: str, timeout: int) -> bool:
    return _call("touch", key, timeout)


def set(key: str, value: Any, *, timeout: int) -> None:
    _call("set", key, value, timeout=timeout)


def delete_many(keys: list[str]) -> None:
    _call("delete_many", keys)
