"""Row-level security: the policy binds audit reads and writes, also on a superuser connection."""
import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent
from audit.rls import AUDIT_DB_ROLE, audit_read, audit_role, rls_context, settings_read
from audit.tests.conftest import record

INSERT = (
    "INSERT INTO public.audit_event"
    " (client_id, sequence, actor_type, actor_id, kind, payload, created_at, hash)"
    " VALUES (%s, 1000, 'user', 'intruder', 'auth.login', '{}', now(), %s)"
)


@pytest.fixture
def two_clients(db, fresh_client_id):
    first, second = fresh_client_id(), fresh_client_id()
    for client_id in (first, second, first):
        record(client_id)
    record("", kind="halt.emergency")
    return first, second


def _visible(client_ids):
    return sorted(AuditEvent.objects.filter(client_id__in=client_ids).values_list("client_id", flat=True))


def test_audit_reads_run_as_the_audit_role_without_superuser_rights(db):
    with audit_read(client_id=None), connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        assert cursor.fetchone() == (AUDIT_DB_ROLE, False, False)


def test_without_the_settings_nothing_is_visible(two_clients):
    with audit_read(client_id=None):
        assert _visible([*two_clients, ""]) == []


def test_a_clients_setting_shows_only_that_clients_rows(two_clients):
    first, second = two_clients
    with audit_read(client_id=first):
        assert _visible([first, second, ""]) == [first, first]
        assert set(AuditEvent.objects.values_list("client_id", flat=True)) == {first}


def test_the_admin_setting_shows_every_row(two_clients):
    first, second = two_clients
    with audit_read(client_id=None, is_admin=True):
        assert _visible([first, second, ""]).count(first) == 2
        assert {second, ""} <= set(_visible([first, second, ""]))


def test_platform_rows_are_not_visible_to_an_empty_client_setting(two_clients):
    with audit_read(client_id=""):
        assert _visible([""]) == []


def test_an_insert_for_another_client_is_refused_by_the_policy(two_clients):
    first, second = two_clients
    with pytest.raises(DatabaseError, match="row-level security"):
        with audit_read(client_id=first), connection.cursor() as cursor:
            cursor.execute(INSERT, [second, "0" * 64])
    with pytest.raises(RuntimeError), audit_read(client_id=first), connection.cursor() as cursor:
        cursor.execute(INSERT, [first, "0" * 64])  # the same statement for its own client passes
        raise RuntimeError("roll the probe row back")
    assert AuditEvent.objects.filter(actor_id="intruder").count() == 0


def test_the_audit_role_may_not_update_even_with_the_trigger_out_of_the_way(two_clients):
    first, _ = two_clients
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE public.audit_event DISABLE TRIGGER audit_event_append_only")
    with pytest.raises(DatabaseError, match="permission denied"):
        with audit_read(client_id=first, is_admin=True), connection.cursor() as cursor:
            cursor.execute("UPDATE public.audit_event SET kind = 'auth.login' WHERE client_id = %s", [first])


def test_rls_context_restores_the_previous_settings(db):
    with rls_context(client_id="outer", is_admin=True):
        with rls_context(client_id="inner", is_admin=False):
            assert settings_read() == ("inner", "false")
        assert settings_read() == ("outer", "true")
        with pytest.raises(ValueError), rls_context(client_id="failing", is_admin=False):
            raise ValueError("the block failed")
        assert settings_read() == ("outer", "true")


def test_rls_context_survives_a_failed_statement_in_its_block(db):
    with rls_context(client_id="outer", is_admin=False):
        with pytest.raises(DatabaseError), transaction.atomic():
            with rls_context(client_id="inner", is_admin=True), connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")
        assert settings_read() == ("outer", "false")


def test_the_audit_role_is_dropped_after_the_block_inside_an_outer_transaction(db):
    with transaction.atomic():
        with audit_role():
            pass
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user = session_user")
            assert cursor.fetchone()[0] is True
