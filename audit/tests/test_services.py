"""audit_record: the one writer, its chain, its lock, and where the rows land."""
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.chain import GENESIS_HASH, row_hash
from audit.models import AuditEvent
from audit.rls import AUDIT_DB_ROLE, rls_context, settings_read
from audit.selectors import audit_chain_verify
from audit.services import audit_record
from audit.tests.conftest import json_text, json_values, record


def _stored(client_id):
    return list(AuditEvent.objects.filter(client_id=client_id).order_by("sequence"))


def test_each_row_extends_its_clients_chain(db, fresh_client_id):
    client_id = fresh_client_id()
    written = [record(client_id, payload={"n": n}) for n in range(4)]
    stored = _stored(client_id)
    assert [event.sequence for event in stored] == [1, 2, 3, 4]
    assert [event.hash for event in stored] == [event.hash for event in written]
    previous = GENESIS_HASH
    for event in stored:
        assert event.hash == row_hash(previous, event.chain_row())
        previous = event.hash
    assert audit_chain_verify(client_id).intact


def test_clients_and_the_platform_have_separate_chains(db, fresh_client_id):
    first, second = fresh_client_id(), fresh_client_id()
    record(first)
    record(second)
    record(first)
    platform = audit_record(client_id="", actor_type="operator", actor_id="op", kind="halt.emergency",
                            payload={"halted": True})
    assert [event.sequence for event in _stored(first)] == [1, 2]
    assert [event.sequence for event in _stored(second)] == [1]
    assert platform.sequence >= 1
    assert audit_chain_verify("").intact


def test_the_returned_row_is_the_stored_row(db, fresh_client_id):
    payload = {"at": datetime(2026, 3, 1, 12, tzinfo=UTC), "price": Decimal("2.50")}
    event = record(fresh_client_id(), payload=payload)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.payload == event.payload == {"at": "2026-03-01T12:00:00.000000Z", "price": "2.50"}
    assert (stored.created_at, stored.hash, stored.sequence) == (event.created_at, event.hash, event.sequence)


def test_it_writes_the_public_table_while_the_connection_is_on_a_client_schema(alpha, fresh_client_id):
    connection.set_tenant(alpha.client)
    event = record("alpha")
    assert connection.schema_name == alpha.client.schema_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM public.audit_event WHERE id = %s", [event.pk])
        assert cursor.fetchone()[0] == 1
        cursor.execute("SELECT to_regclass(%s)", [f"{alpha.client.schema_name}.audit_event"])
        assert cursor.fetchone()[0] is None


def test_inside_an_outer_transaction_the_row_rolls_back_with_it_and_the_chain_continues(db, fresh_client_id):
    client_id = fresh_client_id()
    record(client_id)
    with pytest.raises(RuntimeError), transaction.atomic():
        record(client_id)
        raise RuntimeError("the caller's work failed")
    third = record(client_id)
    assert third.sequence == 2
    assert audit_chain_verify(client_id).intact


def test_the_callers_settings_and_role_are_intact_afterwards(db, fresh_client_id):
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        (user_before,) = cursor.fetchone()
    with transaction.atomic(), rls_context(client_id="someone-else", is_admin=False):
        record(fresh_client_id())
        record("")
        assert settings_read() == ("someone-else", "false")
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == user_before != AUDIT_DB_ROLE


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"client_id": "Not A Client"}, ValueError),
        ({"client_id": "x" * 41}, ValueError),
        ({"actor_type": "robot"}, ValueError),
        ({"actor_id": ""}, ValueError),
        ({"kind": "Login"}, ValueError),
        ({"kind": "login"}, ValueError),
        ({"payload": ["not", "a", "mapping"]}, TypeError),
        ({"payload": {"when": datetime(2026, 1, 1)}}, ValueError),
        ({"payload": {"ids": {1, 2}}}, TypeError),
    ],
)
def test_bad_arguments_raise_and_write_nothing(db, fresh_client_id, arguments, error):
    client_id = fresh_client_id()
    valid = dict(client_id=client_id, actor_type="user", actor_id="u", kind="auth.login", payload={})
    with pytest.raises(error):
        audit_record(**{**valid, **arguments})
    attempted = arguments.get("client_id", client_id)
    assert not AuditEvent.objects.filter(client_id__in=[client_id, attempted]).exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.dictionaries(json_text, json_values, max_size=4))
def test_any_json_payload_still_verifies_after_a_trip_through_postgresql(db, payload):
    client_id = "roundtrip"  # one chain across examples: every example's row must fit it
    record(client_id, payload=payload)
    assert audit_chain_verify(client_id).intact


def test_concurrent_writers_produce_one_unbroken_chain(db):
    """Two threads, each with its own connection, append to one client at once. Their rows are
    committed (other connections cannot see into the test's transaction), so the client id is
    unique to this run and its rows stay behind: the trail cannot be deleted."""
    client_id = f"race-{uuid.uuid4().hex}"
    rows_per_writer = 20
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            start.wait(timeout=10)
            for n in range(rows_per_writer):
                audit_record(client_id=client_id, actor_type="system", actor_id=name, kind="race.write",
                             payload={"writer": name, "n": n})
        except BaseException as exc:  # reported to the test thread below
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    result = audit_chain_verify(client_id)
    assert result.intact
    assert result.rows_checked == 2 * rows_per_writer
    writers = list(AuditEvent.objects.filter(client_id=client_id).values_list("actor_id", flat=True))
    assert writers.count("one") == writers.count("two") == rows_per_writer
