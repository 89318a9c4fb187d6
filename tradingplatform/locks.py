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
    suffix = "_shared" if shared else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_lock{suffix}(hashtextextended(%s, 0))", [name])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_advisory_unlock{suffix}(hashtextextended(%s, 0))", [name])
