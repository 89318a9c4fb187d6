"""Thin Celery tasks. tenant-schemas-celery runs each in the schema it was sent from.

Delivery guarantees (docs/runbooks/stalled-cycles.md): the fan-outs are acknowledged on receipt
(beat sends them again); a client's book sync and history compaction are acknowledged after they
ran and requeued when their pool process dies, both being safe to repeat (a sync reads the broker
and records what it read; a compaction of compacted history changes nothing). Each runs in its
client's one worker slot, skipping when another task of the client holds it."""
from __future__ import annotations

import logging

from django.db import DatabaseError, connection

from tenants.models import Client
from tradingplatform.celery import app
from tradingplatform.logging import log_context
from tradingplatform.tasking import client_worker_slot, database_busy, database_waits_bounded

logger = logging.getLogger(__name__)

COMPACT_SOFT_TIME_LIMIT = 240
COMPACT_STATEMENT_TIMEOUT = 200  # below the soft time limit: a limit never leaves a statement behind


@app.task(name="risk.books_sync_all", ignore_result=True, acks_late=False, soft_time_limit=45, time_limit=60)
def books_sync_all_task() -> list[str]:
    from risk.services import books_sync_schedule

    with database_waits_bounded():
        return books_sync_schedule()


@app.task(name="risk.book_sync", ignore_result=True, acks_late=True, reject_on_worker_lost=True,
          soft_time_limit=60, time_limit=90)
def book_sync_task(client_id: str) -> bool:
    from risk.services import client_book_sync

    client = Client.objects.get(client_id=client_id)
    if connection.schema_name != client.schema_name:
        raise RuntimeError(f"book sync for {client_id} ran in schema {connection.schema_name}")
    with log_context(client_id=client_id), client_worker_slot(client_id) as taken:
        if not taken:
            logger.info("book sync skipped: another task of this client is running")
            return False
        try:
            with database_waits_bounded():
                return client_book_sync(client=client)
        except DatabaseError as exc:
            if not database_busy(exc):
                raise
            logger.warning("book sync skipped: client busy", extra={"error": str(exc).strip()[:300]})
            return False


@app.task(name="risk.book_history_compact_all", ignore_result=True, acks_late=False, soft_time_limit=45,
          time_limit=60)
def book_history_compact_all_task() -> list[str]:
    from risk.book_history import book_history_compact_schedule

    with database_waits_bounded():
        return book_history_compact_schedule()


@app.task(name="risk.book_history_compact", ignore_result=True, acks_late=True, reject_on_worker_lost=True,
          soft_time_limit=COMPACT_SOFT_TIME_LIMIT, time_limit=COMPACT_SOFT_TIME_LIMIT + 60)
def book_history_compact_task(client_id: str) -> dict[str, int]:
    from risk.book_history import book_history_compact
    from risk.option_history import option_history_compact

    client = Client.objects.get(client_id=client_id)
    if connection.schema_name != client.schema_name:
        raise RuntimeError(f"book history compaction for {client_id} ran in schema {connection.schema_name}")
    with log_context(client_id=client_id), client_worker_slot(client_id) as taken:
        if not taken:
            logger.info("book history compaction skipped: another task of this client is running")
            return {"thinned": 0, "expired": 0, "option_quotes_thinned": 0, "option_quotes_expired": 0}
        with database_waits_bounded(statement_timeout=COMPACT_STATEMENT_TIMEOUT):
            result = book_history_compact()
            options = option_history_compact()
    return {"thinned": result.thinned, "expired": result.expired,
            "option_quotes_thinned": options.thinned, "option_quotes_expired": options.expired}
