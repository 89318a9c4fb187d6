"""Chain verification against tampered rows, and the client list."""
from audit.rls import audit_read
from audit.selectors import AuditEventFilter, audit_chain_verify, audit_client_ids, audit_events_query
from audit.tests.conftest import record, tamper


def _chain_of(client_id, length=4):
    return [record(client_id, payload={"n": n}) for n in range(length)]


def test_an_untouched_chain_verifies(db, fresh_client_id):
    client_id = fresh_client_id()
    _chain_of(client_id)
    result = audit_chain_verify(client_id)
    assert (result.intact, result.rows_checked, result.client_id) == (True, 4, client_id)


def test_an_edited_payload_is_detected_and_the_row_named(db, fresh_client_id):
    client_id = fresh_client_id()
    events = _chain_of(client_id)
    tamper("UPDATE public.audit_event SET payload = '{\"n\": 99}' WHERE id = %s", [events[2].pk])
    result = audit_chain_verify(client_id)
    assert (result.first_break.sequence, result.first_break.row_id) == (3, events[2].pk)
    assert result.rows_checked == 3


def test_an_edited_actor_is_detected(db, fresh_client_id):
    client_id = fresh_client_id()
    events = _chain_of(client_id)
    tamper("UPDATE public.audit_event SET actor_id = 'someone-else' WHERE id = %s", [events[0].pk])
    assert audit_chain_verify(client_id).first_break.sequence == 1


def test_a_deleted_row_shows_as_a_sequence_gap(db, fresh_client_id):
    client_id = fresh_client_id()
    events = _chain_of(client_id)
    tamper("DELETE FROM public.audit_event WHERE id = %s", [events[1].pk])
    result = audit_chain_verify(client_id)
    assert (result.first_break.sequence, result.first_break.row_id) == (3, events[2].pk)
    assert "sequence 2 is missing" in result.first_break.problem


def test_deleting_the_newest_rows_is_detected_through_the_chain_head(db, fresh_client_id):
    client_id = fresh_client_id()
    events = _chain_of(client_id)
    tamper("DELETE FROM public.audit_event WHERE id IN (%s, %s)", [events[2].pk, events[3].pk])
    result = audit_chain_verify(client_id)
    assert not result.intact
    assert result.first_break.sequence == 4
    assert "ends at sequence 2" in result.first_break.problem


def test_the_chain_head_follows_every_append(db, fresh_client_id):
    from audit.models import AuditChainHead

    client_id = fresh_client_id()
    events = _chain_of(client_id, length=3)
    with audit_read(client_id=None, is_admin=True):
        head = AuditChainHead.objects.get(client_id=client_id)
    assert (head.sequence, head.hash) == (3, events[-1].hash)


def test_reordered_rows_are_detected(db, fresh_client_id):
    client_id = fresh_client_id()
    events = _chain_of(client_id)
    swap = "UPDATE public.audit_event SET sequence = %s WHERE id = %s"
    tamper(swap, [1000, events[1].pk])
    tamper(swap, [2, events[2].pk])
    tamper(swap, [3, events[1].pk])
    result = audit_chain_verify(client_id)
    assert (result.first_break.sequence, result.first_break.row_id) == (2, events[2].pk)


def test_a_rewritten_chain_with_recomputed_hashes_still_breaks_at_the_edit(db, fresh_client_id):
    """Editing a row and its own hash does not help: the next row was chained to the old hash."""
    client_id = fresh_client_id()
    events = _chain_of(client_id)
    tamper("UPDATE public.audit_event SET hash = %s WHERE id = %s", ["0" * 64, events[1].pk])
    assert audit_chain_verify(client_id).first_break.sequence == 2


def test_the_client_list_includes_every_chain(db, fresh_client_id):
    client_id = fresh_client_id()
    record(client_id)
    record("", kind="halt.emergency")
    assert {client_id, ""} <= set(audit_client_ids())


def test_the_events_query_filters_by_client_and_orders_newest_first(db, fresh_client_id):
    mine, other = fresh_client_id(), fresh_client_id()
    _chain_of(mine, 3)
    record(other)
    with audit_read(client_id=mine):
        events = audit_events_query(client_id=mine, filters=AuditEventFilter())
        sequences = [event.sequence for event in events]
    assert sequences == [3, 2, 1]
