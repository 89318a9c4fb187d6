from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.models import AgentConfig, Proposal
from agents.parameters import (
    BAND_METHODS,
    BAND_WIDTH,
    COST_PER_CONTRACT,
    CYCLE_INTERVAL_SECONDS,
    DAYS_TO_EXPIRY,
    EXIT_PERCENT,
    MV_COEFFICIENT,
    OPTION_DELTA,
    PROPOSAL_TTL_SECONDS,
    RISK_AVERSION,
    STRUCTURE_KINDS,
    STRUCTURE_QUANTITY,
    TARGET_DELTA,
    Bounds,
)
from agents.selectors import proposal_effective_status
from brokers.products import PRODUCTS
from risk.delta_models import DELTA_MODELS
from risk.serializers import RiskLimitsSerializer
from tradingplatform.api import RejectsUnknownKeysSerializer


def _within(bounds: Bounds):
    """A DRF validator holding a value to the same bounds as agents.parameters."""

    def validate(value):
        if value is not None and not bounds.contains(value):
            raise serializers.ValidationError(bounds.message)

    return validate


def _float(bounds: Bounds, help_text: str = "", **kwargs) -> serializers.FloatField:
    return serializers.FloatField(required=False, validators=[_within(bounds)], help_text=help_text, **kwargs)


def _integer(bounds: Bounds, help_text: str = "", **kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(
        required=False, validators=[_within(bounds)], help_text=help_text, **kwargs
    )


class _PartialParameterGroupSerializer(RejectsUnknownKeysSerializer):
    """Every field optional (a partial update)."""


class BandSerializer(_PartialParameterGroupSerializer):
    method = serializers.ChoiceField(required=False, choices=BAND_METHODS)
    width = _float(BAND_WIDTH, "Fixed half-width, underlying futures contracts.")
    cost_per_contract = _float(
        COST_PER_CONTRACT,
        "USD, one-way cost of one hedge future (Whalley-Wilmott); null: the product's own "
        "(half its typical spread plus commission; ES 8.50).",
        allow_null=True,
    )
    risk_aversion = _float(RISK_AVERSION, "CARA coefficient per USD (Whalley-Wilmott).")
    min_width = _float(BAND_WIDTH, "Contracts; the Whalley-Wilmott band's floor.")
    max_width = _float(BAND_WIDTH, "Contracts; the Whalley-Wilmott band's ceiling.")


class StructureRulesSerializer(_PartialParameterGroupSerializer):
    kind = serializers.ChoiceField(required=False, choices=STRUCTURE_KINDS)
    short_delta = _float(OPTION_DELTA, "|delta| of the strangle strikes or the iron condor's short strikes.")
    wing_delta = _float(OPTION_DELTA, "|delta| of the iron condor's long wings.")
    dte_min = _integer(DAYS_TO_EXPIRY, "Calendar days to expiry, at least.")
    dte_max = _integer(DAYS_TO_EXPIRY, "Calendar days to expiry, at most.")
    quantity = _integer(STRUCTURE_QUANTITY, "Structure units per order.")


class ExitsSerializer(_PartialParameterGroupSerializer):
    profit_target_pct = _float(EXIT_PERCENT, "% of the entry premium captured; null: off.", allow_null=True)
    stop_loss_pct = _float(EXIT_PERCENT, "% of the entry premium lost; null: off.", allow_null=True)
    roll_dte = _integer(DAYS_TO_EXPIRY, "Roll at this many days to expiry or fewer; null: off.",
                        allow_null=True)


class MinimumVarianceSerializer(_PartialParameterGroupSerializer):
    a = _float(MV_COEFFICIENT, "Hull & White's a; null (with b and c): not estimated.", allow_null=True)
    b = _float(MV_COEFFICIENT, "Hull & White's b; null (with a and c): not estimated.", allow_null=True)
    c = _float(MV_COEFFICIENT, "Hull & White's c; null (with a and b): not estimated.", allow_null=True)


class AgentParametersSerializer(_PartialParameterGroupSerializer):
    """A partial update of the agent's parameters; cross-field rules are checked on the merged
    result by agents.parameters.parameters_from_json."""

    underlying = serializers.ChoiceField(required=False, choices=sorted(PRODUCTS))
    hedge_future_expiry = serializers.DateField(
        required=False, allow_null=True, help_text="The hedge future's expiry; null: the front future."
    )
    target_delta = _float(TARGET_DELTA, "Underlying futures contracts.")
    band = BandSerializer(required=False)
    cycle_interval_seconds = _integer(CYCLE_INTERVAL_SECONDS)
    proposal_ttl_seconds = _integer(PROPOSAL_TTL_SECONDS)
    structure = StructureRulesSerializer(required=False)
    exits = ExitsSerializer(required=False)
    delta_model = serializers.ChoiceField(
        required=False, choices=DELTA_MODELS,
        help_text="The delta net delta is counted in for the underlying: sticky_strike (plain Black-76), "
                  "sticky_moneyness (the fitted smile moves with the future; the default) or minimum_variance "
                  "(Hull & White 2017, with minimum_variance.a/b/c).")
    minimum_variance = MinimumVarianceSerializer(required=False)
    risk_limits = RiskLimitsSerializer(required=False)

    def validate_hedge_future_expiry(self, value):
        if value is not None and value < timezone.now().date():
            raise serializers.ValidationError("This future has expired; null hedges with the front future.")
        return value

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
    session = serializers.DictField(
        allow_null=True, required=False,
        help_text="IBKR: the live session's state as the session process last published it (phase connecting, "
                  "connected, link_down, unresponsive or gateway_down; detail; IB's notices: 1100, farms down, 10197).")


class EffectiveStateSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=["EMERGENCY_HALT", "CLIENT_HALT", "BREAKER", "HALTED", "REDUCING", "ACTIVE"],
        help_text="The first that holds, in this order: emergency halt, client halt, breaker, the governor's state.")
    halted = serializers.BooleanField(help_text="Whether executions are refused.")
    reason = serializers.CharField(allow_blank=True)
    set_by = serializers.CharField(allow_null=True, help_text="Who set it (an operator, the risk governor).")
    since = serializers.DateTimeField(allow_null=True)


class AgentStatusSerializer(serializers.Serializer):
    client_id = serializers.CharField()
    mode = serializers.ChoiceField(choices=AgentConfig.Mode.choices)
    autonomous_enabled = serializers.BooleanField(help_text="The platform-wide kill switch.")
    executing = serializers.BooleanField(help_text="Whether the agent may execute orders itself right now.")
    trading_state = serializers.ChoiceField(choices=["ACTIVE", "REDUCING", "HALTED"])
    trading_state_reason = serializers.CharField(allow_blank=True)
    trading_state_until = serializers.DateTimeField(allow_null=True)
    effective_state = EffectiveStateSerializer()
    halt = serializers.DictField(help_text="Emergency (platform) and operator (client) halts.")
    circuit_breaker = serializers.DictField()
    limits = serializers.DictField(help_text="The risk limits in force.")
    usage = serializers.DictField(help_text="Current use of the limits, from the last book sync.")
    broker = BrokerStatusSerializer()
    net_greeks = serializers.DictField(allow_null=True, help_text="From the last book sync.")
    last_cycle = serializers.DateTimeField(allow_null=True)
    last_cycle_status = serializers.CharField(allow_blank=True, help_text='"completed", "failed" or blank.')
    last_cycle_reason = serializers.CharField(allow_blank=True, help_text="The last decision's reason, or the failure.")
    next_cycle = serializers.DateTimeField(allow_null=True, help_text="When the scheduler next runs a cycle.")
    pending_proposals = serializers.IntegerField()
    parameters = serializers.DictField()
    updated_at = serializers.DateTimeField(allow_null=True)


class ProposalLegSerializer(serializers.Serializer):
    instrument_key = serializers.CharField()
    instrument = serializers.DictField()
    side = serializers.ChoiceField(choices=["BUY", "SELL"])
    quantity = serializers.IntegerField()


class ProposalSerializer(serializers.ModelSerializer):
    trade_id = serializers.UUIDField(source="id", read_only=True, help_text="The id approve/reject take.")
    status = serializers.SerializerMethodField(help_text="A pending proposal past its time to live is expired.")
    legs = ProposalLegSerializer(many=True, read_only=True)
    decision_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Proposal
        fields = ["trade_id", "status", "source", "mode", "action", "summary", "legs", "order_type", "limit_price",
                  "rationale", "precheck", "policy_version", "content_hash", "client_order_id", "decision_id",
                  "created_at", "expires_at", "decided_by", "decided_at", "decision_reason", "execution"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=Proposal.Status.choices))
    def get_status(self, proposal: Proposal) -> str:
        return proposal_effective_status(proposal, timezone.now())


class ProposalListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Proposal.Status.choices, required=False)


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class ParameterFieldSerializer(serializers.Serializer):
    path = serializers.CharField(help_text='Dotted, as in the parameters document: "band.width".')
    value = serializers.JSONField(help_text="In force now.")
    default = serializers.JSONField()
    type = serializers.ChoiceField(choices=["number", "integer", "money", "choice", "date"])
    min = serializers.JSONField(required=False, allow_null=True)
    max = serializers.JSONField(required=False, allow_null=True, help_text="For a risk limit: the operator's ceiling.")
    min_inclusive = serializers.BooleanField(required=False)
    choices = serializers.ListField(child=serializers.CharField(), required=False)
    nullable = serializers.BooleanField()
    unit = serializers.CharField(allow_blank=True)
    help = serializers.CharField(required=False)


class AgentParametersDescribedSerializer(serializers.Serializer):
    parameters = ParameterFieldSerializer(many=True)
    risk_limits = ParameterFieldSerializer(many=True)
    mode = serializers.ChoiceField(choices=AgentConfig.Mode.choices)
    updated_at = serializers.DateTimeField(allow_null=True)


class ScenarioQuerySerializer(serializers.Serializer):
    vol_shift = serializers.FloatField(min_value=-0.5, max_value=0.5, default=0.0, required=False,
                                       help_text="Added to every implied vol: 0.05 is 5 vol points.")
    days = serializers.FloatField(min_value=0.0, max_value=365.0, default=0.0, required=False,
                                  help_text="Calendar days from now.")
    proposal = serializers.UUIDField(required=False, help_text="Also show the book after this proposal.")


class ScenarioSerializer(serializers.Serializer):
    shifts = serializers.ListField(child=serializers.FloatField(), help_text="Relative moves: -0.10 is -10 %.")
    now = serializers.ListField(child=serializers.FloatField(), help_text="P&L in USD at each move.")
    at_expiry = serializers.ListField(child=serializers.FloatField(), help_text="At the nearest option expiry.")
    after_proposal = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    proposal = serializers.CharField(allow_null=True)
    unpriced = serializers.ListField(child=serializers.CharField(), help_text="Legs left out, and why.")
    vol_shift = serializers.FloatField()
    days = serializers.FloatField()


class TradeLegRequestSerializer(RejectsUnknownKeysSerializer):
    """One leg a trader asks for. A future without `expiry` is the agent's hedge future; an option
    without one takes the expiry the agent would choose in its structure window."""

    side = serializers.ChoiceField(choices=["BUY", "SELL"])
    quantity = serializers.IntegerField(min_value=1, max_value=100_000)
    symbol = serializers.ChoiceField(choices=sorted(PRODUCTS))
    sec_type = serializers.ChoiceField(choices=["FUT", "FOP"])
    expiry = serializers.DateField(required=False, allow_null=True, default=None)
    strike = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0.0,
                                    max_value=1e9)
    right = serializers.ChoiceField(choices=["C", "P"], required=False, allow_null=True, default=None)

    def validate(self, attrs):
        errors = {}
        if attrs["sec_type"] == "FOP":
            if attrs.get("strike") is None:
                errors["strike"] = ["An option needs its strike."]
            if attrs.get("right") is None:
                errors["right"] = ["An option needs its right: C or P."]
        else:
            for name in ("strike", "right"):
                if attrs.get(name) is not None:
                    errors[name] = ["A future has no strike or right."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class TradeRequestSerializer(RejectsUnknownKeysSerializer):
    """Explicit legs, drafted as one pending proposal (a combo when several: options on one
    product), priced by the agent at the far touch plus its protection ticks."""

    legs = TradeLegRequestSerializer(many=True, allow_empty=False, max_length=8)


class TradeDraftedSerializer(serializers.Serializer):
    decision_id = serializers.IntegerField()
    reason = serializers.CharField()
    proposals = ProposalSerializer(many=True)


class RiskViolationSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    limit = serializers.FloatField(allow_null=True)
    value = serializers.FloatField(allow_null=True)
    instrument_key = serializers.CharField(allow_null=True)
    trade = serializers.CharField(required=False)


class RiskRefusalSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    violations = RiskViolationSerializer(many=True)
