"""A client's risk limits: their names, types, lower bounds, defaults, units and operator ceilings,
written once here and used by the governor (`RiskLimits` validates itself against them) and by the
API (risk.serializers builds its fields from them), so both accept exactly the same values.

Pure: no Django. The operator's ceilings are settings (`RISK_CEILING_MAX_NET_DELTA`, ...; unset
means no ceiling), read by risk.selectors and passed in here.

A ceiling caps how loose an owner may set a limit: a value above it is refused when it is written
(`ceiling_errors`) and, should a ceiling be lowered after a value was stored, read as the ceiling
(`risk_limits_from_json`), so the operator's cap holds for every client at once. Ceilings exist
only where a larger value is looser; a larger `duplicate_window_seconds` is stricter, so it has none.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

Number = int | float | Decimal
# Money limits are USD with cents; the API's decimal fields take this many digits.
MONEY_MAX_DIGITS = 14
MONEY_DECIMAL_PLACES = 2


@dataclass(frozen=True, slots=True)
class LimitBound:
    """One limit: `kind` is int (whole contracts or counts), float or Decimal (USD)."""

    name: str
    kind: type
    minimum: Number
    default: Number
    unit: str
    help: str
    ceiling_setting: str | None = None  # the settings name of the operator's ceiling, if any

    def error(self, value: Any) -> str | None:
        """Why `value` cannot be this limit (the ceiling aside), or None."""
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
                return f"{self.name} must be a whole number >= {self.minimum}, got {value!r}"
        elif self.kind is float:
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= self.minimum):
                return f"{self.name} must be a finite number >= {self.minimum:g}, got {value!r}"
        elif not isinstance(value, Decimal) or not value.is_finite() or value < self.minimum:
            return f"{self.name} must be a Decimal amount >= {self.minimum}, got {value!r}"
        return None

    def coerce(self, value: Number | str) -> Number:
        """A ceiling given as text or another number type (settings), as this limit's type."""
        return Decimal(str(value)) if self.kind is Decimal else self.kind(value)


LIMIT_BOUNDS: tuple[LimitBound, ...] = (
    LimitBound("max_net_delta", float, 0.0, 10.0, "contracts",
               "|net delta| after the order, underlying futures contracts.", "RISK_CEILING_MAX_NET_DELTA"),
    LimitBound("max_order_contracts", int, 1, 20, "contracts",
               "Sum of |quantity| over the order's legs.", "RISK_CEILING_MAX_ORDER_CONTRACTS"),
    LimitBound("max_leg_contracts", int, 1, 10, "contracts",
               "|quantity| of any one leg.", "RISK_CEILING_MAX_LEG_CONTRACTS"),
    LimitBound("max_daily_loss", Decimal, Decimal("0"), Decimal("2000.00"), "USD",
               "USD.", "RISK_CEILING_MAX_DAILY_LOSS"),
    LimitBound("max_open_legs", int, 1, 12, "legs",
               "Distinct non-zero positions after the order.", "RISK_CEILING_MAX_OPEN_LEGS"),
    LimitBound("max_spread_pct", float, 0.0, 0.10, "fraction",
               "A fraction: 0.10 is 10 %.", "RISK_CEILING_MAX_SPREAD_PCT"),
    LimitBound("max_quote_age_seconds", float, 0.0, 10.0, "seconds",
               "Older quotes are stale.", "RISK_CEILING_MAX_QUOTE_AGE_SECONDS"),
    LimitBound("breaker_loss_count", int, 1, 3, "losses",
               "Consecutive losing closes that trip the circuit breaker.", "RISK_CEILING_BREAKER_LOSS_COUNT"),
    LimitBound("breaker_loss_threshold", Decimal, Decimal("0"), Decimal("500.00"), "USD",
               "USD; a loss must exceed it to count.", "RISK_CEILING_BREAKER_LOSS_THRESHOLD"),
    LimitBound("max_orders_per_minute", int, 1, 10, "orders",
               "Accepted orders in any 60 seconds.", "RISK_CEILING_MAX_ORDERS_PER_MINUTE"),
    LimitBound("duplicate_window_seconds", float, 0.0, 30.0, "seconds",
               "The same order again within this window is refused."),
)
LIMITS_BY_NAME: dict[str, LimitBound] = {bound.name: bound for bound in LIMIT_BOUNDS}


def _default(name: str) -> Any:
    return LIMITS_BY_NAME[name].default


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Per-client limits. The defaults (LIMIT_BOUNDS) are deliberately tight; owners widen them
    per client, up to the operator's ceilings."""

    max_net_delta: float = _default("max_net_delta")
    max_order_contracts: int = _default("max_order_contracts")
    max_leg_contracts: int = _default("max_leg_contracts")
    max_daily_loss: Decimal = _default("max_daily_loss")
    max_open_legs: int = _default("max_open_legs")
    max_spread_pct: float = _default("max_spread_pct")
    max_quote_age_seconds: float = _default("max_quote_age_seconds")
    breaker_loss_count: int = _default("breaker_loss_count")
    breaker_loss_threshold: Decimal = _default("breaker_loss_threshold")
    max_orders_per_minute: int = _default("max_orders_per_minute")
    duplicate_window_seconds: float = _default("duplicate_window_seconds")

    def __post_init__(self) -> None:
        for bound in LIMIT_BOUNDS:
            if (error := bound.error(getattr(self, bound.name))) is not None:
                raise ValueError(error)


def _stored_value(bound: LimitBound, value: Any) -> Any:
    """Money is stored as text (JSON has no decimals); anything else is kept for RiskLimits to judge."""
    if bound.kind is Decimal and not isinstance(value, bool):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return value
    return value


def ceiling_errors(stored: Mapping[str, Any], ceilings: Mapping[str, Number]) -> dict[str, str]:
    """Limits in `stored` above the operator's ceiling, by name, with the message the API shows."""
    errors = {}
    for name, value in stored.items():
        bound, ceiling = LIMITS_BY_NAME.get(name), ceilings.get(name)
        if bound is None or ceiling is None or bound.error(_stored_value(bound, value)) is not None:
            continue
        if _stored_value(bound, value) > ceiling:
            errors[name] = f"Must be at most {ceiling} (the operator's ceiling)."
    return errors


def risk_limits_from_json(stored: Mapping[str, Any], *, ceilings: Mapping[str, Number] | None = None) -> RiskLimits:
    """The stored limits over the defaults, each capped at its ceiling; ValueError when a name is
    unknown or a value invalid."""
    unknown = sorted(set(stored) - set(LIMITS_BY_NAME))
    if unknown:
        raise ValueError(f"unknown risk limits: {', '.join(unknown)}")
    values = {name: _stored_value(LIMITS_BY_NAME[name], value) for name, value in stored.items()}
    limits = RiskLimits(**values)  # validates every value before any is compared with a ceiling
    capped = {}
    for name, ceiling in (ceilings or {}).items():
        if ceiling is not None and getattr(limits, name) > ceiling:
            capped[name] = LIMITS_BY_NAME[name].coerce(ceiling)
    return RiskLimits(**{**values, **capped}) if capped else limits
