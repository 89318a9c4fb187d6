"""Scheduling agent cycles: the fan-out, one cycle per client at a time, isolation of failures,
and a real Celery worker."""
import threading
import time

import pytest
from django.db import connections
from django.utils import timezone
from django_tenants.utils import tenant_context

from agents import services
from agents.models import AgentCycle
from agents.selectors import agent_runtime_get
from agents.tasks import agent_cycle_task, cycles_schedule_task
from brokers.services import broker_session
from tradingplatform.locks import advisory_lock_attempt
from tradingplatform.tests.servers import celery_worker, subprocess_env_for_tests


def _cycles(fixture):
    with tenant_context(fixture.client):
        return list(AgentCycle.objects.order_by("started_at"))


def test_the_scheduler_runs_each_due_client_once_per_interval_in_its_own_schema(alpha, beta, eager_tasks):
    queued = cycles_schedule_task.apply().get()
    assert {"alpha", "beta"} <= set(queued)
    for fixture in (alpha, beta):
        (cycle,) = _cycles(fixture)
        assert cycle.key.startswith("schedule:60:") and cycle.status == "completed"
        with tenant_context(fixture.client):
            assert agent_runtime_get().last_cycle_status == "completed"
    again = cycles_schedule_task.apply().get()
    assert "alpha" not in again and "beta" not in again  # not due again before their interval


def test_a_failing_client_does_not_stop_the_others(alpha, beta, eager_tasks):
    with tenant_context(alpha.client), broker_session() as broker:
        broker.inject_disconnect(failed_reconnects=10)
    cycles_schedule_task.apply().get()
    assert [c.status for c in _cycles(alpha)] == ["failed"]
    assert [c.status for c in _cycles(beta)] == ["completed"]


def test_a_cycle_already_running_for_a_client_is_not_started_twice(alpha):
    held, release = threading.Event(), threading.Event()

    def hold_the_cycle_lock():
        try:
            with advisory_lock_attempt("agent-cycle:alpha") as taken:
                assert taken
                held.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold_the_cycle_lock)
    thread.start()
    try:
        assert held.wait(30)
        with tenant_context(alpha.client):
            outcome = services.cycle_run(client=alpha.client, key="k-busy", trigger="schedule")
        assert outcome.skipped == "a cycle is already running for this client" and outcome.cycle is None
    finally:
        release.set()
        thread.join(30)
    assert _cycles(alpha) == []


def test_a_cycle_task_sent_from_another_schema_refuses_to_run(alpha, beta, eager_tasks):
    with tenant_context(beta.client), pytest.raises(RuntimeError, match="ran in schema client_beta"):
        agent_cycle_task.apply(args=["alpha", "k-x"]).get()


def test_a_real_worker_runs_a_scheduled_cycle(django_db_setup, django_db_blocker):
    race = django_db_setup["race"]
    key = f"worker-{timezone.now().timestamp()}"
    with celery_worker(subprocess_env_for_tests()) as worker, django_db_blocker.unblock():
        with tenant_context(race.client):
            agent_cycle_task.delay("race", key)
        deadline = time.monotonic() + 30
        while True:
            with tenant_context(race.client):
                cycle = AgentCycle.objects.filter(key=key).first()
            if cycle is not None and cycle.status != "running":
                break
            assert worker.poll() is None, "the worker died"
            assert time.monotonic() < deadline, "the worker did not run the cycle in 30 s"
            time.sleep(0.2)
        assert cycle.status == "completed"
        with tenant_context(race.client):
            assert cycle.decisions.count() == 1
