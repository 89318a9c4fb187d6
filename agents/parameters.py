"""The agent's trading parameters: typed, validated, and their stored JSON form.

Pure: no Django. The agent's `parameters` JSON holds these groups next to `risk_limits` (parsed by
risk.services.risk_limits_from_parameters, ignored here). Stored JSON is merged over the defaults
group by group, so a client that set only `band.width` keeps every other default.

Validation lives in the dataclasses themselves (`__post_init__`), so a parameter set built in
code is checked like one read from JSON, and `ParameterError.field_errors` names each problem by
its dotted path ("structure.dte_min") for the API to answer field by field. The bounds below are
shared with the API serializer, so both layers accept exactly the same values.

Units: deltas and band widths in underlying futures contracts; money in USD; days are calendar
days to an option's expiry date; seconds are wall-clock seconds.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any, Literal

from brokers.products import PRODUCTS
from risk.delta_models import DEFAULT_DELTA_MODEL, DELTA_MODELS, DeltaModel, MinimumVarianceCoefficients

BandMethod = Literal["fixed", "whalley_wilmott"]
StructureKind = Literal[
    "none", "short_strangle", "short_straddle", "long_straddle", "long_strangle", "iron_condor"
]
BAND_METHODS: tuple[str, ...] = ("fixed", "whalley_wilmott")
STRUCTURE_KINDS: tuple[str, ...] = (
    "none", "short_strangle", "short_straddle", "long_straddle", "long_strangle", "iron_condor"
)
RISK_LIMITS_KEY = "risk_limits"


@dataclass(frozen=True, slots=True)
class Bounds:
    """A closed range [low, high], or (low, high] when `low_inclusive` is False."""

    low: float
    high: float
    low_inclusive: bool = True

    def contains(self, value: float) -> bool:
        above_low = value >= self.low if self.low_inclusive else value > self.low
        return above_low and value <= self.high

    @property
    def message(self) -> str:
        if self.low_inclusive:
            return f"Must be between {self.low:g} and {self.high:g}."
        return f"Must be above {self.low:g} and at most {self.high:g}."


CYCLE_INTERVAL_SECONDS = Bounds(5, 86_400)
PROPOSAL_TTL_SECONDS = Bounds(10, 86_400)
TARGET_DELTA = Bounds(-1_000.0, 1_000.0)
BAND_WIDTH = Bounds(0.0, 1_000.0)  # contracts
COST_PER_CONTRACT = Bounds(0.0, 10_000.0)  # USD
RISK_AVERSION = Bounds(0.0, 1.0, low_inclusive=False)  # per USD
OPTION_DELTA = Bounds(0.0, 0.5, low_inclusive=False)  # |delta| of a chosen strike
DAYS_TO_EXPIRY = Bounds(0, 400)
STRUCTURE_QUANTITY = Bounds(1, 100)
EXIT_PERCENT = Bounds(0.0, 10_000.0, low_inclusive=False)  # % of the entry premium
MV_COEFFICIENT = Bounds(-10.0, 10.0)  # Hull & White's a, b, c (the paper's are well inside)


class ParameterError(ValueError):
    """Invalid parameters; `field_errors` maps dotted field names to messages."""

    def __init__(self, field_errors: Mapping[str, list[str]]) -> None:
        self.field_errors = {name: list(messages) for name, messages in sorted(field_errors.items())}
        super().__init__(
            "; ".join(f"{name}: {' '.join(messages)}" for name, messages in self.field_errors.items())
        )


# A rule takes a field's value and returns (the normalized value, None) or (None, an error).
Rule = Callable[[Any], tuple[Any, str | None]]


@dataclass(frozen=True, slots=True)
class _NumberRule:
    """A number within `bounds` (whole, or None when `nullable`). A rule is data as well as a
    check, so that the parameters' description (`parameters_describe`) is read off the same
    rules the validation applies."""

    bounds: Bounds
    whole: bool = False
    nullable: bool = False

    def __call__(self, value: Any) -> tuple[Any, str | None]:
        if value is None:
            return (None, None) if self.nullable else (None, "May not be null.")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, "Must be a whole number." if self.whole else "Must be a number."
        if self.whole and not isinstance(value, int):
            return None, "Must be a whole number."
        if not math.isfinite(value):
            return None, "Must be a finite number."
        if not self.bounds.contains(value):
            return None, self.bounds.message
        return (value if self.whole else float(value)), None

    def describe(self) -> dict[str, Any]:
        return {"type": "integer" if self.whole else "number", "min": self.bounds.low, "max": self.bounds.high,
                "min_inclusive": self.bounds.low_inclusive, "nullable": self.nullable}


@dataclass(frozen=True, slots=True)
class _ChoiceRule:
    choices: tuple[str, ...]

    def __call__(self, value: Any) -> tuple[Any, str | None]:
        if isinstance(value, str) and value in self.choices:
            return value, None
        return None, f"Must be one of: {', '.join(self.choices)}."

    def describe(self) -> dict[str, Any]:
        return {"type": "choice", "choices": list(self.choices), "nullable": False}


def _number(bounds: Bounds, *, whole: bool = False, nullable: bool = False) -> Rule:
    return _NumberRule(bounds, whole, nullable)


def _choice(choices: tuple[str, ...]) -> Rule:
    return _ChoiceRule(choices)


def _optional_date(value: Any) -> tuple[Any, str | None]:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value, None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value), None
        except ValueError:
            pass
    return None, "Must be a date (YYYY-MM-DD) or null."


def _underlying(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, str) and value in PRODUCTS:
        return value, None
    return None, f"Must be one of: {', '.join(sorted(PRODUCTS))}."


def _validate(instance: Any, rules: Mapping[str, Rule]) -> dict[str, list[str]]:
    """Apply each field's rule, store the normalized values (1 -> 1.0 for a float field, an ISO
    text -> a date) and return the errors by field name."""
    errors: dict[str, list[str]] = {}
    for name, rule in rules.items():
        normalized, error = rule(getattr(instance, name))
        if error:
            errors[name] = [error]
        else:
            object.__setattr__(instance, name, normalized)
    return errors


_BAND_RULES: dict[str, Rule] = {
    "method": _choice(BAND_METHODS),
    "width": _number(BAND_WIDTH),
    "cost_per_contract": _number(COST_PER_CONTRACT, nullable=True),
    "risk_aversion": _number(RISK_AVERSION),
    "min_width": _number(BAND_WIDTH),
    "max_width": _number(BAND_WIDTH),
}


@dataclass(frozen=True, slots=True)
class Band:
    """How far net delta may drift from the target before the agent hedges (a half-width).

    - `fixed`: `width` contracts either side of the target.
    - `whalley_wilmott`: the asymptotic utility-indifference band of Whalley & Wilmott (1997),
      from the book's gamma, `cost_per_contract` (one-way cost of one hedge future: commission
      plus half the spread, USD; None, the default: the underlying product's own,
      `brokers.products.hedge_cost_per_contract`, 8.50 for ES) and `risk_aversion` (the CARA
      coefficient, per USD), clamped to [`min_width`, `max_width`]. See `agents.policy.band_half_width`.

    risk_aversion's default 1e-4 per USD is a risk tolerance 1/gamma of 10,000 USD, the scale of
    the governor's default 2,000 USD maximum daily loss; larger values narrow the band (hedge
    more often), smaller ones widen it.
    """

    method: BandMethod = "fixed"
    width: float = 1.0
    cost_per_contract: float | None = None  # None: derived from the product
    risk_aversion: float = 1e-4
    min_width: float = 0.5
    max_width: float = 10.0

    def __post_init__(self) -> None:
        errors = _validate(self, _BAND_RULES)
        if not errors and self.min_width > self.max_width:
            errors["min_width"] = ["Must not exceed max_width."]
        if errors:
            raise ParameterError(errors)


_STRUCTURE_RULES: dict[str, Rule] = {
    "kind": _choice(STRUCTURE_KINDS),
    "short_delta": _number(OPTION_DELTA),
    "wing_delta": _number(OPTION_DELTA),
    "dte_min": _number(DAYS_TO_EXPIRY, whole=True),
    "dte_max": _number(DAYS_TO_EXPIRY, whole=True),
    "quantity": _number(STRUCTURE_QUANTITY, whole=True),
}


@dataclass(frozen=True, slots=True)
class StructureRules:
    """The option structure the agent keeps on, and how it picks one.

    `short_delta` is the |delta| of the strangle strikes (short or long) and of an iron condor's
    short strikes; `wing_delta` the |delta| of the condor's long wings, further out of the money;
    straddles are at the money whatever these say. The expiry is the listed one whose days to
    expiry fall in [`dte_min`, `dte_max`]; `quantity` is the number of structure units.
    """

    kind: StructureKind = "none"
    short_delta: float = 0.20
    wing_delta: float = 0.05
    dte_min: int = 20
    dte_max: int = 60
    quantity: int = 1

    def __post_init__(self) -> None:
        errors = _validate(self, _STRUCTURE_RULES)
        if not errors:
            if self.dte_min > self.dte_max:
                errors["dte_min"] = ["Must not exceed dte_max."]
            if self.kind == "iron_condor" and self.wing_delta >= self.short_delta:
                errors["wing_delta"] = [
                    "An iron condor's wings must have a smaller delta than its short strikes."
                ]
        if errors:
            raise ParameterError(errors)


_EXITS_RULES: dict[str, Rule] = {
    "profit_target_pct": _number(EXIT_PERCENT, nullable=True),
    "stop_loss_pct": _number(EXIT_PERCENT, nullable=True),
    "roll_dte": _number(DAYS_TO_EXPIRY, whole=True, nullable=True),
}


@dataclass(frozen=True, slots=True)
class Exits:
    """When an open structure is closed; None switches a rule off.

    Percentages are of the entry premium (the absolute net price per unit paid or received):
    `profit_target_pct=50` closes a short strangle sold for 40 once it can be bought back for 20.
    `roll_dte` closes it, and opens the next one, once its expiry is that many days away or less.
    """

    profit_target_pct: float | None = 50.0
    stop_loss_pct: float | None = 200.0
    roll_dte: int | None = 5

    def __post_init__(self) -> None:
        if errors := _validate(self, _EXITS_RULES):
            raise ParameterError(errors)


_MV_RULES: dict[str, Rule] = {
    "a": _number(MV_COEFFICIENT, nullable=True),
    "b": _number(MV_COEFFICIENT, nullable=True),
    "c": _number(MV_COEFFICIENT, nullable=True),
}


@dataclass(frozen=True, slots=True)
class MinimumVariance:
    """Hull & White's (2017) coefficients for the `minimum_variance` delta model:
    delta = delta_BS + dV/dsigma / (F sqrt(T)) x (a + b delta_C + c delta_C^2).

    Estimate them from the platform's own history: every book sync stores the two-sided quotes of
    the held options and their chain (`risk.option_history`, OPTION_HISTORY_DAYS kept), and
    `manage.py estimate_delta_coefficients --client ID --underlying ES [--apply --actor OWNER]` fits
    them (`risk.delta_models.estimate_minimum_variance` over 30-minute steps) and sets them through
    this parameter update. All three or none: none (the default) leaves the model without
    coefficients, so its legs keep their sticky-strike delta and say so."""

    a: float | None = None
    b: float | None = None
    c: float | None = None

    def __post_init__(self) -> None:
        errors = _validate(self, _MV_RULES)
        if not errors and len({value is None for value in (self.a, self.b, self.c)}) > 1:
            errors["a"] = ["Set a, b and c together, or none of them."]
        if errors:
            raise ParameterError(errors)

    @property
    def coefficients(self) -> MinimumVarianceCoefficients | None:
        if self.a is None or self.b is None or self.c is None:
            return None
        return MinimumVarianceCoefficients(a=self.a, b=self.b, c=self.c, observations=0)


_AGENT_RULES: dict[str, Rule] = {
    "underlying": _underlying,
    "hedge_future_expiry": _optional_date,
    "target_delta": _number(TARGET_DELTA),
    "delta_model": _choice(DELTA_MODELS),
    "cycle_interval_seconds": _number(CYCLE_INTERVAL_SECONDS, whole=True),
    "proposal_ttl_seconds": _number(PROPOSAL_TTL_SECONDS, whole=True),
}
_GROUPS: dict[str, type] = {
    "band": Band, "structure": StructureRules, "exits": Exits, "minimum_variance": MinimumVariance,
}


@dataclass(frozen=True, slots=True)
class AgentParameters:
    """Everything the policy needs besides the risk limits.

    `underlying` is the product whose net delta the agent keeps at `target_delta` by trading the
    future expiring on `hedge_future_expiry` (None: the front listed future). `delta_model` is the
    delta that net delta is counted in for that underlying (`risk.delta_models`): positions,
    status, the policy and the governor all use it; `minimum_variance` holds that model's
    coefficients.
    """

    underlying: str = "ES"
    hedge_future_expiry: date | None = None
    target_delta: float = 0.0
    band: Band = field(default_factory=Band)
    cycle_interval_seconds: int = 60
    proposal_ttl_seconds: int = 300
    structure: StructureRules = field(default_factory=StructureRules)
    exits: Exits = field(default_factory=Exits)
    delta_model: str = DEFAULT_DELTA_MODEL
    minimum_variance: MinimumVariance = field(default_factory=MinimumVariance)

    @property
    def delta_models(self) -> dict[str, DeltaModel]:
        """The delta model of the agent's underlying, as `risk.book` takes it (other underlyings
        get the platform's default)."""
        return {self.underlying: DeltaModel(self.delta_model, self.minimum_variance.coefficients)}

    def __post_init__(self) -> None:
        errors = _validate(self, _AGENT_RULES)
        for name, group in _GROUPS.items():
            if not isinstance(getattr(self, name), group):
                errors[name] = [f"Must be a {group.__name__}."]
        roll_dte = self.exits.roll_dte if isinstance(self.exits, Exits) else None
        dte_min = self.structure.dte_min if isinstance(self.structure, StructureRules) else None
        if roll_dte is not None and dte_min is not None and roll_dte >= dte_min:
            # A new structure would already be due for its roll when opened.
            errors["exits.roll_dte"] = ["Must be below structure.dte_min."]
        if errors:
            raise ParameterError(errors)


def parameters_to_json(parameters: AgentParameters) -> dict[str, Any]:
    """The stored form: plain JSON types, dates as ISO text, every field present."""

    def plain(instance: Any) -> dict[str, Any]:
        return {f.name: getattr(instance, f.name) for f in fields(instance)}

    data = plain(parameters)
    for name in _GROUPS:
        data[name] = plain(data[name])
    expiry = parameters.hedge_future_expiry
    data["hedge_future_expiry"] = expiry.isoformat() if expiry is not None else None
    return data


_DEFAULTS_JSON = parameters_to_json(AgentParameters())
# The public copy: callers may change theirs without moving the parser's defaults.
DEFAULT_PARAMETERS_JSON: dict[str, Any] = parameters_to_json(AgentParameters())


def parameters_from_json(data: Mapping[str, Any]) -> AgentParameters:
    """The stored JSON merged over the defaults; `ParameterError` lists every problem found.

    A group with errors hides the cross-group checks that need it (they run once it is valid).
    """
    errors: dict[str, list[str]] = {}
    for name in sorted(set(data) - set(_DEFAULTS_JSON) - {RISK_LIMITS_KEY}):
        errors[name] = ["Unknown parameter."]

    groups: dict[str, Any] = {}
    for name, group in _GROUPS.items():
        stored = data.get(name, {})
        if not isinstance(stored, Mapping):
            errors[name] = ["Must be an object."]
            continue
        defaults = _DEFAULTS_JSON[name]
        known = {key: value for key, value in stored.items() if key in defaults}
        errors.update({f"{name}.{key}": ["Unknown parameter."] for key in sorted(set(stored) - set(known))})
        try:
            groups[name] = group(**{**defaults, **known})
        except ParameterError as exc:
            errors.update({f"{name}.{key}": messages for key, messages in exc.field_errors.items()})

    scalars = {
        name: data.get(name, default) for name, default in _DEFAULTS_JSON.items() if name not in _GROUPS
    }
    if errors:
        # Still report the top-level fields' own problems alongside the groups'.
        try:
            AgentParameters(**scalars)
        except ParameterError as exc:
            errors.update(exc.field_errors)
        raise ParameterError(errors)
    return AgentParameters(**scalars, **groups)


# What each field is measured in, for the people who set them (the API and the desk show it).
UNITS: dict[str, str] = {
    "target_delta": "contracts", "cycle_interval_seconds": "seconds", "proposal_ttl_seconds": "seconds",
    "band.width": "contracts", "band.cost_per_contract": "USD", "band.risk_aversion": "per USD",
    "band.min_width": "contracts", "band.max_width": "contracts",
    "structure.short_delta": "|delta|", "structure.wing_delta": "|delta|", "structure.dte_min": "days",
    "structure.dte_max": "days", "structure.quantity": "units",
    "exits.profit_target_pct": "% of entry premium", "exits.stop_loss_pct": "% of entry premium",
    "exits.roll_dte": "days",
}


# What an empty (null) value means, where it is not "off".
EMPTY_MEANS: dict[str, str] = {
    "band.cost_per_contract": "uses the product's own (half its typical spread plus commission; ES 8.50)",
    **{f"minimum_variance.{name}": "not estimated: the minimum_variance model keeps the sticky-strike delta"
       for name in "abc"},
}


def parameters_describe(parameters: AgentParameters) -> list[dict[str, Any]]:
    """Every field by its dotted path: the value in force, the default, the bounds or choices the
    validation applies (read off the same rules), and the unit."""
    current, defaults = parameters_to_json(parameters), _DEFAULTS_JSON
    described = []
    groups = [("", _AGENT_RULES, current, defaults)] + [
        (f"{name}.", rules, current[name], defaults[name])
        for name, rules in (("band", _BAND_RULES), ("structure", _STRUCTURE_RULES), ("exits", _EXITS_RULES),
                            ("minimum_variance", _MV_RULES))
    ]
    for prefix, rules, values, default_values in groups:
        for name, rule in rules.items():
            path = f"{prefix}{name}"
            if isinstance(rule, (_NumberRule, _ChoiceRule)):
                spec = rule.describe()
            elif rule is _underlying:
                spec = {"type": "choice", "choices": sorted(PRODUCTS), "nullable": False}
            else:  # _optional_date
                spec = {"type": "date", "nullable": True}
            described.append({"path": path, "value": values[name], "default": default_values[name],
                              "unit": UNITS.get(path, ""), **spec})
            if path in EMPTY_MEANS:
                described[-1]["empty_means"] = EMPTY_MEANS[path]
    return described
