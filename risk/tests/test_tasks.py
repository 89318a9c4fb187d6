"""Scheduled book syncs: the service, the fan-out, and a real Celery worker."""
import time

import pytest
from django.test import override_settings
from django_tenants.utils import tenant_context

from brokers.models import BrokerConnection
from risk import services
from risk.tasks import book_sync_task, books_sync_all_task
from tradingplatform.events import live_state_get
from tradingplatform.testing import audit_events
from tradingplatform.tests.servers import celery_worker, subprocess_env_for_tests

UNREACHABLE_IBKR = {"host": "127.0.0.1", "port": 1, "client_id": 1, "underlying_instrument": "ES",
                    "underlying_expiry": "202612", "connect_retries": 0, "connect_backoff_seconds": 0}


def test_a_sync_publishes_the_live_greeks(alpha):
    assert services.client_book_sync(client=alpha.client)
    greeks = live_state_get(client_id="alpha", name="greeks")
    assert greeks["open_legs"] == 0 and greeks["net_delta"] == 0.0


@override_settings(USE_MOCK_BROKER=False)
def test_an_outage_is_audited_once_when_it_starts_and_once_when_it_ends(alpha):
    with tenant_context(alpha.client):
        BrokerConnection.objects.create(broker="ibkr", credentials=__import__("json").dumps(UNREACHABLE_IBKR),
                                        status=BrokerConnection.Status.CONNECTED)
    assert not services.client_book_sync(client=alpha.client)
    assert not services.client_book_sync(client=alpha.client)
    with tenant_context(alpha.client):
        connection = BrokerConnection.objects.get()
        assert connection.status == "failed" and connection.last_error["retryable"] is True
    assert len(audit_events(client_id="alpha", kind="broker.failed")) == 1
    with override_settings(USE_MOCK_BROKER=True):
        assert services.client_book_sync(client=alpha.client)
    assert len(audit_events(client_id="alpha", kind="broker.connected")) == 1


def test_the_fan_out_runs_each_sync_in_its_own_client_schema(alpha, beta, eager_tasks):
    queued = books_sync_all_task.apply().get()
    assert {"alpha", "beta"} <= set(queued)
    for client_id in ("alpha", "beta"):
        assert live_state_get(client_id=client_id, name="greeks") is not None


def test_a_task_sent_from_another_schema_refuses_to_run(alpha, beta, eager_tasks):
    with tenant_context(beta.client), pytest.raises(RuntimeError, match="ran in schema client_beta"):
        book_sync_task.apply(args=["alpha"]).get()


def test_a_real_worker_runs_the_sync_in_the_client_schema(django_db_setup):
    race = django_db_setup["race"]
    with celery_worker(subprocess_env_for_tests()) as worker:
        with tenant_context(race.client):
            book_sync_task.delay("race")
        deadline = time.monotonic() + 30
        while live_state_get(client_id="race", name="greeks") is None:
            assert worker.poll() is None, "the worker died"
            assert time.monotonic() < deadline, "the worker did not sync the book in 30 s"
            time.sleep(0.2)
