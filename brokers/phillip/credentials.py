"""The `credentials` of `connect-broker` for `broker: phillip`, validated (DRF; Django's URL
validator), kept apart from the adapter so that the HTTP client needs no Django."""
from __future__ import annotations

import math
import re
from typing import Any

from django.core.validators import URLValidator
from rest_framework import serializers

EXCHANGES = ("CME", "CBOT", "NYMEX", "COMEX")


class PhillipCredentialsSerializer(serializers.Serializer):
    """The `credentials` of `connect-broker` for `broker: phillip`. Never echoes the secret."""

    client_id = serializers.CharField(max_length=200)
    client_secret = serializers.CharField(
        max_length=500, write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    request_retries = serializers.IntegerField(min_value=0, max_value=10)
    request_backoff_seconds = serializers.FloatField(min_value=0.0, max_value=30.0)
    exchange = serializers.CharField()
    currency = serializers.CharField()
    base_url = serializers.URLField(
        required=False, max_length=500, validators=[URLValidator(schemes=["http", "https"])]
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                # A mistyped key ("client_secert") must not pass silently as a missing optional field.
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def validate_client_secret(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        return value

    def validate_request_backoff_seconds(self, value: float) -> float:
        if not math.isfinite(value):
            raise serializers.ValidationError("A finite number is required.")
        return value

    def validate_exchange(self, value: str) -> str:
        exchange = value.strip().upper()
        if exchange == "GLOBEX":
            raise serializers.ValidationError(
                "GLOBEX is a trading platform, not an exchange: use CME, CBOT, NYMEX or COMEX."
            )
        if exchange not in EXCHANGES:
            raise serializers.ValidationError(f"Must be one of {', '.join(EXCHANGES)}.")
        return exchange

    def validate_currency(self, value: str) -> str:
        currency = value.strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise serializers.ValidationError("A 3-letter ISO 4217 code is required, e.g. USD.")
        return currency

    def validate_base_url(self, value: str) -> str:
        from urllib.parse import urlsplit

        from brokers.endpoints import ENDPOINT_REFUSED, broker_endpoint_allowed

        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not broker_endpoint_allowed(host=parts.hostname or "", port=port):
            raise serializers.ValidationError(ENDPOINT_REFUSED)
        return value.rstrip("/")
