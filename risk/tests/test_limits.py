"""The risk limits' one set of bounds: the governor's RiskLimits and the API's fields follow it,
and the operator's ceilings cap what an owner may set."""
from dataclasses import fields
from decimal import Decimal

import pytest

from risk.limits import LIMIT_BOUNDS, RiskLimits, ceiling_errors, risk_limits_from_json


def test_every_limit_has_exactly_one_bound_and_its_default_is_the_dataclass_default() -> None:
    assert [field.name for field in fields(RiskLimits)] == [bound.name for bound in LIMIT_BOUNDS]
    defaults = RiskLimits()
    for bound in LIMIT_BOUNDS:
        assert getattr(defaults, bound.name) == bound.default
        assert bound.error(bound.default) is None
        assert bound.error(bound.minimum) is None


def test_stored_json_is_read_over_the_defaults_with_money_as_decimal() -> None:
    limits = risk_limits_from_json({"max_net_delta": 25, "max_daily_loss": "750.50"})
    assert limits.max_net_delta == 25 and limits.max_daily_loss == Decimal("750.50")
    assert limits.max_order_contracts == RiskLimits().max_order_contracts


@pytest.mark.parametrize("stored", [{"max_delta": 5}, {"max_order_contracts": 0}, {"max_daily_loss": "lots"}])
def test_unknown_or_invalid_stored_limits_are_refused(stored) -> None:
    with pytest.raises(ValueError):
        risk_limits_from_json(stored)


def test_a_value_above_the_ceiling_is_refused_on_write_and_capped_on_read() -> None:
    ceilings = {"max_net_delta": 20.0, "max_daily_loss": Decimal("5000")}
    stored = {"max_net_delta": 25, "max_daily_loss": "4000"}
    assert set(ceiling_errors(stored, ceilings)) == {"max_net_delta"}
    limits = risk_limits_from_json(stored, ceilings=ceilings)
    assert limits.max_net_delta == 20.0 and limits.max_daily_loss == Decimal("4000")
    assert risk_limits_from_json({}, ceilings={"max_net_delta": 5}).max_net_delta == 5.0
