"""The one writer of the audit trail."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from django.db import connection, transaction

from audit.chain import GENESIS_HASH, ChainRow, canonical_json, row_hash
from audit.kinds import kind_is_valid
from audit.models import ACTOR_ID_MAX_LENGTH, PLATFORM_CLIENT_ID, ActorType, AuditEvent
from audit.rls import ADMIN_SETTING, AUDIT_DB_ROLE, CLIENT_SETTING
from tenants.models import CLIENT_ID_MAX_LENGTH, CLIENT_ID_PATTERN

_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)


def _arguments_check(*, client_id: str, actor_type: str, actor_id: str, kind: str, payload: Any) -> None:
    if client_id != PLATFORM_CLIENT_ID and (
        len(client_id) > CLIENT_ID_MAX_LENGTH or _CLIENT_ID.fullmatch(client_id) is None
    ):
        raise ValueError(f"client_id {client_id!r} is not a client id (or '' for a platform-level event)")
    if actor_type not in ActorType.values:
        raise ValueError(f"actor_type must be one of {', '.join(ActorType.values)}, not {actor_type!r}")
    if not actor_id or len(actor_id) > ACTOR_ID_MAX_LENGTH:
        raise ValueError(f"actor_id must be 1 to {ACTOR_ID_MAX_LENGTH} characters")
    if not kind_is_valid(kind):
        raise ValueError(f"kind {kind!r} is not a dotted code such as 'risk.decision'")
    if not isinstance(payload, Mapping):
        raise TypeError(f"payload must be a mapping, not {type(payload).__name__}")


def audit_record(
    *, client_id: str, actor_type: str, actor_id: str, kind: str, payload: Mapping[str, Any]
) -> AuditEvent:
    """Append one event to the client's chain (client_id '' for platform-level events).

    Works inside or outside a transaction and whatever schema the connection is on (the row goes
    to the public table). Inside an outer transaction the row commits or rolls back with it, and
    the client's chain lock is held until that transaction ends: keep such transactions short.
    The payload is stored as its canonical JSON (Decimal and datetime become strings; see
    `audit.chain`); a payload that has none raises TypeError or ValueError and nothing is written.
    """
    _arguments_check(
        client_id=client_id, actor_type=actor_type, actor_id=actor_id, kind=kind, payload=payload
    )
    payload_text = canonical_json(payload)
    admin_flag = "true" if client_id == PLATFORM_CLIENT_ID else "false"
    # No savepoint inside a caller's transaction: if the audit write fails, the caller's whole
    # transaction must fail with it (nothing commits without its audit row).
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        # As the audit role (the policy binds even a superuser connection) and in this row's own
        # client scope, so the insert passes the policy on its own merits; the caller's role and
        # settings are read first (MATERIALIZED) and put back before returning.
        cursor.execute(
            "WITH previous AS MATERIALIZED (SELECT current_setting('role') AS role,"
            " current_setting(%s, true) AS client_id, current_setting(%s, true) AS is_admin)"
            " SELECT role, client_id, is_admin, set_config('role', %s, true),"
            " set_config(%s, %s, true), set_config(%s, %s, true) FROM previous",
            [CLIENT_SETTING, ADMIN_SETTING, AUDIT_DB_ROLE, CLIENT_SETTING, client_id, ADMIN_SETTING, admin_flag],
        )
        previous_role, previous_client_id, previous_is_admin = cursor.fetchone()[:3]
        # Lock the client's chain head (created at the genesis hash on first use) and read what the
        # new row links to: one writer per client at a time, so the chain cannot fork, and one
        # indexed row to read however long the chain is.
        cursor.execute(
            "INSERT INTO public.audit_chain_head AS head (client_id, sequence, hash) VALUES (%s, 0, %s)"
            " ON CONFLICT (client_id) DO UPDATE SET sequence = head.sequence"
            " RETURNING head.sequence, head.hash, clock_timestamp()",
            [client_id, GENESIS_HASH],
        )
        last_sequence, last_hash, created_at = cursor.fetchone()
        row = ChainRow(
            client_id=client_id,
            sequence=last_sequence + 1,
            actor_type=actor_type,
            actor_id=actor_id,
            kind=kind,
            payload=json.loads(payload_text),
            created_at=created_at,
        )
        digest = row_hash(last_hash, row)
        cursor.execute(
            "WITH event AS (INSERT INTO public.audit_event"
            " (client_id, sequence, actor_type, actor_id, kind, payload, created_at, hash)"
            " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING id)"
            " UPDATE public.audit_chain_head SET sequence = %s, hash = %s WHERE client_id = %s"
            " RETURNING (SELECT id FROM event)",
            [client_id, row.sequence, actor_type, actor_id, kind, payload_text, created_at, digest,
             row.sequence, digest, client_id],
        )
        (row_id,) = cursor.fetchone()
        cursor.execute(
            "SELECT set_config('role', %s, true), set_config(%s, %s, true), set_config(%s, %s, true)",
            [previous_role, CLIENT_SETTING, previous_client_id or "", ADMIN_SETTING, previous_is_admin or ""],
        )
    event = AuditEvent(
        id=row_id, client_id=client_id, sequence=row.sequence, actor_type=actor_type, actor_id=actor_id,
        kind=kind, payload=row.payload, created_at=created_at, hash=digest,
    )
    event._state.adding = False
    event._state.db = connection.alias
    return event
