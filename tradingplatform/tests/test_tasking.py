"""Bounded database waits, the soft time limit ending the database work, one worker slot per client."""
import signal
import threading
import time

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, connection, connections

from tradingplatform.tasking import client_worker_slot, database_busy, database_waits_bounded
from tradingplatform.testing import advisory_lock_held_elsewhere


@pytest.fixture
def autocommit(django_db_setup, django_db_blocker):
    """Outside the test transaction: a lock timeout aborts the transaction it happens in."""
    with django_db_blocker.unblock():
        yield
        connections.close_all()


def test_a_lock_not_granted_within_the_bound_ends_the_wait_as_busy(autocommit):
    with advisory_lock_held_elsewhere("risk:busy-client"):
        with database_waits_bounded(lock_timeout=0.2), pytest.raises(DatabaseError) as raised:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", ["risk:busy-client"])
        assert database_busy(raised.value)
    with connection.cursor() as cursor:  # the bounds were for the block only
        cursor.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
        assert cursor.fetchone() == ("0", "0")


def test_a_statement_past_its_bound_is_cancelled_as_busy(autocommit):
    with database_waits_bounded(statement_timeout=0.2), pytest.raises(DatabaseError) as raised:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(30)")
    assert database_busy(raised.value)


def test_a_soft_time_limit_ends_the_statement_on_the_server_too(autocommit):
    """Celery raises the soft limit from a signal handler while the driver waits; the statement
    must not go on running (holding its locks) after the task gave up."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()

    def soft_limit(signum, frame):
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, soft_limit)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(SoftTimeLimitExceeded), database_waits_bounded(statement_timeout=60):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(60)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    deadline = time.monotonic() + 30
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active'", [backend])
            if cursor.fetchone()[0] == 0:
                break
        assert time.monotonic() < deadline, "the statement went on running on the server"
        time.sleep(0.1)


def test_a_client_holds_one_worker_slot_and_a_second_task_is_told_at_once(db):
    with advisory_lock_held_elsewhere("worker-slot:slotted"):
        with client_worker_slot("slotted") as taken:
            assert taken is False
        with client_worker_slot("another") as taken:
            assert taken is True
    with client_worker_slot("slotted") as taken:
        assert taken is True


def _tripped(fixture) -> None:
    from django_tenants.utils import tenant_context

    from risk.models import RiskStateRecord

    with tenant_context(fixture.client):
        RiskStateRecord.objects.update_or_create(
            singleton=True, defaults={"trading_state": "HALTED", "reason": "circuit_breaker", "loss_streak": 3})


def test_a_request_that_meets_a_client_s_lock_held_too_long_is_a_503_busy_and_changes_nothing(
        api, alpha, settings):
    """A long cycle holds the client's risk lock: the owner's breaker reset waits the request's
    bound, then answers 503 busy with Retry-After (the server's threads are not held for the
    cycle's length); the breaker stays tripped, and the reset goes through once the lock is free."""
    from django_tenants.utils import tenant_context

    from risk.models import RiskStateRecord
    from tradingplatform.testing import bearer

    settings.WEB_LOCK_TIMEOUT_SECONDS = 0.3
    _tripped(alpha)
    url = "/clients/alpha/risk/reset-breaker"
    with advisory_lock_held_elsewhere("risk:alpha"):
        response = api.post(url, {"note": "reviewed"}, format="json", **bearer(alpha.owner))
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "busy" and "busy" in response.json()["detail"]
    assert int(response["Retry-After"]) > 0
    with tenant_context(alpha.client):
        assert RiskStateRecord.objects.get().reason == "circuit_breaker"
    with connection.cursor() as cursor:  # the request's bounds were for the request only
        cursor.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
        assert cursor.fetchone() == ("0", "0")
    assert api.post(url, {"note": "reviewed"}, format="json", **bearer(alpha.owner)).status_code == 200


def test_an_operator_s_halt_waits_for_the_client_s_lock_however_long_the_request_s_bound(api, alpha, settings):
    """A halt must take effect: it waits past the request's bound until the cycle lets go."""
    from django.test import override_settings

    settings.WEB_LOCK_TIMEOUT_SECONDS = 0.2

    def release_once_the_halt_has_waited_past_the_bound(release: threading.Event) -> None:
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                    if cursor.fetchone()[0]:
                        break
                time.sleep(0.02)
            time.sleep(0.6)  # three times the bound, with the halt waiting
        finally:
            release.set()
            connections.close_all()

    with advisory_lock_held_elsewhere("risk:alpha") as release:
        releaser = threading.Thread(target=release_once_the_halt_has_waited_past_the_bound, args=(release,))
        releaser.start()
        try:
            with override_settings(ADMIN_API_KEY="operator-key-" + "x" * 30):
                response = api.post("/admin/clients/alpha/halt", {"halted": True, "reason": "review"},
                                    format="json", HTTP_X_ADMIN_KEY="operator-key-" + "x" * 30)
        finally:
            releaser.join(30)
    assert response.status_code == 200, response.content
    assert response.json() == {"halted": True, "reason": "review"}


@pytest.mark.parametrize(("method", "refreshes"), [("get", True), ("post", False)])
def test_a_busy_page_says_so_and_is_tried_again_by_itself_only_when_it_was_a_read(rf, method, refreshes):
    from django.db import OperationalError
    from psycopg import errors as pg_errors

    from tradingplatform.urls import server_error

    try:
        try:
            raise pg_errors.LockNotAvailable("canceling statement due to lock timeout")
        except pg_errors.LockNotAvailable as cause:
            raise OperationalError("canceling statement due to lock timeout") from cause
    except OperationalError:
        response = server_error(getattr(rf, method)("/desk/alpha/proposals/1/approve", HTTP_ACCEPT="text/html"))
    page = response.content.decode()
    assert response.status_code == 503 and "<h1>Busy</h1>" in page
    assert ('http-equiv="refresh"' in page) is refreshes
