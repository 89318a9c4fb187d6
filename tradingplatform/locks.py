"""Cross-process locks in PostgreSQL (advisory locks), held by the current connection.

Session-level rather than transaction-level, so that a lock can span several transactions —
e.g. a recorded decision committed before the broker call and the fills recorded after it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connection


@contextlib.contextmanager
def advisory_lock(name: str, *, shared: bool = False) -> Iterator[None]:
    with advisory_locks([(name, shared)]):
        yield


@contextlib.contextmanager
def advisory_locks(names: list[tuple[str, bool]]) -> Iterator[None]:
    """Several locks, (name, shared) pairs, taken in the order given in one round trip and released
    in the reverse order in another; callers keep one global order to stay free of deadlocks."""
    take = ", ".join(
        f"pg_advisory_lock{'_shared' if shared else ''}(hashtextextended(%s, 0))" for _, shared in names
    )
    release = ", ".join(
        f"pg_advisory_unlock{'_shared' if shared else ''}(hashtextextended(%s, 0))" for _, shared in reversed(names)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {take}", [name for name, _ in names])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {release}", [name for name, _ in reversed(names)])


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
