"""Thin Celery tasks. tenant-schemas-celery runs each in the schema it was sent from."""
from __future__ import annotations

from django.db import connection

from tenants.models import Client
from tradingplatform.celery import app
from tradingplatform.logging import log_context


@app.task(name="agents.cycles_schedule", ignore_result=True)
def cycles_schedule_task() -> list[str]:
    from agents.services import cycles_schedule

    return cycles_schedule()


# acks_late (the default in settings): a cycle whose worker died is redelivered, and its key makes
# the redelivery resume that cycle (asking the broker) instead of deciding and sending again.
@app.task(name="agents.cycle", ignore_result=True, acks_late=True, soft_time_limit=120, time_limit=150)
def agent_cycle_task(client_id: str, key: str) -> str:
    from agents.services import cycle_run
    from audit.rls import rls_context

    client = Client.objects.get(client_id=client_id)
    if connection.schema_name != client.schema_name:
        raise RuntimeError(f"agent cycle for {client_id} ran in schema {connection.schema_name}")
    with log_context(client_id=client_id), rls_context(client_id=client_id, is_admin=False):
        outcome = cycle_run(client=client, key=key, trigger="schedule")
    return outcome.skipped or "completed"
