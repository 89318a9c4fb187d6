"""Faults, with real processes (a prefork Celery worker, beat, PostgreSQL, Redis): one client's
database locked for half a minute delays no other client, and cycles start on their schedule; a
pool process killed in the middle of an execution sends nothing twice, loses no fill and leaves no
cycle running.

Every condition is on recorded data (the cycles' rows, the audit trail), never on how long the
test itself took: the clock only guards against a hang."""
from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from agents import schedule
from agents.models import AgentCycle, Proposal
from agents.tasks import agent_cycle_task
from agents.tests.books import buy_futures, configure
from brokers.models import Fill as FillRow
from brokers.models import Order as OrderRow
from brokers.services import broker_session
from tenants.models import Client
from tradingplatform.testing import advisory_lock_held_elsewhere, audit_events, client_fixture_create
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
    """Issue 15's stall: the locked client's decision table admits reads but no insert, so its cycle
    stops at recording its decision while holding the client's risk lock, and its book syncs (every
    5 s here) queue on that lock. Before the fix, with this worker (two pool processes), the other
    clients' gaps between cycles grew past 20 s at a 5 s interval (and were 10 s without any lock)."""
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
            thread = _hold_table_lock(locked, "agents_agentdecision", mode="EXCLUSIVE", held=held,
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
        print(f"{client.client_id}: longest gap {max(gaps):.2f} s over the lock, "
              f"median start offset {statistics.median(offsets):.3f} s")

    during = [c for c in _scheduled_cycles(locked) if lock_start <= c.started_at <= lock_end]
    assert during and {c.status for c in during} <= {"skipped", "completed"}, [c.status for c in during]
    skipped = [c for c in during if c.status == "skipped"]
    assert skipped and all(c.error["type"] == "client_busy" for c in skipped)
    assert len(audit_events(client_id="stallx", kind="agent.cycle_skipped")) == 1  # once per outage
    with tenant_context(locked):
        assert not AgentCycle.objects.filter(status="running").exists()


def _pool_processes(worker) -> list[int]:
    with open(f"/proc/{worker.pid}/task/{worker.pid}/children") as children:
        return [int(pid) for pid in children.read().split()]


def _lock_waiters(client: Client, table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                       [f'"{client.schema_name}"."{table}"'])
        return cursor.fetchone()[0]


@pytest.mark.parametrize("killed", ["pool", "main"])
def test_a_worker_killed_mid_execution_sends_nothing_twice_and_loses_nothing(committed, killed):
    """The autonomous hedge is sent; before its fill is recorded (held by a lock on the fills table,
    which reads pass) the worker is killed: its pool process (the message comes back at once,
    `reject_on_worker_lost`), or its main process with the pool (the message comes back after the
    visibility timeout, to another worker). The cycle resumes under its key and asks the broker:
    one order at the broker, its fill recorded once, the proposal executed, the cycle completed."""
    client_id = f"kill{killed}"
    with only_these_clients_active((client_id,)) as clients:
        client = clients[client_id]
        fixture = type("F", (), {"client": client})
        configure(fixture, mode="autonomous", band={"method": "fixed", "width": 1.0}, cycle_interval_seconds=3600)
        buy_futures(fixture, 3)
        env = dict(subprocess_env_for_tests(), AUTONOMOUS_ENABLED="true", TASK_LOCK_TIMEOUT_SECONDS="120",
                   CELERY_VISIBILITY_TIMEOUT_SECONDS="10")
        key = f"kill-{timezone.now().timestamp()}"
        with contextlib.ExitStack() as stack:
            worker = stack.enter_context(celery_worker(env, concurrency=1))
            held, release = threading.Event(), threading.Event()
            thread = _hold_table_lock(client, FillRow._meta.db_table, mode="EXCLUSIVE", held=held, release=release)
            try:
                with tenant_context(client):
                    agent_cycle_task.delay(client_id, key)
                _wait_for(lambda: _lock_waiters(client, FillRow._meta.db_table) > 0,
                          what="execution waiting to record its fill", processes=(worker,))
                (pool_process,) = _pool_processes(worker)
                if killed == "main":
                    os.kill(worker.pid, signal.SIGKILL)
                    worker.wait(10)
                os.kill(pool_process, signal.SIGKILL)
            finally:
                release.set()
                thread.join(30)
            if killed == "main":
                worker = stack.enter_context(celery_worker(env, concurrency=1))

            def settled():
                with tenant_context(client):
                    cycle = AgentCycle.objects.filter(key=key).first()
                    return (cycle is not None and cycle.status != "running"
                            and not Proposal.objects.filter(status=Proposal.Status.EXECUTING).exists())

            _wait_for(settled, what="the cycle resumed and settled", processes=(worker,))

    with tenant_context(client):
        cycle = AgentCycle.objects.get(key=key)
        assert cycle.status == "completed" and cycle.decisions.count() == 1
        (proposal,) = Proposal.objects.filter(decision__cycle=cycle)
        assert proposal.status == Proposal.Status.EXECUTED and proposal.execution["order_state"] == "filled"
        with broker_session() as broker:
            at_broker = [f for f in broker.fills_since(timezone.now() - timedelta(days=1))
                         if f.client_order_id == proposal.client_order_id]
        assert sum(f.quantity for f in at_broker) == abs(proposal.legs[0]["quantity"])  # sent once
        recorded = FillRow.objects.filter(client_order_id=proposal.client_order_id)
        assert sorted(recorded.values_list("fill_id", flat=True)) == sorted(f.fill_id for f in at_broker)
        assert OrderRow.objects.get(client_order_id=proposal.client_order_id).state == "filled"


def test_the_reaper_ends_cycles_no_process_runs_and_leaves_a_running_one(alpha):
    from agents.services import cycles_reap

    with tenant_context(alpha.client):
        abandoned = AgentCycle.objects.create(key="abandoned", trigger="schedule")
        recent = AgentCycle.objects.create(key="recent", trigger="schedule")
        AgentCycle.objects.filter(pk=abandoned.pk).update(started_at=timezone.now() - timedelta(hours=1))
    assert cycles_reap() == ["abandoned"]
    with tenant_context(alpha.client):
        abandoned.refresh_from_db()
        recent.refresh_from_db()
    assert abandoned.status == "failed" and abandoned.error["type"] == "abandoned" and abandoned.finished_at
    assert recent.status == "running"  # younger than AGENT_CYCLE_ABANDONED_AFTER_SECONDS: maybe alive
    (event,) = audit_events(client_id="alpha", kind="agent.cycle_abandoned")
    assert event.payload["cycle"] == "abandoned"
    assert cycles_reap() == []


def test_the_reaper_leaves_an_old_cycle_whose_client_cycle_lock_is_held(alpha):
    from agents.services import cycles_reap

    with tenant_context(alpha.client):
        old = AgentCycle.objects.create(key="long", trigger="schedule")
        AgentCycle.objects.filter(pk=old.pk).update(started_at=timezone.now() - timedelta(hours=1))
    with advisory_lock_held_elsewhere("agent-cycle:alpha"):
        assert cycles_reap() == []
    with tenant_context(alpha.client):
        old.refresh_from_db()
    assert old.status == "running"
