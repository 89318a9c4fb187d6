"""Reads of the audit trail. Each runs under `audit.rls.audit_read`, so the row-level security
policy applies beneath the ORM filters."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from audit.chain import ChainBreak, ChainVerification, StoredRow, chain_verify
from audit.models import AuditChainHead, AuditEvent
from audit.rls import audit_read

VERIFY_CHUNK_SIZE = 2000


@dataclass(frozen=True, slots=True)
class AuditEventFilter:
    """Narrowing of a client's events; every part is optional. `kind_prefix` ends with a dot
    (`"risk."` matches every `risk.*` kind); `since` is inclusive, `until` exclusive."""

    kind: str | None = None
    kind_prefix: str | None = None
    actor_type: str | None = None
    actor_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_events_query(*, client_id: str, filters: AuditEventFilter) -> QuerySet[AuditEvent]:
    """The client's events, newest first.

    Lazy: evaluate it (paginate, serialize) inside `audit_read(client_id=client_id)`; outside it
    the policy shows a non-superuser connection nothing.
    """
    events = AuditEvent.objects.filter(client_id=client_id)
    if filters.kind is not None:
        events = events.filter(kind=filters.kind)
    if filters.kind_prefix is not None:
        events = events.filter(kind__startswith=filters.kind_prefix)
    if filters.actor_type is not None:
        events = events.filter(actor_type=filters.actor_type)
    if filters.actor_id is not None:
        events = events.filter(actor_id=filters.actor_id)
    if filters.since is not None:
        events = events.filter(created_at__gte=filters.since)
    if filters.until is not None:
        events = events.filter(created_at__lt=filters.until)
    return events.order_by("-sequence")


def audit_client_ids() -> list[str]:
    """Every client id that has audit rows ('' for platform-level events), sorted."""
    with audit_read(client_id=None, is_admin=True):
        return list(AuditEvent.objects.order_by("client_id").values_list("client_id", flat=True).distinct())


def audit_chain_verify(client_id: str) -> ChainVerification:
    """Recompute the client's hash chain from its stored rows (an operator's read: admin scope),
    and check that it ends where the chain head says: removing the newest rows leaves an intact
    but shorter chain, which only the head reveals."""
    with audit_read(client_id=None, is_admin=True):
        events = AuditEvent.objects.filter(client_id=client_id).order_by("sequence")
        rows = (
            StoredRow(row_id=event.id, row=event.chain_row(), stored_hash=event.hash)
            for event in events.iterator(chunk_size=VERIFY_CHUNK_SIZE)
        )
        result = chain_verify(client_id, rows)
        head = AuditChainHead.objects.filter(client_id=client_id).first()
        last = events.last()
    head_moved = head is not None and (last is None or (head.sequence, head.hash) != (last.sequence, last.hash))
    if result.intact and head_moved:
        ended_at = last.sequence if last is not None else 0
        return ChainVerification(
            client_id, result.rows_checked,
            ChainBreak(head.sequence, last.id if last is not None else 0,
                       f"the chain ends at sequence {ended_at} but its head is at {head.sequence}"
                       " (newest rows deleted?)"),
        )
    return result
