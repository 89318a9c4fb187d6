"""Thin views: connect a broker, read positions (with greeks) and trades."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from brokers import selectors, services
from brokers.codec import instrument_to_json
from brokers.serializers import (
    ConnectBrokerRequestSerializer,
    ConnectBrokerResponseSerializer,
    FillSerializer,
    PositionsSerializer,
)
from risk.selectors import net_greeks_json
from risk.services import book_sync
from tenants.models import Membership
from tenants.resolution import ClientScopedAPIView
from tradingplatform.api import LimitOffsetPages
from tradingplatform.serialization import finite_or_none


class ConnectBrokerView(ClientScopedAPIView):
    required_role = Membership.Role.OWNER

    @extend_schema(request=ConnectBrokerRequestSerializer, responses={200: ConnectBrokerResponseSerializer},
                   tags=["broker"])
    def post(self, request: Request, client_id: str) -> Response:
        serializer = ConnectBrokerRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.broker_connect(
            client=self.client_access.client,
            broker=serializer.validated_data["broker"],
            credentials=serializer.validated_data["credentials"],
            actor=request.user.get_username(),
        )
        body = {
            "broker": result.connection.broker,
            "routed_to": result.routed_to,
            "status": result.connection.status,
            "connected": bool(result.health and result.health.connected),
            "detail": result.health.detail if result.health else "",
            "error": result.error.payload() if result.error else None,
            "checked_at": result.connection.last_checked_at,
        }
        return Response(ConnectBrokerResponseSerializer(body).data)


def _leg_json(leg, quotes: dict) -> dict:
    risk = leg.risk
    quote = quotes.get(risk.instrument.key)
    return {
        "instrument": {"key": risk.instrument.key, **instrument_to_json(risk.instrument)},
        "quantity": leg.quantity,
        "average_price": leg.average_price,
        "mark": finite_or_none(risk.mark),
        "quote_time": risk.quote_time,
        "unrealized_pnl": finite_or_none(leg.unrealized_pnl),
        "market_data": "model" if risk.mark_source == "model" else (quote.data_type if quote is not None else "none"),
        "greeks": {
            "delta": finite_or_none(risk.delta),
            "gamma": finite_or_none(risk.gamma),
            "vega": finite_or_none(risk.vega),
            "theta": finite_or_none(risk.theta),
            "rho": finite_or_none(risk.rho),
            "implied_vol": finite_or_none(risk.implied_vol),
            "source": risk.greeks_source,
            "delta_contracts": finite_or_none(leg.delta_equivalent),
        },
    }


class PositionsView(ClientScopedAPIView):
    @extend_schema(responses={200: PositionsSerializer}, tags=["book"])
    def get(self, request: Request, client_id: str) -> Response:
        # The one book sync: fills it records count for the circuit breaker, as any other.
        with services.broker_session() as broker:
            snapshot = book_sync(client=self.client_access.client, broker=broker)
        valuation = snapshot.valuation
        greeks = net_greeks_json(valuation)
        body = {
            "as_of": valuation.as_of,
            "broker": snapshot.health.broker,
            "legs": [_leg_json(leg, snapshot.quotes) for leg in valuation.legs],
            "net_greeks": greeks["by_underlying"],
            "net_delta": greeks["net_delta"],
            "unrealized_pnl": greeks["unrealized_pnl"],
        }
        return Response(PositionsSerializer(body).data)


@extend_schema(tags=["book"])
class TradesView(ClientScopedAPIView, ListAPIView):
    """Fills, newest first, `?limit=&offset=`."""

    serializer_class = FillSerializer
    pagination_class = LimitOffsetPages

    def get_queryset(self):
        return selectors.fills_newest_first()
