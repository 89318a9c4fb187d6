"""The live stream's outbox: every event of `WS /clients/{client_id}/stream`, written in PostgreSQL
in the same transaction as the change that causes it (`tradingplatform.events.publish_event`).

Shared tables (public schema) keyed by client, like the audit trail: an event outlives its
fan-out, and a replay (`?since=<seq>`) reads them whatever happened to Redis.
"""
from __future__ import annotations

from typing import Any

from django.db import models

from tenants.models import CLIENT_ID_MAX_LENGTH


class StreamCounter(models.Model):
    """Each client's last `seq`. A publisher increments it in its own transaction and holds the
    row's lock until that transaction ends, so the client's events commit in `seq` order and a
    rolled-back change takes its number back: seqs are strictly increasing and without gaps."""

    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH, primary_key=True)
    seq = models.BigIntegerField()

    class Meta:
        db_table = "stream_counter"

    def __str__(self) -> str:
        return f"{self.client_id} #{self.seq}"


class StreamEvent(models.Model):
    """One event, as the stream sends it. `fanned_out` is set once it has been handed to the
    channel layer; the relay sends on whatever commits without it (Redis down at the time)."""

    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH)
    seq = models.BigIntegerField()
    type = models.CharField(max_length=32)
    ts = models.DateTimeField()
    data = models.JSONField()
    fanned_out = models.BooleanField(default=False)

    class Meta:
        db_table = "stream_event"
        constraints = [models.UniqueConstraint(fields=["client_id", "seq"], name="stream_event_client_seq")]
        indexes = [
            models.Index(fields=["ts"], name="stream_event_ts"),
            models.Index(fields=["id"], name="stream_event_pending", condition=models.Q(fanned_out=False)),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} #{self.seq} {self.type}"

    def as_event(self) -> dict[str, Any]:
        return {"type": self.type, "client_id": self.client_id, "seq": self.seq,
                "ts": self.ts.isoformat(), "data": self.data}
