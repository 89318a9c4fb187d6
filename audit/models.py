"""The audit trail: append-only rows in the public schema, hash-chained per client.

Rows are written only by `audit.services.audit_record`. Nothing changes or deletes them: the
model and its querysets refuse, the admin is read-only, and a trigger refuses UPDATE, DELETE and
TRUNCATE in the database itself (migration 0002, which also installs the row-level security
policy described in `audit.rls`).
"""
from __future__ import annotations

from typing import Any, NoReturn

from django.db import models

from audit.chain import ChainRow
from audit.kinds import KIND_MAX_LENGTH
from tenants.models import CLIENT_ID_MAX_LENGTH

# Platform-level events (an emergency halt, a login that names no client) have no client.
PLATFORM_CLIENT_ID = ""
ACTOR_ID_MAX_LENGTH = 150


class ActorType(models.TextChoices):
    USER = "user", "User"
    AGENT = "agent", "Agent"
    OPERATOR = "operator", "Operator"
    SYSTEM = "system", "System"


class AuditTrailIsAppendOnly(Exception):
    """Raised on any attempt to change or delete audit rows, or to write them around the writer."""


def _refuse(what: str) -> NoReturn:
    raise AuditTrailIsAppendOnly(
        f"{what}: audit rows are written only by audit.services.audit_record and never changed or deleted"
    )


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        _refuse("update")

    def delete(self) -> NoReturn:
        _refuse("delete")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("bulk_update")

    def bulk_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("bulk_create")


class AuditEvent(models.Model):
    # A plain string, not a foreign key: the trail outlives a deleted client.
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH, blank=True)
    sequence = models.BigIntegerField(help_text="1, 2, 3, ... within the client's chain")
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(
        max_length=ACTOR_ID_MAX_LENGTH, help_text="username, agent id or system component"
    )
    kind = models.CharField(max_length=KIND_MAX_LENGTH)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    hash = models.CharField(
        max_length=64, help_text="sha256(previous row's hash + canonical JSON of this row)"
    )

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        db_table = "audit_event"
        # Related-object and internal lookups use the refusing queryset too.
        base_manager_name = "objects"
        constraints = [
            models.UniqueConstraint(
                fields=["client_id", "sequence"], name="audit_event_one_row_per_sequence"
            ),
            models.CheckConstraint(condition=models.Q(sequence__gte=1), name="audit_event_sequence_positive"),
            models.CheckConstraint(
                condition=models.Q(actor_type__in=ActorType.values), name="audit_event_actor_type_known"
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="audit_event_created_at")]

    def __str__(self) -> str:
        return f"{self.client_id or '(platform)'} #{self.sequence} {self.kind}"

    def save(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("save")

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("delete")

    def chain_row(self) -> ChainRow:
        return ChainRow(
            client_id=self.client_id,
            sequence=self.sequence,
            actor_type=self.actor_type,
            actor_id=self.actor_id,
            kind=self.kind,
            payload=self.payload,
            created_at=self.created_at,
        )


class AuditChainHead(models.Model):
    """The newest row of each client's chain: where the next row links to.

    Writers lock this row (serializing each client's chain) and read the previous hash from it in
    one indexed lookup, however long the chain; verification compares it with the chain itself, so
    that removing the newest rows is detected too. Written only by `audit.services.audit_record`.
    """

    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH, primary_key=True, blank=True)
    sequence = models.BigIntegerField()
    hash = models.CharField(max_length=64)

    class Meta:
        db_table = "audit_chain_head"

    def __str__(self) -> str:
        return f"{self.client_id or '(platform)'} head #{self.sequence}"
