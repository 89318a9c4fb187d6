"""Audit rows out, and the list's query parameters in."""
from __future__ import annotations

from rest_framework import serializers

from audit.kinds import KIND_MAX_LENGTH
from audit.models import ACTOR_ID_MAX_LENGTH, ActorType, AuditEvent
from audit.selectors import AuditEventFilter

# An exact kind, or a family: `risk.*` (every kind starting with `risk.`).
KIND_FILTER_PATTERN = r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*(?:\.[a-z][a-z0-9_]*|\.\*)$"
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["sequence", "kind", "actor_type", "actor_id", "payload", "created_at", "hash"]
        read_only_fields = fields


class AuditEventQuerySerializer(serializers.Serializer):
    kind = serializers.RegexField(
        KIND_FILTER_PATTERN,
        max_length=KIND_MAX_LENGTH,
        required=False,
        help_text=(
            "An exact kind (`risk.decision`), or a family ending in `.*` "
            "(`risk.*` matches every `risk.` kind)."
        ),
        error_messages={"invalid": "Use a dotted kind such as risk.decision, or a family such as risk.*."},
    )
    actor_type = serializers.ChoiceField(choices=ActorType.choices, required=False)
    actor_id = serializers.CharField(max_length=ACTOR_ID_MAX_LENGTH, required=False,
                                     help_text="Who: a username, an agent, an operator (exact).")
    since = serializers.DateTimeField(
        required=False,
        help_text="Events at or after this time (ISO 8601; without an offset, UTC). URL-encode a `+` offset.",
    )
    until = serializers.DateTimeField(
        required=False, help_text="Events before this time (ISO 8601; without an offset, UTC)."
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=MAX_PAGE_SIZE, required=False, help_text=f"Page size (default {PAGE_SIZE})."
    )

    def validate(self, attrs: dict) -> dict:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": ["Must be later than since."]})
        return attrs

    def filters(self) -> AuditEventFilter:
        data = self.validated_data
        kind = data.get("kind")
        family = kind is not None and kind.endswith(".*")
        return AuditEventFilter(
            kind=None if family else kind,
            kind_prefix=kind[:-1] if family else None,
            actor_type=data.get("actor_type"),
            actor_id=data.get("actor_id"),
            since=data.get("since"),
            until=data.get("until"),
        )
