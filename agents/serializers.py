from rest_framework import serializers

from agents.models import AgentConfig


class RiskLimitsSerializer(serializers.Serializer):
    """Every field optional: a partial update of the client's risk limits."""

    max_net_delta = serializers.FloatField(required=False, min_value=0, help_text="Underlying futures contracts.")
    max_order_contracts = serializers.IntegerField(required=False, min_value=1)
    max_leg_contracts = serializers.IntegerField(required=False, min_value=1)
    max_daily_loss = serializers.DecimalField(required=False, max_digits=14, decimal_places=2, min_value=0,
                                              help_text="USD.")
    max_open_legs = serializers.IntegerField(required=False, min_value=1)
    max_spread_pct = serializers.FloatField(required=False, min_value=0, help_text="A fraction: 0.10 is 10 %.")
    max_quote_age_seconds = serializers.FloatField(required=False, min_value=0)
    breaker_loss_count = serializers.IntegerField(required=False, min_value=1)
    breaker_loss_threshold = serializers.DecimalField(required=False, max_digits=14, decimal_places=2, min_value=0,
                                                      help_text="USD; a loss must exceed it to count.")
    max_orders_per_minute = serializers.IntegerField(required=False, min_value=1)
    duplicate_window_seconds = serializers.FloatField(required=False, min_value=0)

    def to_internal_value(self, data):
        if isinstance(data, dict) and (unknown := set(data) - set(self.fields)):
            raise serializers.ValidationError({name: ["Unknown limit."] for name in sorted(unknown)})
        return super().to_internal_value(data)


class AgentParametersSerializer(serializers.Serializer):
    risk_limits = RiskLimitsSerializer(required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict) and (unknown := set(data) - set(self.fields)):
            raise serializers.ValidationError({name: ["Unknown parameter."] for name in sorted(unknown)})
        return super().to_internal_value(data)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Nothing to change.")
        return attrs


class AgentModeSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=AgentConfig.Mode.choices)


class BrokerStatusSerializer(serializers.Serializer):
    broker = serializers.CharField()
    routed_to = serializers.CharField()
    status = serializers.CharField()
    last_checked_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.DictField(allow_null=True)


class AgentStatusSerializer(serializers.Serializer):
    client_id = serializers.CharField()
    mode = serializers.ChoiceField(choices=AgentConfig.Mode.choices)
    autonomous_enabled = serializers.BooleanField(help_text="The platform-wide kill switch.")
    executing = serializers.BooleanField(help_text="Whether the agent may execute orders itself right now.")
    trading_state = serializers.ChoiceField(choices=["ACTIVE", "REDUCING", "HALTED"])
    trading_state_reason = serializers.CharField(allow_blank=True)
    trading_state_until = serializers.DateTimeField(allow_null=True)
    halt = serializers.DictField(help_text="Emergency (platform) and operator (client) halts.")
    circuit_breaker = serializers.DictField()
    limits = serializers.DictField(help_text="The risk limits in force.")
    usage = serializers.DictField(help_text="Current use of the limits, from the last book sync.")
    broker = BrokerStatusSerializer()
    net_greeks = serializers.DictField(allow_null=True, help_text="From the last book sync.")
    last_cycle = serializers.DateTimeField(allow_null=True)
    parameters = serializers.DictField()
    updated_at = serializers.DateTimeField(allow_null=True)
