"""The agent's parameters: defaults, the stored JSON form, validation, and the API serializer."""
import json
import math
from dataclasses import replace
from datetime import date

import pytest

from agents.parameters import (
    DEFAULT_PARAMETERS_JSON,
    AgentParameters,
    Band,
    Exits,
    ParameterError,
    StructureRules,
    parameters_from_json,
    parameters_to_json,
)
from agents.serializers import AgentParametersSerializer
from brokers.products import PRODUCTS
from tradingplatform.serialization import json_ready


def _errors(data) -> dict[str, list[str]]:
    with pytest.raises(ParameterError) as caught:
        parameters_from_json(data)
    return caught.value.field_errors


def _merged(stored: dict, changes: dict) -> dict:
    """The merge the API applies: groups key by key, everything else replaced."""
    result = {**stored, **changes}
    for name in ("band", "structure", "exits"):
        if isinstance(stored.get(name), dict) and isinstance(changes.get(name), dict):
            result[name] = {**stored[name], **changes[name]}
    return result


def test_empty_json_gives_the_defaults_and_risk_limits_are_left_to_the_risk_app():
    assert parameters_from_json({}) == AgentParameters()
    assert parameters_from_json({"risk_limits": {"max_net_delta": 25}}) == AgentParameters()
    assert parameters_from_json(DEFAULT_PARAMETERS_JSON) == AgentParameters()
    defaults = AgentParameters()
    assert (defaults.underlying, defaults.hedge_future_expiry, defaults.target_delta) == ("ES", None, 0.0)
    assert defaults.band == Band("fixed", 1.0, None, 1e-4, 0.5, 10.0)  # cost: the product's
    assert defaults.structure == StructureRules("none", 0.20, 0.05, 20, 60, 1)
    assert defaults.exits == Exits(50.0, 200.0, 5)


def test_stored_groups_merge_over_the_defaults_field_by_field():
    parameters = parameters_from_json(
        {"band": {"width": 2}, "structure": {"kind": "short_strangle", "dte_max": 45},
         "hedge_future_expiry": "2027-03-19", "target_delta": -3}
    )
    assert parameters.band == Band(width=2.0)
    assert isinstance(parameters.band.width, float) and isinstance(parameters.target_delta, float)
    assert parameters.structure == StructureRules(kind="short_strangle", dte_max=45)
    assert parameters.hedge_future_expiry == date(2027, 3, 19)
    assert parameters.exits == Exits()


def test_the_json_form_round_trips_through_text():
    parameters = AgentParameters(
        underlying="CL", hedge_future_expiry=date(2027, 1, 20), target_delta=1.5,
        band=Band(method="whalley_wilmott", cost_per_contract=12.0), cycle_interval_seconds=30,
        structure=StructureRules(kind="iron_condor", short_delta=0.25, wing_delta=0.10, quantity=3),
        exits=Exits(profit_target_pct=None, stop_loss_pct=150.0, roll_dte=None),
    )
    stored = json.loads(json.dumps(parameters_to_json(parameters), allow_nan=False))
    assert stored["hedge_future_expiry"] == "2027-01-20"
    assert parameters_from_json(stored) == parameters


def test_the_public_defaults_are_a_copy_the_parser_does_not_read():
    DEFAULT_PARAMETERS_JSON["band"]["width"] = 99.0
    try:
        assert parameters_from_json({}).band.width == 1.0
    finally:
        DEFAULT_PARAMETERS_JSON["band"]["width"] = 1.0


def test_unknown_keys_are_errors_at_every_level_and_all_are_reported_at_once():
    errors = _errors({"leverage": 10, "band": {"widht": 2}, "exits": {"trail": 1}, "underlying": "ZZ"})
    assert errors == {
        "band.widht": ["Unknown parameter."],
        "exits.trail": ["Unknown parameter."],
        "leverage": ["Unknown parameter."],
        "underlying": [f"Must be one of: {', '.join(sorted(PRODUCTS))}."],
    }


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"structure": {"dte_min": 70, "dte_max": 60}}, "structure.dte_min"),
        ({"band": {"min_width": 5, "max_width": 2}}, "band.min_width"),
        ({"structure": {"kind": "iron_condor", "short_delta": 0.1, "wing_delta": 0.1}}, "structure.wing_delta"),
        ({"structure": {"dte_min": 5}}, "exits.roll_dte"),  # the default roll_dte is 5
        ({"underlying": "es"}, "underlying"),
        ({"cycle_interval_seconds": 4}, "cycle_interval_seconds"),
        ({"cycle_interval_seconds": 60.0}, "cycle_interval_seconds"),
        ({"proposal_ttl_seconds": True}, "proposal_ttl_seconds"),
        ({"target_delta": "1"}, "target_delta"),
        ({"target_delta": math.nan}, "target_delta"),
        ({"target_delta": 1000.5}, "target_delta"),
        ({"hedge_future_expiry": "next March"}, "hedge_future_expiry"),
        ({"hedge_future_expiry": "2027-03-19T00:00:00"}, "hedge_future_expiry"),
        ({"band": {"method": "adaptive"}}, "band.method"),
        ({"band": {"risk_aversion": 0}}, "band.risk_aversion"),
        ({"band": {"width": None}}, "band.width"),
        ({"band": []}, "band"),
        ({"structure": {"kind": "butterfly"}}, "structure.kind"),
        ({"structure": {"short_delta": 0.0}}, "structure.short_delta"),
        ({"structure": {"short_delta": 0.51}}, "structure.short_delta"),
        ({"structure": {"quantity": 0}}, "structure.quantity"),
        ({"structure": {"dte_max": 401}}, "structure.dte_max"),
        ({"exits": {"profit_target_pct": 0}}, "exits.profit_target_pct"),
        ({"exits": {"roll_dte": -1}}, "exits.roll_dte"),
    ],
)
def test_invalid_values_name_the_dotted_field(data, field):
    errors = _errors(data)
    assert list(errors) == [field]
    assert errors[field][0]


def test_wings_at_the_short_delta_are_fine_outside_an_iron_condor():
    structure = {"kind": "short_strangle", "short_delta": 0.1, "wing_delta": 0.2}
    assert parameters_from_json({"structure": structure}).structure.wing_delta == 0.2


def test_building_in_code_validates_like_parsing_and_is_a_value_error():
    with pytest.raises(ParameterError) as caught:
        Band(width=-1.0)
    assert caught.value.field_errors == {"width": ["Must be between 0 and 1000."]}
    assert isinstance(caught.value, ValueError)
    with pytest.raises(ParameterError, match="exits.roll_dte"):
        AgentParameters(structure=StructureRules(dte_min=3), exits=Exits(roll_dte=3))
    without_roll = AgentParameters(structure=StructureRules(dte_min=3), exits=Exits(roll_dte=None))
    assert without_roll.exits.roll_dte is None


# ---------------------------------------------------------------------------------------------
# The API serializer


def _validated(body: dict) -> dict:
    serializer = AgentParametersSerializer(data=body)
    assert serializer.is_valid(), serializer.errors
    return serializer.validated_data


def _serializer_errors(body: dict) -> dict:
    serializer = AgentParametersSerializer(data=body)
    assert not serializer.is_valid()
    return serializer.errors


def test_a_valid_partial_update_stores_as_json_the_parser_accepts():
    body = {
        "hedge_future_expiry": "2027-03-19",
        "target_delta": 2,
        "band": {"method": "whalley_wilmott", "risk_aversion": 5e-5},
        "structure": {"kind": "iron_condor", "short_delta": 0.25, "wing_delta": 0.08},
        "exits": {"roll_dte": None},
        "risk_limits": {"max_daily_loss": "750.50"},
    }
    changes = json_ready(_validated(body))
    assert set(changes) == set(body)
    assert changes["band"] == {"method": "whalley_wilmott", "risk_aversion": 5e-5}  # partial stays partial
    stored = json.loads(json.dumps(_merged({}, changes)))
    parameters = parameters_from_json(stored)
    assert parameters.hedge_future_expiry == date(2027, 3, 19)
    assert parameters.band == Band(method="whalley_wilmott", risk_aversion=5e-5)
    assert parameters.structure == StructureRules(kind="iron_condor", short_delta=0.25, wing_delta=0.08)
    assert parameters.exits == Exits(roll_dte=None)
    assert parameters.target_delta == 2.0
    # A later partial update of one group keeps the rest of it.
    later = json_ready(_validated({"structure": {"quantity": 2}, "hedge_future_expiry": None}))
    again = parameters_from_json(_merged(stored, later))
    assert again.structure == replace(parameters.structure, quantity=2)
    assert again.hedge_future_expiry is None


def test_every_default_value_passes_the_serializer():
    assert parameters_from_json(json_ready(_validated(DEFAULT_PARAMETERS_JSON))) == AgentParameters()


@pytest.mark.parametrize(
    ("body", "error_path"),
    [
        ({"leverage": 10}, ("leverage",)),
        ({"band": {"widht": 1}}, ("band", "widht")),
        ({"structure": {"strikes": 3}}, ("structure", "strikes")),
        ({"exits": {"trailing": 1}}, ("exits", "trailing")),
        ({"risk_limits": {"max_delta": 5}}, ("risk_limits", "max_delta")),
        ({"underlying": "ZZ"}, ("underlying",)),
        ({"hedge_future_expiry": "soon"}, ("hedge_future_expiry",)),
        ({"target_delta": 1000.01}, ("target_delta",)),
        ({"target_delta": "nan"}, ("target_delta",)),
        ({"target_delta": None}, ("target_delta",)),
        ({"cycle_interval_seconds": 4}, ("cycle_interval_seconds",)),
        ({"cycle_interval_seconds": 86_401}, ("cycle_interval_seconds",)),
        ({"cycle_interval_seconds": 7.5}, ("cycle_interval_seconds",)),
        ({"proposal_ttl_seconds": 9}, ("proposal_ttl_seconds",)),
        ({"band": {"method": "adaptive"}}, ("band", "method")),
        ({"band": {"width": -0.1}}, ("band", "width")),
        ({"band": {"risk_aversion": 0}}, ("band", "risk_aversion")),
        ({"band": 3}, ("band", "non_field_errors")),
        ({"structure": {"kind": "butterfly"}}, ("structure", "kind")),
        ({"structure": {"short_delta": 0}}, ("structure", "short_delta")),
        ({"structure": {"wing_delta": 0.6}}, ("structure", "wing_delta")),
        ({"structure": {"dte_min": -1}}, ("structure", "dte_min")),
        ({"structure": {"dte_max": 401}}, ("structure", "dte_max")),
        ({"structure": {"quantity": 0}}, ("structure", "quantity")),
        ({"structure": {"quantity": 101}}, ("structure", "quantity")),
        ({"exits": {"stop_loss_pct": -5}}, ("exits", "stop_loss_pct")),
        ({"exits": {"roll_dte": "five"}}, ("exits", "roll_dte")),
        ({}, ("non_field_errors",)),
    ],
)
def test_bad_keys_types_and_ranges_are_field_errors(body, error_path):
    errors = _serializer_errors(body)
    for key in error_path:
        errors = errors[key]
    assert errors


def test_serializer_and_parser_share_bounds_messages():
    errors = _serializer_errors({"structure": {"short_delta": 0.6}})
    assert errors["structure"]["short_delta"] == ["Must be above 0 and at most 0.5."]
    parsed = _errors({"structure": {"short_delta": 0.6}})
    assert parsed == {"structure.short_delta": ["Must be above 0 and at most 0.5."]}


def test_an_empty_update_has_nothing_to_change():
    assert _serializer_errors({})["non_field_errors"] == ["Nothing to change."]


@pytest.mark.parametrize("symbol", sorted(PRODUCTS))
def test_every_product_of_the_table_is_an_underlying(symbol):
    assert parameters_from_json({"underlying": symbol}).underlying == symbol
    assert _validated({"underlying": symbol})["underlying"] == symbol


def test_the_band_cost_defaults_to_the_products_and_may_be_set():
    assert AgentParameters().band.cost_per_contract is None
    assert parameters_from_json({}).band.cost_per_contract is None
    assert parameters_from_json({"band": {"cost_per_contract": 12.5}}).band.cost_per_contract == 12.5
    # Stored before the default moved: an explicit number stays that number.
    assert parameters_from_json({"band": {"cost_per_contract": 5.0}}).band.cost_per_contract == 5.0
    assert parameters_from_json({"band": {"cost_per_contract": None}}).band.cost_per_contract is None


# ---------------------------------------------------------------------------------------------
# The delta model (risk.delta_models)


def test_the_delta_model_defaults_to_sticky_moneyness_and_is_validated():
    parameters = parameters_from_json({})
    assert parameters.delta_model == "sticky_moneyness"
    assert parameters.minimum_variance.coefficients is None
    (model,) = parameters.delta_models.values()
    assert parameters.delta_models.keys() == {"ES"} and model.name == "sticky_moneyness"
    assert _errors({"delta_model": "vanna_volga"}) == {
        "delta_model": ["Must be one of: sticky_strike, sticky_moneyness, minimum_variance."]}


def test_minimum_variance_coefficients_are_set_together():
    assert _errors({"minimum_variance": {"a": -0.25}}) == {
        "minimum_variance.a": ["Set a, b and c together, or none of them."]}
    assert "minimum_variance.b" in _errors({"minimum_variance": {"a": 0.0, "b": 11.0, "c": 0.0}})
    parameters = parameters_from_json({"underlying": "NQ", "delta_model": "minimum_variance",
                                       "minimum_variance": {"a": -0.25, "b": 0.5, "c": -0.5}})
    model = parameters.delta_models["NQ"]
    assert model.name == "minimum_variance"
    assert (model.coefficients.a, model.coefficients.b, model.coefficients.c) == (-0.25, 0.5, -0.5)


def test_the_delta_model_is_described_with_its_choices():
    from agents.parameters import parameters_describe

    described = {row["path"]: row for row in parameters_describe(parameters_from_json({}))}
    assert described["delta_model"]["choices"] == ["sticky_strike", "sticky_moneyness", "minimum_variance"]
    assert described["delta_model"]["value"] == described["delta_model"]["default"] == "sticky_moneyness"
    assert described["minimum_variance.a"]["nullable"] and "sticky-strike" in described["minimum_variance.a"][
        "empty_means"]
