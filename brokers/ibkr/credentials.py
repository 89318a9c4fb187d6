"""Validation of the `credentials` payload of `POST /clients/{id}/connect-broker` for IBKR.

An IB connection holds no secret (TWS / IB Gateway does the login); the payload says where the
gateway listens and which product this client trades. Importing this module needs DRF; validating
needs Django settings.
"""
from __future__ import annotations

import math
import re

from rest_framework import serializers

from brokers.ibkr.contracts import ALLOWED_EXCHANGES
from brokers.products import PRODUCTS

_EXPIRY = re.compile(r"^\d{4}(0[1-9]|1[0-2])((0[1-9]|[12]\d|3[01]))?$")
_SYMBOL = re.compile(r"^[A-Z0-9]{1,10}$")
_SYMBOL_HELP = "An IB futures symbol: 1-10 capital letters or digits, e.g. ES or YM."


class IBKRCredentialsSerializer(serializers.Serializer):
    host = serializers.CharField(max_length=255, trim_whitespace=True)
    port = serializers.IntegerField(min_value=1, max_value=65535)
    client_id = serializers.IntegerField(min_value=0)
    # Any product IB lists: checked against TWS's contract details when the broker is connected
    # (brokers/ibkr/resolve.py), not against the platform's table.
    underlying_instrument = serializers.CharField(max_length=10)
    underlying_expiry = serializers.CharField()
    connect_retries = serializers.IntegerField(min_value=0, max_value=10, default=3)
    connect_backoff_seconds = serializers.FloatField(min_value=0, max_value=60, default=1.0)
    exchange_overrides = serializers.DictField(
        child=serializers.CharField(), required=False, default=dict)
    trading_class = serializers.CharField(max_length=32, required=False, allow_blank=False)
    multiplier = serializers.FloatField(required=False)
    # the IB account orders are booked to; required when the login manages several (advisor)
    account = serializers.RegexField(r"^[A-Z]{1,3}\d{1,12}$", max_length=16, required=False)
    # Market data (brokers/ibkr/market_data.py): the most subscriptions held at once, and what TWS
    # serves when the account has no live data: "frozen" (the default) never falls back to delayed.
    market_data_lines = serializers.IntegerField(min_value=1, max_value=10_000, default=80)
    market_data_fallback = serializers.ChoiceField(
        choices=["none", "frozen", "delayed", "delayed_frozen"], default="frozen")

    def validate(self, attrs: dict) -> dict:
        from brokers.endpoints import ENDPOINT_REFUSED, broker_endpoint_allowed

        if not broker_endpoint_allowed(host=attrs["host"], port=attrs["port"]):
            raise serializers.ValidationError({"host": [ENDPOINT_REFUSED]})
        symbol = attrs["underlying_instrument"]
        if symbol not in PRODUCTS and symbol not in attrs["exchange_overrides"]:
            raise serializers.ValidationError({"exchange_overrides": [
                f"{symbol} is not in the platform's product table: give its listing exchange, "
                f"e.g. {{\"{symbol}\": \"CBOT\"}}."]})
        return attrs

    def validate_underlying_instrument(self, value: str) -> str:
        value = value.strip().upper()
        if not _SYMBOL.match(value):
            raise serializers.ValidationError(_SYMBOL_HELP)
        return value

    def validate_underlying_expiry(self, value: str) -> str:
        if not _EXPIRY.match(value):
            raise serializers.ValidationError("Use YYYYMM or YYYYMMDD, e.g. 202612 or 20261218.")
        return value

    def validate_exchange_overrides(self, value: dict[str, str]) -> dict[str, str]:
        errors: dict[str, str] = {}
        cleaned: dict[str, str] = {}
        for symbol, exchange in value.items():
            exchange = exchange.strip().upper()
            symbol = symbol.strip().upper()
            if not _SYMBOL.match(symbol):
                errors[symbol] = _SYMBOL_HELP
            elif exchange == "GLOBEX":
                errors[symbol] = ("GLOBEX is no longer accepted by Interactive Brokers; use the "
                                  "listing exchange (CME, CBOT, NYMEX or COMEX).")
            elif exchange not in ALLOWED_EXCHANGES:
                errors[symbol] = f"Use one of {', '.join(sorted(ALLOWED_EXCHANGES))}."
            else:
                cleaned[symbol] = exchange
        if errors:
            raise serializers.ValidationError(errors)
        return cleaned

    def validate_multiplier(self, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise serializers.ValidationError("Must be a positive number.")
        return value
