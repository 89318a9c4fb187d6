"""Thin Celery tasks. tenant-schemas-celery runs each in the schema it was sent from."""
from __future__ import annotations

from django.db import connection

from tenants.models import Client
from tradingplatform.celery import app
from tradingplatform.logging import log_context


@app.task(name="risk.books_sync_all", ignore_result=True)
def books_sync_all_task() -> list[str]:
    from risk.services import books_sync_schedule

    return books_sync_schedule()


@app.task(name="risk.book_sync", ignore_result=True)
def book_sync_task(client_id: str) -> bool:
    from risk.services import client_book_sync

    client = Client.objects.get(client_id=client_id)
    if connection.schema_name != client.schema_name:
        raise RuntimeError(f"book sync for {client_id} ran in schema {connection.schema_name}")
    with log_context(client_id=client_id):
        return client_book_sync(client=client)


@app.task(name="risk.book_history_compact_all", ignore_result=True)
def book_history_compact_all_task() -> list[str]:
    from risk.services import book_history_compact_schedule

    return book_history_compact_schedule()


@app.task(name="risk.book_history_compact", ignore_result=True)
def book_history_compact_task(client_id: str) -> dict[str, int]:
    from risk.services import book_history_compact

    client = Client.objects.get(client_id=client_id)
    if connection.schema_name != client.schema_name:
        raise RuntimeError(f"book history compaction for {client_id} ran in schema {connection.schema_name}")
    with log_context(client_id=client_id):
        result = book_history_compact()
    return {"thinned": result.thinned, "expired": result.expired}
