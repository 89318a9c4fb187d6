"""What the platform's Celery tasks and web requests run inside, so that one slow or stuck client
delays nobody else (docs/runbooks/stalled-cycles.md):

- `database_waits_bounded`: every lock wait (rows, tables, the advisory locks of
  `tradingplatform.locks`) ends after TASK_LOCK_TIMEOUT_SECONDS and every statement after
  TASK_STATEMENT_TIMEOUT_SECONDS, on this task's connection only; when the task's soft time limit
  fires, the statement in flight is cancelled on the server and the connection closed, so the
  database work ends with the task instead of waiting on.
- `client_worker_slot`: at most one task of a client runs at a time on the whole platform; a second
  one is told at once (it skips, never waits), so no client ever holds more than one worker slot.
- `database_busy`: whether an error is one of those bounds firing (the client is busy, not broken).
- `RequestDatabaseWaitsBoundedMiddleware`: a web request's lock waits end after
  WEB_LOCK_TIMEOUT_SECONDS and its statements after WEB_STATEMENT_TIMEOUT_SECONDS; one that meets a
  client's lock held by a long cycle answers 503 "busy" (tradingplatform.outages) instead of
  holding one of the server's few worker threads for as long as the cycle runs.
- `lock_waits_unbounded`: a halt waits for its locks however long it takes (it must take effect).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, OperationalError, connection
from psycopg import errors as pg_errors

from tradingplatform.locks import advisory_lock_attempt

logger = logging.getLogger(__name__)


def _milliseconds(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _statement_cancel_and_close() -> None:
    """End whatever this connection's server process is doing (a lock wait, a long statement), and
    the connection with it (the session's advisory locks go too)."""
    raw = connection.connection
    if raw is not None:
        try:
            raw.cancel_safe(timeout=5.0)
        except Exception as exc:  # the cancel is best effort; the statement timeout bounds it anyway
            logger.warning("statement not cancelled", extra={"error": str(exc)[:200]})
    with contextlib.suppress(Exception):
        connection.close()


def _cancel_on_time_limit(execute, sql, params, many, context):
    """Around every statement of the block: the soft time limit, raised while the driver waits for
    the server, cancels the statement there (the driver alone would leave it running)."""
    try:
        return execute(sql, params, many, context)
    except SoftTimeLimitExceeded:
        _statement_cancel_and_close()
        raise


_BOUNDS_SET = "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)"


def _session_settings_restore(sql: str, params: list[str] | None = None) -> None:
    """Put this connection's session settings back after a block (nothing to do when its
    transaction is to be rolled back, which undoes them, or it is closed); a connection that
    cannot run it is closed rather than left with the block's settings."""
    if connection.connection is None or connection.needs_rollback:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    except DatabaseError:
        connection.close()


@contextlib.contextmanager
def database_waits_bounded(*, lock_timeout: float | None = None,
                           statement_timeout: float | None = None) -> Iterator[None]:
    """Bound this connection's lock waits and statements for the block (session settings, reset
    after it; a connection that cannot be reset is closed), and let a soft time limit cancel the
    statement in flight."""
    lock_ms = _milliseconds(settings.TASK_LOCK_TIMEOUT_SECONDS if lock_timeout is None else lock_timeout)
    statement_ms = _milliseconds(
        settings.TASK_STATEMENT_TIMEOUT_SECONDS if statement_timeout is None else statement_timeout)
    with connection.cursor() as cursor:
        cursor.execute(_BOUNDS_SET, [lock_ms, statement_ms])
    try:
        with connection.execute_wrapper(_cancel_on_time_limit):
            yield
    finally:
        _session_settings_restore("RESET lock_timeout; RESET statement_timeout")


@contextlib.contextmanager
def lock_waits_unbounded() -> Iterator[None]:
    """No lock_timeout for the block, whatever bound the task or request set: for an operator's
    halt, which must take effect even behind a long cycle. The bound in force before comes back
    after the block."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout'), set_config('lock_timeout', '0', false)")
        (previous, _) = cursor.fetchone()
    try:
        yield
    finally:
        _session_settings_restore("SELECT set_config('lock_timeout', %s, false)", [previous])


class RequestDatabaseWaitsBoundedMiddleware:
    """Bound the database waits of every request that uses the database (WEB_LOCK_TIMEOUT_SECONDS,
    WEB_STATEMENT_TIMEOUT_SECONDS), reset after it. The bounds are set just before the request's
    first statement on each connection it uses: a request that never reads the database (the
    liveness probe) opens no connection for them."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        bounds = [_milliseconds(settings.WEB_LOCK_TIMEOUT_SECONDS),
                  _milliseconds(settings.WEB_STATEMENT_TIMEOUT_SECONDS)]
        bounded: list[Any] = []  # the driver connection the bounds were set on, once set

        def bound_first(execute, sql, params, many, context):
            raw = context["connection"].connection
            if not bounded or bounded[-1] is not raw:
                with context["connection"].wrap_database_errors:  # Django's errors, as for any query
                    raw.execute(_BOUNDS_SET, bounds)
                bounded.append(raw)
            return execute(sql, params, many, context)

        try:
            with connection.execute_wrapper(bound_first):
                return self.get_response(request)
        finally:
            if bounded and bounded[-1] is connection.connection:
                _session_settings_restore("RESET lock_timeout; RESET statement_timeout")


def database_busy(exc: BaseException) -> bool:
    """True for a lock not granted in time or a statement cancelled (its timeout, a time limit):
    the work met someone else's lock or a slow database, not a fault of its own."""
    return isinstance(exc, OperationalError) and isinstance(
        exc.__cause__, pg_errors.LockNotAvailable | pg_errors.QueryCanceled)


@contextlib.contextmanager
def client_worker_slot(client_id: str) -> Iterator[bool]:
    """The client's one worker slot, taken without waiting; yields whether it was taken. Held for
    the block by this task's database session, so a killed process frees it."""
    with advisory_lock_attempt(f"worker-slot:{client_id}") as taken:
        yield taken
