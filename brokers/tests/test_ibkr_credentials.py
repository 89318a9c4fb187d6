"""IBKRCredentialsSerializer: the connect-broker payload for Interactive Brokers."""
from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from brokers.ibkr import IBKRBroker

if not settings.configured:
    settings.configure(USE_I18N=False)

from brokers.ibkr.credentials import IBKRCredentialsSerializer  # noqa: E402

GOOD: dict[str, Any] = {
    "host": "127.0.0.1", "port": 4002, "client_id": 11, "underlying_instrument": "CL",
    "underlying_expiry": "202712", "connect_retries": 4, "connect_backoff_seconds": 2.5,
    "exchange_overrides": {"CL": "nymex"}, "trading_class": "LO", "multiplier": 1000,
}


def test_good_payload_builds_a_broker() -> None:
    serializer = IBKRCredentialsSerializer(data=GOOD)
    assert serializer.is_valid(), serializer.errors
    data = serializer.validated_data
    assert data["exchange_overrides"] == {"CL": "NYMEX"}
    broker = IBKRBroker.from_credentials(data)
    assert broker._config.port == 4002 and broker._config.trading_class == "LO"


def test_defaults_for_optional_fields() -> None:
    minimal = {k: GOOD[k] for k in ("host", "port", "client_id", "underlying_instrument",
                                    "underlying_expiry")}
    serializer = IBKRCredentialsSerializer(data=minimal)
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["connect_retries"] == 3
    assert serializer.validated_data["exchange_overrides"] == {}


@pytest.mark.parametrize(("field", "value"), [
    ("host", ""), ("port", 0), ("port", 65536), ("client_id", -1),
    ("underlying_instrument", "E-S"), ("underlying_expiry", "2027-12"),
    ("underlying_expiry", "202713"), ("connect_retries", 11), ("connect_backoff_seconds", 61),
    ("exchange_overrides", {"CL": "ICE"}), ("exchange_overrides", {"E S": "CME"}),
    ("trading_class", ""), ("multiplier", 0), ("multiplier", -50),
])
def test_each_bad_field_is_reported_on_that_field(field: str, value: Any) -> None:
    serializer = IBKRCredentialsSerializer(data={**GOOD, field: value})
    assert not serializer.is_valid()
    assert list(serializer.errors) == [field]


def test_missing_host_is_required() -> None:
    serializer = IBKRCredentialsSerializer(data={k: v for k, v in GOOD.items() if k != "host"})
    assert not serializer.is_valid() and "host" in serializer.errors


def test_globex_is_rejected_with_a_clear_message() -> None:
    serializer = IBKRCredentialsSerializer(data={**GOOD, "exchange_overrides": {"ES": "GLOBEX"}})
    assert not serializer.is_valid()
    assert "GLOBEX is no longer accepted" in str(serializer.errors["exchange_overrides"]["ES"])


def test_a_product_outside_the_table_is_accepted_with_its_exchange() -> None:
    """The original specification's example: the Dow future on CBOT (checked with TWS at connect)."""
    original = {**GOOD, "underlying_instrument": "ym", "underlying_expiry": "202603",
                "exchange_overrides": {"YM": "CBOT"}, "trading_class": "YM", "multiplier": 5}
    serializer = IBKRCredentialsSerializer(data=original)
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["underlying_instrument"] == "YM"
    unrouted = IBKRCredentialsSerializer(data={**original, "exchange_overrides": {}})
    assert not unrouted.is_valid()
    assert "give its listing exchange" in str(unrouted.errors["exchange_overrides"])
