"""Thin Celery tasks. tenant-schemas-celery runs each in the schema it was sent from.

Delivery guarantees (the table is in docs/runbooks/stalled-cycles.md): the fan-out tasks are
acknowledged on receipt (beat sends them again at its next tick); a cycle is acknowledged after it
ran and requeued when its pool process dies (`reject_on_worker_lost`), which is safe because its
key makes a second delivery resume that cycle (asking the broker about any order it sent) instead
of deciding and sending again."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from tenants.models import Client
from tradingplatform.celery import app
from tradingplatform.logging import log_context
from tradingplatform.tasking import client_worker_slot, database_waits_bounded

CYCLE_SOFT_TIME_LIMIT = 120
CYCLE_TIME_LIMIT = 150
# A cycle whose client's worker slot is taken (its book sync runs) is sent again this much later,
# while its slot lasts (a cycle queued without a slot, at most SLOT_BUSY_RETRIES_MAX times): it
# never waits in a worker for the slot.
SLOT_BUSY_RETRY_SECONDS = 0.5
SLOT_BUSY_RETRIES_MAX = 240


@app.task(name="agents.cycles_schedule", ignore_result=True, acks_late=False, soft_time_limit=45, time_limit=60)
def cycles_schedule_task() -> list[str]:
    from agents.services import cycles_schedule

    with database_waits_bounded():
        return cycles_schedule()


@app.task(name="agents.cycles_reap", ignore_result=True, acks_late=False, soft_time_limit=45, time_limit=60)
def cycles_reap_task() -> list[str]:
    from agents.services import cycles_reap

    with database_waits_bounded():
        return cycles_reap()


@app.task(name="agents.cycle", bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True,
          soft_time_limit=CYCLE_SOFT_TIME_LIMIT, time_limit=CYCLE_TIME_LIMIT)
def agent_cycle_task(self, client_id: str, key: str) -> str:
    from agents.services import cycle_run
    from audit.rls import rls_context

    client = Client.objects.get(client_id=client_id)
    if connection.schema_name != client.schema_name:
        raise RuntimeError(f"agent cycle for {client_id} ran in schema {connection.schema_name}")
    with log_context(client_id=client_id), client_worker_slot(client_id) as taken:
        if not taken:
            return _cycle_requeue(self, client_id=client_id, key=key)
        with database_waits_bounded(), rls_context(client_id=client_id, is_admin=False):
            outcome = cycle_run(client=client, key=key, trigger="schedule")
    return outcome.skipped or "completed"


def _cycle_requeue(task, *, client_id: str, key: str) -> str:
    """The client's slot is taken: the cycle is sent again shortly, with the same key and expiry,
    unless its slot is over by then (the next slot's cycle comes anyway)."""
    expires = task.request.expires
    expires_at = datetime.fromisoformat(expires) if isinstance(expires, str) else expires
    retry_at = timezone.now() + timedelta(seconds=SLOT_BUSY_RETRY_SECONDS)
    retries = task.request.retries or 0
    if (retry_at >= expires_at) if expires_at is not None else retries >= SLOT_BUSY_RETRIES_MAX:
        return "skipped: the client's worker slot stayed taken"
    task.apply_async(args=[client_id, key], countdown=SLOT_BUSY_RETRY_SECONDS, expires=expires_at,
                     retries=retries + 1)
    return "requeued: the client's worker slot is taken"
