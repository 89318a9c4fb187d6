"""The verify_audit_chain management command."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.tests.conftest import record, tamper


def _run(**options):
    stdout, stderr = StringIO(), StringIO()
    call_command("verify_audit_chain", stdout=stdout, stderr=stderr, **options)
    return stdout.getvalue()


def test_an_intact_chain_passes(db, fresh_client_id):
    client_id = fresh_client_id()
    for _ in range(3):
        record(client_id)
    assert f"{client_id}: 3 rows, chain intact" in _run(client_id=client_id)


def test_a_broken_chain_fails_naming_the_client_and_the_row(db, fresh_client_id):
    client_id = fresh_client_id()
    events = [record(client_id) for _ in range(3)]
    tamper("UPDATE public.audit_event SET payload = '{\"n\": 2}' WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError) as failure:
        _run(client_id=client_id)
    assert f"{client_id}: chain broken at sequence 2 (row id {events[1].pk})" in str(failure.value)


def test_without_a_client_every_chain_is_checked(db, fresh_client_id):
    intact, broken = fresh_client_id(), fresh_client_id()
    record(intact)
    events = [record(broken) for _ in range(3)]
    tamper("DELETE FROM public.audit_event WHERE id = %s", [events[0].pk])
    stdout, stderr = StringIO(), StringIO()
    with pytest.raises(CommandError, match=f"{broken}: chain broken at sequence 2"):
        call_command("verify_audit_chain", stdout=stdout, stderr=stderr)
    assert f"{intact}: 1 rows, chain intact" in stdout.getvalue()
    assert "sequence 1 is missing" in stderr.getvalue()
