from rest_framework import serializers

from brokers.serializers import OrderSerializer
from risk.limits import LIMIT_BOUNDS, MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS, LimitBound, Number
from risk.selectors import risk_limit_ceilings
from tradingplatform.api import RejectsUnknownKeysSerializer


def _limit_field(bound: LimitBound, ceiling: Number | None) -> serializers.Field:
    """The API field of one limit, from its bounds in risk.limits (the governor checks the same)."""
    common = {"required": False, "min_value": bound.minimum, "max_value": ceiling,
              "help_text": f"{bound.help} Unit: {bound.unit}. Default {bound.default}."}
    if bound.kind is int:
        return serializers.IntegerField(**common)
    if bound.kind is float:
        return serializers.FloatField(**common)
    return serializers.DecimalField(max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, **common)


class RiskLimitsSerializer(RejectsUnknownKeysSerializer):
    """Every field optional: a partial update of the client's risk limits. The fields are built
    per instance, so that an operator's ceiling (a setting) is the field's maximum."""

    unknown_key_message = "Unknown limit."

    def get_fields(self) -> dict[str, serializers.Field]:
        ceilings = risk_limit_ceilings()
        return {bound.name: _limit_field(bound, ceilings.get(bound.name)) for bound in LIMIT_BOUNDS}


class HaltRequestSerializer(serializers.Serializer):
    halted = serializers.BooleanField()
    reason = serializers.CharField(max_length=500, trim_whitespace=True)


class HaltStateSerializer(serializers.Serializer):
    halted = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    changed_by = serializers.CharField(allow_blank=True, required=False)
    changed_at = serializers.DateTimeField(allow_null=True, required=False)


class BreakerResetRequestSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=200, help_text="Why it is safe to trade again.")


class TradingStateSerializer(serializers.Serializer):
    trading_state = serializers.ChoiceField(choices=["ACTIVE", "REDUCING", "HALTED"])
    reason = serializers.CharField(allow_blank=True)
    until = serializers.DateTimeField(allow_null=True)
    loss_streak = serializers.IntegerField()


class OrdersQuerySerializer(RejectsUnknownKeysSerializer):
    state = serializers.ChoiceField(choices=["working", "recent"], required=False, default="working",
                                    help_text="`working`: the broker may still fill them; `recent`: finished ones, "
                                              "newest first.")
    limit = serializers.IntegerField(min_value=1, max_value=500, required=False, default=50)
    offset = serializers.IntegerField(min_value=0, required=False, default=0)


class OrderCancelRequestSerializer(RejectsUnknownKeysSerializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="",
                                   help_text="Why: kept in the audit trail with who cancelled.")


class OrderConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    order = OrderSerializer()
