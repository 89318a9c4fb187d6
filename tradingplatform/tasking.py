"""What the platform's Celery tasks run inside, so that one slow or stuck client delays nobody else
(docs/runbooks/stalled-cycles.md):

- `database_waits_bounded`: every lock wait (rows, tables, the advisory locks of
  `tradingplatform.locks`) ends after TASK_LOCK_TIMEOUT_SECONDS and every statement after
  TASK_STATEMENT_TIMEOUT_SECONDS, on this task's connection only; when the task's soft time limit
  fires, the statement in flight is cancelled on the server and the connection closed, so the
  database work ends with the task instead of waiting on.
- `client_worker_slot`: at most one task of a client runs at a time on the whole platform; a second
  one is told at once (it skips, never waits), so no client ever holds more than one worker slot.
- `database_busy`: whether an error is one of those bounds firing (the client is busy, not broken).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

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
        cursor.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                       [lock_ms, statement_ms])
    try:
        with connection.execute_wrapper(_cancel_on_time_limit):
            yield
    finally:
        if connection.connection is not None and not connection.needs_rollback:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("RESET lock_timeout; RESET statement_timeout")
            except DatabaseError:
                connection.close()


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
