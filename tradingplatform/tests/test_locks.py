"""Advisory locks: taken in order, released in reverse, and never left held by a wait that failed
(a session-level lock outlives the failed statement and its transaction)."""
import contextlib

import pytest
from django.db import DatabaseError, connection, connections, transaction

from tradingplatform.locks import advisory_lock, advisory_locks
from tradingplatform.tasking import database_busy, database_waits_bounded
from tradingplatform.testing import advisory_lock_held_elsewhere


@pytest.fixture
def autocommit(django_db_setup, django_db_blocker):
    """Outside the test transaction: a lock timeout aborts the transaction it happens in."""
    with django_db_blocker.unblock():
        yield
        connections.close_all()


def _held_here() -> int:
    """How many advisory locks this session holds (a lock taken twice counts once)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        return cursor.fetchone()[0]


def test_free_locks_are_taken_in_order_and_all_released(autocommit):
    with advisory_locks([("locks:first", True), ("locks:second", False)]):
        assert _held_here() == 2
        with advisory_lock("locks:second"):  # re-entrant in the same session
            assert _held_here() == 2
        assert _held_here() == 2
    assert _held_here() == 0


def test_a_lock_held_elsewhere_is_waited_for_and_taken_once_free(autocommit):
    with advisory_lock_held_elsewhere("locks:contended"):
        with database_waits_bounded(lock_timeout=0.2), pytest.raises(DatabaseError):
            with advisory_locks([("locks:free", True), ("locks:contended", False)]):
                pass
    with advisory_locks([("locks:free", True), ("locks:contended", False)]):
        assert _held_here() == 2
    assert _held_here() == 0


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "in-a-transaction"])
def test_a_wait_that_times_out_leaves_nothing_held(autocommit, in_transaction):
    """The first lock is granted, the second is not within the bound: the first must not stay
    held (it would block an operator's halt, which takes it exclusively, until the connection
    closed)."""
    with advisory_lock_held_elsewhere("locks:busy"):
        with database_waits_bounded(lock_timeout=0.2), pytest.raises(DatabaseError) as raised:
            with transaction.atomic() if in_transaction else contextlib.nullcontext():
                with advisory_locks([("locks:halt", True), ("locks:busy", False)]):
                    pytest.fail("the block must not run without its locks")
        assert database_busy(raised.value)
        assert _held_here() == 0


def test_locks_taken_inside_a_test_transaction_are_released_with_their_block(db):
    """(This test also makes the module runnable alone: pytest-django creates the test database
    only for a session with a test that asks for `db`.)"""
    with transaction.atomic(), advisory_locks([("locks:d", True), ("locks:e", False)]):
        assert _held_here() == 2
    assert _held_here() == 0


def test_the_block_s_own_error_goes_on_and_its_locks_are_released(autocommit):
    with pytest.raises(RuntimeError, match="the block failed"):
        with advisory_locks([("locks:a", False), ("locks:b", False)]):
            raise RuntimeError("the block failed")
    assert _held_here() == 0


def test_an_error_that_aborts_the_transaction_inside_the_block_is_the_one_seen(autocommit):
    """The release cannot run in an aborted transaction: the connection is closed instead (the
    session's end releases the locks), and the database error the block met is what is raised."""
    with pytest.raises(DatabaseError, match="division by zero"):
        with transaction.atomic(), advisory_locks([("locks:c", False)]):
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")
    assert _held_here() == 0

