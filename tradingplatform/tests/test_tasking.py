"""Bounded database waits, the soft time limit ending the database work, one worker slot per client."""
import signal
import threading
import time

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, connection, connections

from tradingplatform.tasking import client_worker_slot, database_busy, database_waits_bounded


@pytest.fixture
def autocommit(django_db_setup, django_db_blocker):
    """Outside the test transaction: a lock timeout aborts the transaction it happens in."""
    with django_db_blocker.unblock():
        yield
        connections.close_all()


def _hold_advisory_lock(name: str, held: threading.Event, release: threading.Event) -> threading.Thread:
    def hold():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [name])
            held.set()
            release.wait(60)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [name])
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(30)
    return thread


def test_a_lock_not_granted_within_the_bound_ends_the_wait_as_busy(autocommit):
    held, release = threading.Event(), threading.Event()
    thread = _hold_advisory_lock("risk:busy-client", held, release)
    try:
        with database_waits_bounded(lock_timeout=0.2), pytest.raises(DatabaseError) as raised:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", ["risk:busy-client"])
        assert database_busy(raised.value)
    finally:
        release.set()
        thread.join(30)
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
    held, release = threading.Event(), threading.Event()
    thread = _hold_advisory_lock("worker-slot:slotted", held, release)
    try:
        with client_worker_slot("slotted") as taken:
            assert taken is False
        with client_worker_slot("another") as taken:
            assert taken is True
    finally:
        release.set()
        thread.join(30)
    with client_worker_slot("slotted") as taken:
        assert taken is True
