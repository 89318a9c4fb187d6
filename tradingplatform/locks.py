"""Cross-process locks in PostgreSQL (advisory locks), held by the current connection.

Session-level rather than transaction-level, so that a lock can span several transactions —
e.g. a recorded decision committed before the broker call and the fills recorded after it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import Error, connection, transaction


@contextlib.contextmanager
def advisory_lock(name: str, *, shared: bool = False) -> Iterator[None]:
    with advisory_locks([(name, shared)]):
        yield


def _call(function: str, name: str, shared: bool) -> str:
    return f"pg_{function}{'_shared' if shared else ''}(hashtextextended(%s, 0))"


def _released(taken: list[tuple[str, bool]]) -> None:
    """Release what this call took, in the reverse order, in one round trip. A connection that
    cannot run it (broken, or its transaction aborted) is closed: the session's end releases them."""
    if not taken:
        return
    calls = ", ".join(_call("advisory_unlock", name, shared) for name, shared in reversed(taken))
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {calls}", [name for name, _ in reversed(taken)])
    except Error:
        connection.close()
        raise


@contextlib.contextmanager
def advisory_locks(names: list[tuple[str, bool]]) -> Iterator[None]:
    """Several locks, (name, shared) pairs, taken in the order given and released in the reverse
    order; callers keep one global order to stay free of deadlocks.

    Free locks cost one round trip (all tried at once). A lock that is held elsewhere is waited
    for, in order, after releasing any later one the try took. A wait that ends in an error (the
    connection's lock_timeout, a cancel) releases what this call took before the error goes on: a
    session-level lock outlives the failed statement and its transaction, and would otherwise be
    held by nobody's code until the connection closed. Inside a transaction each wait runs in a
    savepoint, so that the release can run after it failed."""
    tries = ", ".join(_call("try_advisory_lock", name, shared) for name, shared in names)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {tries}", [name for name, _ in names])
        granted = list(cursor.fetchone())
    first_refused = granted.index(False) if False in granted else len(names)
    taken = list(names[:first_refused])
    _released([pair for pair, got in zip(names[first_refused:], granted[first_refused:], strict=True) if got])
    try:
        for name, shared in names[first_refused:]:
            with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
                with connection.cursor() as cursor:
                    cursor.execute(f"SELECT {_call('advisory_lock', name, shared)}", [name])
            taken.append((name, shared))
    except BaseException:
        with contextlib.suppress(Error):
            _released(taken)
        raise
    try:
        yield
    except BaseException:
        with contextlib.suppress(Error):  # the block's own error is the one to see
            _released(taken)
        raise
    _released(taken)


@contextlib.contextmanager
def advisory_lock_attempt(name: str) -> Iterator[bool]:
    """Take the lock if it is free, without waiting; yields whether it was taken (and releases it
    after the block only then). For work that must not run twice at once but need not queue."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [name])
        taken = bool(cursor.fetchone()[0])
    try:
        yield taken
    finally:
        if taken:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [name])
