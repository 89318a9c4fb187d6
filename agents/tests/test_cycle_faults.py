"""Faults, with real processes (a prefork Celery worker, beat, PostgreSQL, Redis): one client's
database locked for half a minute delays no other client, and cycles start on their schedule.

Every condition is on recorded data (the cycles' rows, the audit trail), never on how long the
test itself took: the clock only guards against a hang."""
from __future__ import annotations

import contextlib
import statistics
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from agents import schedule
from agents.models import AgentCycle
from agents.tests.books import configure
from tenants.models import Client
from tradingplatform.testing import audit_events, client_fixture_create
from tradingplatform.tests.servers import celery_beat, celery_worker, subprocess_env_for_tests

INTERVAL = 5  # seconds: the smallest cycle interval the parameters allow
LOCK_SECONDS = 30


@pytest.fixture
def committed(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        yield
        connections.close_all()


@contextlib.contextmanager
def only_these_clients_active(client_ids: tuple[str, ...]):
    """Committed clients for real processes: created if new, active for the block, and the suite's
    other clients suspended meanwhile (beat would run their cycles, which other tests count)."""
    fixtures = {}
    for client_id in client_ids:
        client = Client.objects.filter(client_id=client_id).first()
        fixtures[client_id] = client_fixture_create(client_id) if client is None else None
    others = list(Client.objects.filter(status=Client.Status.ACTIVE).exclude(client_id__in=client_ids)
                  .values_list("client_id", flat=True))
    Client.objects.filter(client_id__in=others).update(status=Client.Status.SUSPENDED)
    Client.objects.filter(client_id__in=client_ids).update(status=Client.Status.ACTIVE)
    try:
        yield {client_id: Client.objects.get(client_id=client_id) for client_id in client_ids}
    finally:
        Client.objects.filter(client_id__in=client_ids).update(status=Client.Status.SUSPENDED)
        Client.objects.filter(client_id__in=others).update(status=Client.Status.ACTIVE)


def _scheduled_cycles(client: Client) -> list[AgentCycle]:
    with tenant_context(client):
        return list(AgentCycle.objects.filter(key__startswith="schedule:").order_by("started_at"))


def _wait_for(condition, *, what: str, processes, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        for process in processes:
            assert process.poll() is None, f"a process died while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} in {seconds} s"
        time.sleep(0.5)


def _hold_table_lock(client: Client, table: str, *, mode: str, held: threading.Event,
                     release: threading.Event) -> threading.Thread:
    def hold():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f'LOCK TABLE "{client.schema_name}"."{table}" IN {mode} MODE')
                held.set()
                release.wait(300)
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(30), "the lock was not taken"
    return thread


def _slot_offset(client: Client, cycle: AgentCycle) -> float:
    _, interval, number = cycle.key.split(":")
    slot = schedule.slot_at(client_id=client.client_id, interval=int(interval), number=int(number))
    return (cycle.started_at - slot.start).total_seconds()


def test_a_client_locked_for_half_a_minute_delays_no_other_client(committed):
    ids = ("stalla", "stallb", "stallc", "stallx")
    with only_these_clients_active(ids) as clients:
        for client in clients.values():
            configure(type("F", (), {"client": client}), cycle_interval_seconds=INTERVAL)
        locked, others = clients["stallx"], [clients[i] for i in ids if i != "stallx"]
        env = dict(subprocess_env_for_tests(), BOOK_SYNC_SECONDS="5")
        with celery_worker(env, concurrency=2) as worker, celery_beat(env) as beat:
            processes = (worker, beat)
            _wait_for(lambda: all(len([c for c in _scheduled_cycles(client) if c.status == "completed"]) >= 3
                                  for client in clients.values()), what="cycles before the lock", processes=processes)
            held, release = threading.Event(), threading.Event()
            thread = _hold_table_lock(locked, "agents_agentdecision", mode="ACCESS EXCLUSIVE", held=held,
                                      release=release)
            lock_start = timezone.now()
            try:
                # The lock is held for LOCK_SECONDS of the suite's clock; the workers meanwhile run.
                _wait_for(lambda: timezone.now() >= lock_start + timedelta(seconds=LOCK_SECONDS),
                          what="end of the lock", processes=processes, seconds=LOCK_SECONDS + 60)
            finally:
                release.set()
                thread.join(30)
            lock_end = timezone.now()
            _wait_for(lambda: any(c.status == "completed" and c.started_at > lock_end + timedelta(seconds=INTERVAL)
                                  for c in _scheduled_cycles(locked))
                      and all(any(c.started_at > lock_end + timedelta(seconds=INTERVAL) for c in _scheduled_cycles(o))
                              for o in others),
                      what="cycles after the lock", processes=processes)

    window_start, window_end = lock_start - timedelta(seconds=2 * INTERVAL), lock_end + timedelta(seconds=INTERVAL)
    for client in others:
        cycles = [c for c in _scheduled_cycles(client) if window_start <= c.started_at <= window_end]
        starts = [c.started_at for c in cycles]
        gaps = [(later - earlier).total_seconds() for earlier, later in zip(starts, starts[1:], strict=False)]
        assert starts[0] <= lock_start and starts[-1] >= lock_end, (client.client_id, starts)
        assert max(gaps) <= 2 * INTERVAL, (client.client_id, gaps)
        assert {c.status for c in cycles} == {"completed"}, client.client_id
        # Cycles start on their schedule, not an interval after the last one ended.
        offsets = [_slot_offset(client, c) for c in _scheduled_cycles(client)]
        assert statistics.median(offsets) <= 0.1 * INTERVAL, (client.client_id, offsets)

    during = [c for c in _scheduled_cycles(locked) if lock_start <= c.started_at <= lock_end]
    assert during and {c.status for c in during} <= {"skipped", "completed"}, [c.status for c in during]
    skipped = [c for c in during if c.status == "skipped"]
    assert skipped and all(c.error["type"] == "client_busy" for c in skipped)
    assert len(audit_events(client_id="stallx", kind="agent.cycle_skipped")) == 1  # once per outage
    with tenant_context(locked):
        assert not AgentCycle.objects.filter(status="running").exists()
