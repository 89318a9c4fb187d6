import math
from datetime import timedelta

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


# The book's history: GET /clients/{id}/risk/history?from=&to=&step=&underlying=
HISTORY_MAX_POINTS = 5000  # per underlying: (to - from) / step may not exceed it
HISTORY_DEFAULT_POINTS = 500  # without a step, the range is cut into about this many
HISTORY_DEFAULT_SPAN_HOURS = 24  # without `from`


class BookHistoryQuerySerializer(serializers.Serializer):
    """Query parameters. `from` is a Python keyword: declared as `from_`, exposed as `from`."""

    from_ = serializers.DateTimeField(required=False, help_text=(
        f"Start (ISO 8601, inclusive). Default: {HISTORY_DEFAULT_SPAN_HOURS} hours before `to`."))
    to = serializers.DateTimeField(required=False, help_text="End (ISO 8601, exclusive). Default: now.")
    step = serializers.IntegerField(required=False, min_value=1, max_value=86_400, help_text=(
        "Seconds per point: the last point of each step is returned. Default: the range cut into about "
        f"{HISTORY_DEFAULT_POINTS} steps (at least 1 s). At most {HISTORY_MAX_POINTS} steps per range."))
    underlying = serializers.CharField(required=False, max_length=16, help_text=(
        "One product's points (e.g. ES), or `book` for the whole book's; default: every row."))

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate(self, attrs: dict) -> dict:
        from django.utils import timezone

        end = attrs.get("to") or timezone.now()
        start = attrs.get("from") or end - timedelta(hours=HISTORY_DEFAULT_SPAN_HOURS)
        if start >= end:
            raise serializers.ValidationError({"from": ["Must be before `to`."]})
        span = (end - start).total_seconds()
        step = attrs.get("step") or max(math.ceil(span / HISTORY_DEFAULT_POINTS), 1)
        if span / step > HISTORY_MAX_POINTS:
            raise serializers.ValidationError({"step": [
                f"Too small for this range: at most {HISTORY_MAX_POINTS} steps; use at least "
                f"{math.ceil(span / HISTORY_MAX_POINTS)} seconds, or a shorter range."]})
        underlying = attrs.get("underlying")
        return {"from": start, "to": end, "step": step,
                "underlying": "" if underlying == "book" else underlying}


class BookHistoryPointSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    underlying = serializers.SerializerMethodField(help_text="The product, or `book` for the whole book's row.")
    net_delta = serializers.FloatField(allow_null=True, help_text="Underlying-contract equivalents.")
    net_gamma = serializers.FloatField(allow_null=True)
    net_vega = serializers.FloatField(allow_null=True)
    net_theta = serializers.FloatField(allow_null=True)
    unrealized_pnl = serializers.DecimalField(max_digits=16, decimal_places=2, allow_null=True,
                                              help_text="USD, of the open legs.")
    realized_pnl_today = serializers.DecimalField(max_digits=16, decimal_places=2, allow_null=True, help_text=(
        "USD, net of commissions, since the trading day began (the book row only)."))
    daily_pnl = serializers.DecimalField(max_digits=16, decimal_places=2, allow_null=True, help_text=(
        "USD: today's P&L as the daily-loss limit counts it (the book row only)."))
    open_legs = serializers.IntegerField()

    def get_underlying(self, point) -> str:
        return point.underlying or "book"


class BookHistorySerializer(serializers.Serializer):
    client_id = serializers.CharField()
    from_ = serializers.DateTimeField()
    to = serializers.DateTimeField()
    step = serializers.IntegerField(help_text="Seconds per point.")
    points = BookHistoryPointSerializer(many=True, help_text="Oldest first: the last point of each step.")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields
