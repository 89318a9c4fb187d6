"""Fixtures for the audit tests. They rely on the test database user being a superuser (as the
embedded development server's `postgres` is): tampering with rows means switching the
append-only trigger off, which only the table's owner or a superuser can do."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from hypothesis import strategies as st

from audit.models import AuditEvent
from audit.services import audit_record

# What jsonb can hold: no NUL characters, no unpaired surrogates, finite numbers.
json_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4),
    max_leaves=12,
)


@pytest.fixture
def fresh_client_id() -> Callable[[], str]:
    """`fresh_client_id()` -> a client id no other test writes to (its rows roll back with the test)."""
    return lambda: f"t{uuid.uuid4().hex[:12]}"


def record(
    client_id: str, kind: str = "risk.decision", payload: dict | None = None, *,
    actor_type: str = "system", actor_id: str = "governor",
) -> AuditEvent:
    return audit_record(client_id=client_id, actor_type=actor_type, actor_id=actor_id, kind=kind,
                        payload=payload if payload is not None else {"n": 1})


@contextmanager
def append_only_trigger_disabled() -> Iterator[None]:
    """Let the test's (superuser) connection change audit rows, as an attacker with such rights
    could. The ALTER TABLEs are transactional: they roll back with the test in any case."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE public.audit_event DISABLE TRIGGER audit_event_append_only")
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE public.audit_event ENABLE TRIGGER audit_event_append_only")


def tamper(sql: str, params: list) -> None:
    with append_only_trigger_disabled(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert cursor.rowcount >= 1
