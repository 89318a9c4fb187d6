"""Scheduling agent cycles: the fan-out, one cycle per client at a time, isolation of failures,
and a real Celery worker."""
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_tenants.utils import tenant_context

from agents import schedule, services
from agents.models import AgentCycle
from agents.selectors import agent_runtime_get
from agents.tasks import agent_cycle_task
from brokers.services import broker_session
from tradingplatform.testing import advisory_lock_held_elsewhere
from tradingplatform.tests.servers import celery_worker, subprocess_env_for_tests


def _cycles(fixture):
    with tenant_context(fixture.client):
        return list(AgentCycle.objects.order_by("started_at"))


def _slot_begun(client_id: str, interval: int = 60, *, after: float = 1.0):
    """A moment `after` seconds into the client's current slot: no other slot starts before the
    scheduler's next look."""
    now = timezone.now()
    number = schedule.slot_number(client_id=client_id, interval=interval, when=now)
    return schedule.slot_at(client_id=client_id, interval=interval, number=number).start + timedelta(seconds=after)


def test_the_scheduler_runs_each_due_client_once_per_slot_in_its_own_schema(alpha, beta, eager_tasks):
    now = _slot_begun("alpha")
    queued = services.cycles_schedule(now=now)
    assert "alpha" in queued
    (cycle,) = _cycles(alpha)
    slot = schedule.slot_number(client_id="alpha", interval=60, when=now)
    assert cycle.key == f"schedule:60:{slot}" and cycle.status == "completed"
    with tenant_context(alpha.client):
        assert agent_runtime_get().last_cycle_status == "completed"
    assert [c.status for c in _cycles(beta)] and all(c.status == "completed" for c in _cycles(beta))
    again = services.cycles_schedule(now=now + timedelta(seconds=1))
    assert "alpha" not in again  # its slot is queued once; the next starts after the next look
    assert "beta" not in again or len(_cycles(beta)) == 2


def test_the_scheduler_queues_a_slot_starting_before_its_next_look_to_start_at_the_slot(alpha, eager_tasks):
    """The interval counts from the schedule, not from the end of the last cycle, and the tick does
    not delay a cycle: a slot starting before the next look is queued now, for its start."""
    interval, tick = 60, settings.AGENT_SCHEDULER_TICK_SECONDS
    now = _slot_begun("alpha", after=interval - tick)
    queued = services.cycles_schedule(now=now)
    assert queued.count("alpha") == 2
    number = schedule.slot_number(client_id="alpha", interval=interval, when=now)
    assert sorted(c.key for c in _cycles(alpha)) == sorted(f"schedule:60:{n}" for n in (number, number + 1))


def test_a_failing_client_does_not_stop_the_others(alpha, beta, eager_tasks):
    with tenant_context(alpha.client), broker_session() as broker:
        broker.inject_disconnect(failed_reconnects=10)
    services.cycles_schedule(now=_slot_begun("alpha"))
    assert [c.status for c in _cycles(alpha)] == ["failed"]
    assert {c.status for c in _cycles(beta)} == {"completed"}


def test_a_cycle_already_running_for_a_client_is_not_started_twice(alpha):
    with advisory_lock_held_elsewhere("agent-cycle:alpha"), tenant_context(alpha.client):
        outcome = services.cycle_run(client=alpha.client, key="k-busy", trigger="schedule")
    assert outcome.skipped == "a cycle is already running for this client" and outcome.cycle is None
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


def test_a_cycle_whose_client_worker_slot_is_taken_never_waits_for_it(alpha, eager_tasks):
    """A book sync of the client runs: the cycle task leaves at once (sent again while its slot
    lasts, here not: it was sent again as often as it may), and decides nothing."""
    from agents.tasks import SLOT_BUSY_RETRIES_MAX

    with advisory_lock_held_elsewhere("worker-slot:alpha"), tenant_context(alpha.client):
        outcome = agent_cycle_task.apply(args=["alpha", "k-slot"], retries=SLOT_BUSY_RETRIES_MAX).get()
    assert outcome == "skipped: the client's worker slot stayed taken"
    assert _cycles(alpha) == []
