from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from brokers.codec import instrument_from_json
from brokers.models import BrokerConnection, Fill, Order
from brokers.registry import broker_choices
from brokers.selectors import WORKING_STATES


class ConnectBrokerRequestSerializer(serializers.Serializer):
    broker = serializers.ChoiceField(choices=broker_choices())
    credentials = serializers.DictField(required=False, default=dict)


class BrokerErrorSerializer(serializers.Serializer):
    type = serializers.CharField()
    operation = serializers.CharField()
    broker = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()
    retryable = serializers.BooleanField()
    context = serializers.DictField()


class ConnectBrokerResponseSerializer(serializers.Serializer):
    broker = serializers.CharField(help_text="The broker whose credentials are stored.")
    routed_to = serializers.CharField(help_text="The adapter that answered: 'mock' while USE_MOCK_BROKER=true.")
    status = serializers.ChoiceField(choices=BrokerConnection.Status.choices)
    connected = serializers.BooleanField()
    detail = serializers.CharField(allow_blank=True)
    error = BrokerErrorSerializer(allow_null=True)
    checked_at = serializers.DateTimeField(allow_null=True)


class InstrumentSerializer(serializers.Serializer):
    key = serializers.CharField()
    symbol = serializers.CharField()
    sec_type = serializers.CharField()
    expiry = serializers.DateField()
    exchange = serializers.CharField()
    multiplier = serializers.FloatField()
    currency = serializers.CharField()
    strike = serializers.FloatField(allow_null=True)
    right = serializers.CharField(allow_null=True)
    trading_class = serializers.CharField(allow_blank=True)
    exercise_style = serializers.CharField(allow_null=True)
    underlying_expiry = serializers.DateField(allow_null=True)


class LegGreeksSerializer(serializers.Serializer):
    delta = serializers.FloatField(allow_null=True, help_text="Per contract unit (dV/dF).")
    gamma = serializers.FloatField(allow_null=True)
    vega = serializers.FloatField(allow_null=True, help_text="Price change per vol point.")
    theta = serializers.FloatField(allow_null=True, help_text="Price change per calendar day.")
    rho = serializers.FloatField(allow_null=True, help_text="Price change per 1% rate move.")
    implied_vol = serializers.FloatField(allow_null=True)
    source = serializers.ChoiceField(
        choices=["broker", "model", "broker+smile", "model+smile", "broker+mv", "model+mv", "expired", "none"],
        help_text="Where the greeks came from; +smile / +mv: delta adjusted by the sticky-moneyness or "
                  "minimum-variance delta model.")
    delta_model = serializers.CharField(help_text="The delta model this leg's delta follows.")
    delta_note = serializers.CharField(allow_null=True, help_text="Why the chosen delta model could not apply.")
    delta_contracts = serializers.FloatField(
        allow_null=True, help_text="The leg's delta in underlying futures contracts (quantity included)."
    )


class PositionLegSerializer(serializers.Serializer):
    instrument = InstrumentSerializer()
    quantity = serializers.IntegerField()
    average_price = serializers.FloatField()
    mark = serializers.FloatField(allow_null=True)
    quote_time = serializers.DateTimeField(allow_null=True)
    unrealized_pnl = serializers.FloatField(allow_null=True, help_text="USD.")
    market_data = serializers.ChoiceField(
        choices=["live", "frozen", "delayed", "delayed_frozen", "model", "none"],
        help_text="What the leg's mark is: the broker's live quote, frozen (the last live values, "
                  "market closed), delayed (10-20 minutes late) or delayed-frozen; 'model' when the "
                  "broker sent no price and the platform's Black-76 values the option at the "
                  "broker's implied volatility for it; 'none' when nothing values it. Greeks say "
                  "their own source (broker or model).")
    greeks = LegGreeksSerializer()


class NetGreeksSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    delta = serializers.FloatField(allow_null=True, help_text="Underlying futures contracts.")
    gamma = serializers.FloatField(allow_null=True, help_text="Contracts per 1 point of the future.")
    vega = serializers.FloatField(allow_null=True, help_text="USD per vol point.")
    theta = serializers.FloatField(allow_null=True, help_text="USD per calendar day.")
    delta_model = serializers.CharField(help_text="The delta model the net delta is counted in.")


class PositionsSerializer(serializers.Serializer):
    as_of = serializers.DateTimeField()
    broker = serializers.CharField()
    legs = PositionLegSerializer(many=True)
    net_greeks = NetGreeksSerializer(many=True)
    net_delta = serializers.FloatField(allow_null=True, help_text="Sum over underlyings, in futures contracts.")
    unrealized_pnl = serializers.FloatField(allow_null=True, help_text="USD; null when a leg has no mark.")


class FillSerializer(serializers.ModelSerializer):
    class Meta:
        model = Fill
        fields = ["fill_id", "client_order_id", "instrument_key", "instrument", "side", "quantity", "price",
                  "commission", "realized_pnl", "executed_at"]


class OrderLegSerializer(serializers.Serializer):
    instrument_key = serializers.CharField()
    side = serializers.ChoiceField(choices=["BUY", "SELL"])
    quantity = serializers.IntegerField(min_value=1)


class OrderSerializer(serializers.ModelSerializer):
    """An order as we sent it, with the state and fills the broker last reported."""

    legs = serializers.SerializerMethodField()
    quantity = serializers.SerializerMethodField(help_text="Units of the order (the largest leg's contracts).")
    working = serializers.SerializerMethodField(help_text="Whether the broker may still fill it (cancellable).")
    limit_price = serializers.FloatField(allow_null=True, help_text="Per unit; a combo's net price (debit > 0).")
    average_fill_price = serializers.FloatField(allow_null=True)

    class Meta:
        model = Order
        fields = ["client_order_id", "broker", "broker_order_id", "broker_perm_id", "legs", "order_type", "limit_price",
                  "state",
                  "working", "quantity", "filled_quantity", "average_fill_price", "message", "created_at",
                  "updated_at"]
        read_only_fields = fields

    @extend_schema_field(OrderLegSerializer(many=True))
    def get_legs(self, order: Order) -> list[dict]:
        return order_legs(order)

    def get_quantity(self, order: Order) -> int:
        return max((int(leg.get("quantity", 0)) for leg in order.legs or []), default=0)

    def get_working(self, order: Order) -> bool:
        return order.state in WORKING_STATES


def order_legs(order: Order) -> list[dict]:
    legs = []
    for leg in order.legs or []:
        try:
            key = instrument_from_json(leg["instrument"]).key
        except (KeyError, TypeError, ValueError):
            key = "?"
        legs.append({"instrument_key": key, "side": leg.get("side"), "quantity": leg.get("quantity")})
    return legs
