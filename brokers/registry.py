"""Which adapter serves which broker name, and how its credentials are validated.

`BROKER_KINDS` is the one list of brokers a client can connect: the connection model's choices
and the API's broker fields derive from it (`broker_choices`), so adding a broker is one entry
here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework import serializers

from brokers.domain import Broker, BrokerError
from brokers.endpoints import ENDPOINT_REFUSED
from brokers.ibkr.broker import IBKRBroker
from brokers.ibkr.credentials import IBKRCredentialsSerializer
from brokers.ibkr.session.proxy import IBKRSessionBroker
from brokers.mock import MockBroker, MockCredentialsSerializer
from brokers.phillip import PhillipBroker, PhillipCredentialsSerializer
from brokers.stores import DatabaseSimulatorStore
from tradingplatform.serialization import json_ready


@dataclass(frozen=True, slots=True)
class BrokerKind:
    name: str
    label: str
    credentials_serializer: type[serializers.Serializer]
    build: Callable[[dict[str, Any]], Broker]


def _mock(validated: dict[str, Any]) -> Broker:
    # The state lives in the current client's schema: callers hold the connection on it.
    return MockBroker.from_credentials(validated, store=DatabaseSimulatorStore())


def _ibkr(validated: dict[str, Any]) -> Broker:
    # the live session lives in the ibkr_sessions process; a direct connection is for tools and tests
    if settings.IBKR_SESSION_PROCESS:
        return IBKRSessionBroker.from_credentials(validated)
    return IBKRBroker.from_credentials(validated)


def _phillip(validated: dict[str, Any]) -> Broker:
    return PhillipBroker.from_credentials(validated, default_base_url=settings.PHILLIP_BASE_URL)


BROKER_KINDS: dict[str, BrokerKind] = {
    "mock": BrokerKind("mock", "Simulated market", MockCredentialsSerializer, _mock),
    "ibkr": BrokerKind("ibkr", "Interactive Brokers", IBKRCredentialsSerializer, _ibkr),
    "phillip": BrokerKind("phillip", "PhillipCapital", PhillipCredentialsSerializer, _phillip),
}


def broker_choices() -> list[tuple[str, str]]:
    """(name, label) of every broker kind, for model and serializer choices."""
    return [(kind.name, kind.label) for kind in BROKER_KINDS.values()]


def credentials_validate(*, broker: str, credentials: dict[str, Any]) -> dict[str, Any]:
    """The validated, JSON-ready credentials, or a DRF ValidationError with field errors."""
    kind = BROKER_KINDS.get(broker)
    if kind is None:
        raise serializers.ValidationError({"broker": [f"Unknown broker {broker!r}."]})
    serializer = kind.credentials_serializer(data=credentials)
    if not serializer.is_valid():
        raise serializers.ValidationError({"credentials": serializer.errors})
    return json_ready(serializer.validated_data)


def routed_broker(broker: str) -> str:
    """The adapter that serves a stored broker: the simulator while USE_MOCK_BROKER=true."""
    return "mock" if settings.USE_MOCK_BROKER else broker


def broker_build(*, broker: str, credentials: dict[str, Any]) -> Broker:
    """The adapter for a stored connection. USE_MOCK_BROKER=true routes every client to the
    simulated market, whatever broker it stored."""
    if routed_broker(broker) == "mock":
        mock_credentials = credentials if broker == "mock" else {}
        return _mock(credentials_validate(broker="mock", credentials=mock_credentials))
    # Stored credentials are checked again, as when they were written: an allowlist tightened
    # since (or credentials stored before it existed) must not reach an endpoint it now refuses.
    try:
        validated = credentials_validate(broker=broker, credentials=credentials)
    except serializers.ValidationError as exc:
        refused = ENDPOINT_REFUSED in str(exc.detail)
        raise BrokerError(
            operation="connect", broker=broker, code="endpoint_not_allowed" if refused else "invalid_credentials",
            message=ENDPOINT_REFUSED if refused else "The stored broker credentials are no longer valid; reconnect "
                                                     "the broker with new ones.",
            retryable=False,
        ) from None
    return BROKER_KINDS[broker].build(validated)
