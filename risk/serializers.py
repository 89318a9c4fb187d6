from rest_framework import serializers


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
