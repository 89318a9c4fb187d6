"""Thin Celery tasks for the stream's outbox (beat runs them; see CELERY_BEAT_SCHEDULE)."""
from __future__ import annotations

from tradingplatform.celery import app


@app.task(name="stream.events_relay", ignore_result=True)
def events_relay_task() -> int:
    from tradingplatform.events import events_relay

    return events_relay()


@app.task(name="stream.events_prune", ignore_result=True)
def events_prune_task() -> int:
    from tradingplatform.events import events_prune

    return events_prune()
