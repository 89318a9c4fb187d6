"""Test helper: book syncs over simulated time, as the scheduled sync runs them."""
from __future__ import annotations

from datetime import timedelta

from django_tenants.utils import tenant_context

from brokers.services import broker_session
from risk import services


def syncs_over_time(fixture, clock, *, count: int, step: timedelta) -> list:
    """`count` book syncs of `fixture`'s book, the (time-machine) `clock` moved on by `step` before
    each; the simulated market moves with it. Returns each sync's snapshot."""
    snapshots = []
    for _ in range(count):
        clock.shift(step)
        with tenant_context(fixture.client), broker_session() as broker:
            snapshots.append(services.book_sync(client=fixture.client, broker=broker))
    return snapshots
