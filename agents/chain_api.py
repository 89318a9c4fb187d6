"""GET /clients/{client_id}/chain: the option chain of the agent's hedge future, valued.

Here rather than in risk because the contracts follow the agent's parameters (its underlying,
a pinned hedge future, the structure window); the chain itself is `risk.chain.option_chain_get`.
"""
from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agents.selectors import agent_parameters_get
from brokers.serializers import BrokerErrorSerializer
from brokers.services import broker_session
from risk.chain import ExpiryNotListed, OptionChain, option_chain_get
from tenants.resolution import ClientScopedAPIView
from tradingplatform.api import RejectsUnknownKeysSerializer
from tradingplatform.serialization import finite_or_none


class ChainQuerySerializer(RejectsUnknownKeysSerializer):
    expiry = serializers.DateField(required=False, help_text="An option expiry (YYYY-MM-DD) from `expiries`; "
                                                             "default the nearest.")


class ChainExpirySerializer(serializers.Serializer):
    expiry = serializers.DateField()
    days = serializers.IntegerField(help_text="Calendar days to expiry.")
    underlying_key = serializers.CharField(help_text="The future its options deliver.")
    held_legs = serializers.IntegerField(help_text="Options of this expiry the client holds.")


class ChainQuoteSerializer(serializers.Serializer):
    instrument_key = serializers.CharField()
    bid = serializers.FloatField(allow_null=True)
    ask = serializers.FloatField(allow_null=True)
    mark = serializers.FloatField(allow_null=True)
    quote_time = serializers.DateTimeField(allow_null=True)
    implied_vol = serializers.FloatField(allow_null=True, help_text="Annualised, 0.18 = 18 %.")
    delta = serializers.FloatField(allow_null=True, help_text="Per contract unit (dV/dF).")
    gamma = serializers.FloatField(allow_null=True)
    vega = serializers.FloatField(allow_null=True, help_text="Price change per vol point.")
    theta = serializers.FloatField(allow_null=True, help_text="Price change per calendar day.")
    greeks_source = serializers.CharField(help_text="broker, model, expired or none.")
    held = serializers.IntegerField(help_text="Contracts the client holds (signed; 0: none).")


class ChainRowSerializer(serializers.Serializer):
    strike = serializers.FloatField()
    at_the_money = serializers.BooleanField()
    call = ChainQuoteSerializer(allow_null=True)
    put = ChainQuoteSerializer(allow_null=True)


class ChainSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    hedge_future_key = serializers.CharField(allow_null=True)
    note = serializers.CharField(allow_blank=True, help_text="Why this hedge future (a roll), when it needs saying.")
    expiries = ChainExpirySerializer(many=True)
    expiry = serializers.DateField(allow_null=True, help_text="The expiry shown.")
    forward = serializers.FloatField(allow_null=True, help_text="The shown expiry's underlying future, mid.")
    as_of = serializers.DateTimeField()
    rows = ChainRowSerializer(many=True)


def _quote_json(side) -> dict | None:
    if side is None:
        return None
    risk = side.risk
    usable = risk.greeks_source not in ("none",)
    return {
        "instrument_key": side.instrument.key, "bid": finite_or_none(side.bid), "ask": finite_or_none(side.ask),
        "mark": finite_or_none(risk.mark), "quote_time": risk.quote_time,
        "implied_vol": finite_or_none(risk.implied_vol),
        **{name: finite_or_none(getattr(risk, name)) if usable else None
           for name in ("delta", "gamma", "vega", "theta")},
        "greeks_source": risk.greeks_source, "held": side.held,
    }


def chain_json(chain: OptionChain) -> dict:
    return {
        "underlying": chain.underlying,
        "hedge_future_key": chain.hedge_future.key if chain.hedge_future else None,
        "note": chain.note,
        "expiries": [{"expiry": item.expiry, "days": item.days, "underlying_key": item.underlying.key,
                      "held_legs": item.held_legs} for item in chain.expiries],
        "expiry": chain.expiry.expiry if chain.expiry else None,
        "forward": finite_or_none(chain.forward),
        "as_of": chain.as_of,
        "rows": [{"strike": row.strike, "at_the_money": row.at_the_money, "call": _quote_json(row.call),
                  "put": _quote_json(row.put)} for row in chain.rows],
    }


def chain_read(*, expiry) -> OptionChain:
    """The chain for the agent's parameters in force (the current schema is the client's)."""
    parameters = agent_parameters_get()
    structure = parameters.structure
    with broker_session() as broker:
        return option_chain_get(broker=broker, underlying=parameters.underlying,
                                chosen_hedge_expiry=parameters.hedge_future_expiry,
                                dte_max=getattr(structure, "dte_max", 60), expiry=expiry, now=timezone.now(),
                                rate=settings.RISK_FREE_RATE)


class ChainView(ClientScopedAPIView):
    @extend_schema(
        summary="Option chain of the hedge future",
        description="Strikes of one expiry with bid/ask, implied volatility and greeks per contract unit, "
                    "legs the client holds marked (`held`), and every expiry of the options the agent may "
                    "trade (the hedge future's, and later futures' while the structure window reaches them).",
        parameters=[ChainQuerySerializer], tags=["book"],
        responses={200: ChainSerializer,
                   400: OpenApiResponse(description="`expiry` is not a date or not a listed expiry; `errors` "
                                                    "names it."),
                   503: OpenApiResponse(BrokerErrorSerializer, description="The broker could not be reached "
                                                                           "(`detail.broker` names it).")},
    )
    def get(self, request: Request, client_id: str) -> Response:
        query = ChainQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            chain = chain_read(expiry=query.validated_data.get("expiry"))
        except ExpiryNotListed as exc:
            listed = ", ".join(day.isoformat() for day in exc.listed) or "none"
            raise serializers.ValidationError({"expiry": [f"Not a listed expiry. Listed: {listed}."]}) from exc
        return Response(ChainSerializer(chain_json(chain)).data)
