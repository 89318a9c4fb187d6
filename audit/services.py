"""The one writer of the audit trail."""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from django.db import connection, transaction

from audit.chain import GENESIS_HASH, ChainRow, canonical_json, row_hash
from audit.kinds import kind_is_valid
from audit.models import ACTOR_ID_MAX_LENGTH, PLATFORM_CLIENT_ID, ActorType, AuditEvent
from audit.rls import audit_role, settings_read, settings_write
from tenants.models import CLIENT_ID_MAX_LENGTH, CLIENT_ID_PATTERN

# pg_advisory_xact_lock(int4, int4): this class id keeps audit locks apart from any other
# advisory locks the platform takes ("AUDT"); the second key is derived from the client id.
AUDIT_LOCK_CLASS = 0x41554454
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)


def _client_lock_key(client_id: str) -> int:
    return int.from_bytes(hashlib.sha256(client_id.encode()).digest()[:4], "big", signed=True)


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
    with transaction.atomic(), audit_role():
        # The insert must pass the policy on its own merits, whatever the caller's settings; they
        # are put back (transaction-scoped) before returning, for the rest of an outer transaction.
        previous_client_id, previous_is_admin = settings_read()
        platform_event = client_id == PLATFORM_CLIENT_ID
        settings_write(client_id=client_id, is_admin="true" if platform_event else "false", local=True)
        with connection.cursor() as cursor:
            # One writer per client at a time: without it two writers could read the same last
            # row and fork the chain (the unique sequence would then refuse the second insert).
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [AUDIT_LOCK_CLASS, _client_lock_key(client_id)]
            )
            # A new statement after the lock: under READ COMMITTED it sees the previous holder's row.
            cursor.execute(
                "SELECT sequence, hash FROM public.audit_event"
                " WHERE client_id = %s ORDER BY sequence DESC LIMIT 1",
                [client_id],
            )
            last = cursor.fetchone()
            cursor.execute("SELECT clock_timestamp()")
            (created_at,) = cursor.fetchone()
            row = ChainRow(
                client_id=client_id,
                sequence=last[0] + 1 if last else 1,
                actor_type=actor_type,
                actor_id=actor_id,
                kind=kind,
                payload=json.loads(payload_text),
                created_at=created_at,
            )
            digest = row_hash(last[1] if last else GENESIS_HASH, row)
            cursor.execute(
                "INSERT INTO public.audit_event"
                " (client_id, sequence, actor_type, actor_id, kind, payload, created_at, hash)"
                " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING id",
                [client_id, row.sequence, actor_type, actor_id, kind, payload_text, created_at, digest],
            )
            (row_id,) = cursor.fetchone()
        settings_write(client_id=previous_client_id, is_admin=previous_is_admin, local=True)
    event = AuditEvent(
        id=row_id, client_id=client_id, sequence=row.sequence, actor_type=actor_type, actor_id=actor_id,
        kind=kind, payload=row.payload, created_at=created_at, hash=digest,
    )
    event._state.adding = False
    event._state.db = connection.alias
    return event
