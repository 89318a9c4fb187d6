"""Nothing changes or deletes audit rows: not the model, not its querysets, not SQL."""
import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.models import AuditEvent, AuditTrailIsAppendOnly
from audit.tests.conftest import record


@pytest.fixture
def event(db, fresh_client_id):
    return record(fresh_client_id(), payload={"n": 1})


def _unchanged(event):
    stored = AuditEvent.objects.get(pk=event.pk)
    return (stored.payload, stored.kind, stored.hash) == (event.payload, event.kind, event.hash)


def test_saving_an_existing_row_is_refused(event):
    event.payload = {"n": 2}
    with pytest.raises(AuditTrailIsAppendOnly):
        event.save()
    event.payload = {"n": 1}
    assert _unchanged(event)


def test_deleting_a_row_is_refused(event):
    with pytest.raises(AuditTrailIsAppendOnly):
        event.delete()
    assert _unchanged(event)


@pytest.mark.parametrize(
    "change",
    [
        lambda rows: rows.update(kind="auth.login"),
        lambda rows: rows.delete(),
        lambda rows: AuditEvent.objects.bulk_update(list(rows), ["kind"]),
        lambda rows: AuditEvent._base_manager.filter(pk__in=rows).delete(),
    ],
    ids=["update", "delete", "bulk_update", "base_manager_delete"],
)
def test_queryset_changes_are_refused(event, change):
    with pytest.raises(AuditTrailIsAppendOnly):
        change(AuditEvent.objects.filter(pk=event.pk))
    assert _unchanged(event)


def test_rows_cannot_be_written_around_the_writer(db, fresh_client_id):
    fields = dict(client_id=fresh_client_id(), sequence=1, actor_type="user", actor_id="u", kind="auth.login",
                  payload={}, created_at=timezone.now(), hash="0" * 64)
    with pytest.raises(AuditTrailIsAppendOnly):
        AuditEvent.objects.create(**fields)
    with pytest.raises(AuditTrailIsAppendOnly):
        AuditEvent.objects.bulk_create([AuditEvent(**fields)])
    assert not AuditEvent.objects.filter(client_id=fields["client_id"]).exists()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE public.audit_event SET kind = 'auth.login' WHERE id = %s",
        "DELETE FROM public.audit_event WHERE id = %s",
        "TRUNCATE public.audit_event",
    ],
)
def test_the_database_refuses_update_delete_and_truncate_even_for_a_superuser(event, statement):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement, [event.pk] if "%s" in statement else None)
    assert _unchanged(event)
