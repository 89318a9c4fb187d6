"""Celery beat's scheduler with a heartbeat: a file touched on every tick, so that a health check
can tell a beat that still schedules from one that hangs or has died (its container or process
still there, nothing scheduled). `python -m tradingplatform.entrypoint health beat` reads its age.
"""
from __future__ import annotations

from django_celery_beat.schedulers import DatabaseScheduler

from tradingplatform.entrypoint import beat_heartbeat_path


class HeartbeatScheduler(DatabaseScheduler):
    """The platform's scheduler (django-celery-beat's, schedules in the database) that also
    touches the heartbeat file on every tick."""

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        beat_heartbeat_path().touch()
        return interval
