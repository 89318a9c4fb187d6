"""The agent's policy on real Black-76 books and chains: hedging, structures, exits, determinism."""
import json
import math
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.parameters import AgentParameters, Band, StructureRules
from agents.policy import (
    POLICY_VERSION,
    OpenStructure,
    PolicyInputs,
    QuotedInstrument,
    band_cost_per_contract,
    band_half_width,
    decide,
)
from brokers.domain import Instrument, Position, Quote
from brokers.products import PRODUCTS
from risk.book import instruments_risk, value_book, years_to_expiry
from risk.governor import RiskLimits
from risk.greeks import black76

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
RATE = 0.04
VOL = 0.18
FORWARD = 6000.0
TICK = 0.05
FUT = Instrument("ES", "FUT", date(2026, 12, 18), "CME", 50.0)
FUT_QUOTE = Quote(FUT, bid=5999.75, ask=6000.25, last=6000.0, bid_size=5, ask_size=5, time=NOW)
# 3, 24, 52 and 115 days to expiry
NOV, DEC, JAN, MAR = date(2026, 11, 27), date(2026, 12, 18), date(2027, 1, 15), date(2027, 3, 19)


def _option(expiry: date, strike: float, right: str) -> Instrument:
    return Instrument("ES", "FOP", expiry, "CME", 50.0, strike=float(strike), right=right, trading_class="ES",
                      exercise_style="american", underlying_expiry=MAR)


def _option_quote(option: Instrument) -> Quote:
    """Black-76 fair value at a flat 18 % vol, a 0.25-point half-spread either side on the tick grid."""
    fair = float(black76(FORWARD, option.strike, years_to_expiry(option, NOW), RATE, VOL,
                         option.right == "C").price)
    bid = round(math.floor((fair - 0.25) / TICK + 1e-9) * TICK, 2)
    ask = round(math.ceil((fair + 0.25) / TICK - 1e-9) * TICK, 2)
    return Quote(option, bid=bid if bid > 0 else None, ask=ask, last=None, bid_size=10, ask_size=10, time=NOW,
                 underlying_price=FORWARD)


OPTIONS = [_option(expiry, strike, right) for expiry in (NOV, DEC, JAN, MAR)
           for strike in range(5000, 7001, 50) for right in "CP"]
QUOTES = {quote.instrument.key: quote for quote in [FUT_QUOTE, *map(_option_quote, OPTIONS)]}


def _chain(quotes: dict[str, Quote], options=OPTIONS) -> tuple[QuotedInstrument, ...]:
    risks = instruments_risk(options, quotes, now=NOW, rate=RATE)
    return tuple(QuotedInstrument(risk, quotes[risk.instrument.key].bid, quotes[risk.instrument.key].ask)
                 for risk in risks)


CHAIN = _chain(QUOTES)
HEDGE = QuotedInstrument(instruments_risk([FUT], QUOTES, now=NOW, rate=RATE)[0], bid=5999.75, ask=6000.25)


def _inputs(
    positions=(),
    *,
    parameters: AgentParameters | None = None,
    limits: RiskLimits | None = None,
    hedge: QuotedInstrument | None = HEDGE,
    chain=CHAIN,
    structure: OpenStructure | None = None,
    quotes=QUOTES,
) -> PolicyInputs:
    parameters = parameters or AgentParameters()
    return PolicyInputs(
        now=NOW, parameters=parameters, limits=limits or RiskLimits(),
        # Valued in the parameters' delta model, as the platform's book sync does.
        book=value_book(list(positions), quotes, now=NOW, rate=RATE, delta_models=parameters.delta_models),
        hedge=hedge, chain=chain,
        structure=structure, rate=RATE,
    )


def _futures(quantity: int) -> Position:
    return Position(FUT, quantity=quantity, average_price=6000.0)


def _structure_parameters(kind: str, **rules) -> AgentParameters:
    return AgentParameters(structure=StructureRules(kind=kind, **rules))


def _legs(trade) -> list[tuple[str, str, int]]:
    return [(leg.side, leg.instrument.key, leg.quantity) for leg in trade.legs]


def _mid(key: str) -> float:
    return QUOTES[key].mid


# ---------------------------------------------------------------------------------------------
# The delta hedge


def test_within_the_band_nothing_is_traded_and_the_reason_gives_the_numbers():
    decision = decide(_inputs([_futures(2)], parameters=AgentParameters(target_delta=1.5)))
    assert decision.trades == ()
    assert decision.reason == "net ES delta +2.00 within 1.50 ± 1.00"
    # /4: net delta is counted in the chosen delta model, which the metrics name.
    assert decision.policy_version == POLICY_VERSION == "delta-neutral/4"
    assert decision.metrics == {
        "underlying": "ES", "delta_model": "sticky_moneyness",
        "net_delta": 2.0, "net_gamma": 0.0, "target_delta": 1.5, "band_method": "fixed",
        "band_half_width": 1.0, "hedge_instrument": "ES FUT 20261218", "underlying_price": 6000.0,
    }


def test_outside_the_band_the_hedge_sells_back_to_the_target_at_the_bid():
    (trade,) = decide(_inputs([_futures(5)])).trades
    assert trade.action == "hedge"
    assert _legs(trade) == [("SELL", "ES FUT 20261218", 5)]
    assert trade.limit_price == 5999.75
    assert trade.summary == ("Net ES delta +5.00 is outside 0.00 ± 1.00: sell 5 ES FUT 20261218 at 5999.75 "
                             "to bring it to +0.00.")
    assert trade.rationale["hedge_quantity"] == -5 and "capped_by" not in trade.rationale


def _skewed_quote(option: Instrument) -> Quote:
    """The market's smile: 18 % at the money, -0.6 skew and +1.0 curvature in ln(K/F)."""
    m = math.log(option.strike / FORWARD)
    fair = float(black76(FORWARD, option.strike, years_to_expiry(option, NOW), RATE, VOL - 0.6 * m + m * m,
                         option.right == "C").price)
    return Quote(option, bid=round(fair - 0.05, 2), ask=round(fair + 0.05, 2), last=None, bid_size=10,
                 ask_size=10, time=NOW, underlying_price=FORWARD)


@pytest.mark.parametrize(("model", "source"), [("sticky_strike", "model"), ("sticky_moneyness", "model+smile")])
def test_the_hedge_is_counted_in_the_chosen_delta_model(model, source):
    skewed = {**QUOTES, **{o.key: _skewed_quote(o) for o in OPTIONS if o.expiry == JAN}}
    short_calls = Position(_option(JAN, 6300, "C"), quantity=-50, average_price=40.0)
    short_puts = Position(_option(JAN, 5700, "P"), quantity=-50, average_price=60.0)
    inputs = _inputs([short_calls, short_puts], parameters=AgentParameters(delta_model=model), quotes=skewed)
    assert {leg.risk.greeks_source for leg in inputs.book.legs} == {source}
    decision = decide(inputs)
    assert decision.metrics["delta_model"] == model
    (trade,) = decision.trades
    assert trade.rationale["delta_model"] == model
    assert trade.rationale["net_delta"] == pytest.approx(inputs.book.net_delta)


def test_sticky_moneyness_and_sticky_strike_disagree_on_a_skewed_strangle():
    skewed = {**QUOTES, **{o.key: _skewed_quote(o) for o in OPTIONS if o.expiry == JAN}}
    legs = [Position(_option(JAN, 6300, "C"), quantity=-50, average_price=40.0),
            Position(_option(JAN, 5700, "P"), quantity=-50, average_price=60.0)]
    deltas = {model: _inputs(legs, parameters=AgentParameters(delta_model=model), quotes=skewed).book.net_delta
              for model in ("sticky_strike", "sticky_moneyness")}
    # A negative skew raises each strike's vol when the future rises: the smile-adjusted delta
    # of a short strangle is shorter by whole contracts.
    assert deltas["sticky_moneyness"] < deltas["sticky_strike"] - 1.0


def test_an_option_book_is_hedged_to_the_nearest_whole_contract_at_the_ask():
    calls = _option(JAN, 6000, "C")
    inputs = _inputs([Position(calls, quantity=-10, average_price=170.0)],
                     parameters=AgentParameters(target_delta=2.0))
    net_delta = inputs.book.net_delta
    assert net_delta == pytest.approx(-10 * inputs.book.legs[0].risk.delta)
    decision = decide(inputs)
    (trade,) = decision.trades
    expected = round(2.0 - net_delta)
    assert _legs(trade) == [("BUY", "ES FUT 20261218", expected)]
    assert trade.limit_price == 6000.25
    assert trade.rationale["expected_net_delta"] == pytest.approx(net_delta + expected)
    assert abs(net_delta + expected - 2.0) <= 0.5
    assert decision.reason.startswith(f"net ES delta {net_delta:+.2f} outside 2.00 ± 1.00: hedge +{expected}")


@pytest.mark.parametrize(
    ("max_order", "max_leg", "size", "capped_by"),
    [
        (20, 10, 10, ["max_leg_contracts"]),
        (8, 10, 8, ["max_order_contracts"]),
        (5, 5, 5, ["max_leg_contracts", "max_order_contracts"]),
        (40, 40, 30, None),
    ],
)
def test_the_hedge_is_capped_by_the_order_and_leg_limits_and_says_so(max_order, max_leg, size, capped_by):
    limits = RiskLimits(max_order_contracts=max_order, max_leg_contracts=max_leg)
    (trade,) = decide(_inputs([_futures(30)], limits=limits)).trades
    assert _legs(trade) == [("SELL", "ES FUT 20261218", size)]
    assert trade.rationale.get("capped_by") == capped_by
    assert trade.rationale["wanted_quantity"] == -30
    assert ("capped from 30" in trade.summary) == bool(capped_by)


def test_less_than_half_a_contract_away_is_no_trade_even_with_a_zero_band():
    calls = _option(JAN, 6350, "C")  # delta about +0.21
    parameters = AgentParameters(band=Band(width=0.0))
    decision = decide(_inputs([Position(calls, quantity=2, average_price=47.0)], parameters=parameters))
    assert decision.trades == ()
    assert "by less than half a contract" in decision.reason


def test_another_underlying_leaves_the_agents_delta_at_zero():
    crude = Instrument("CL", "FUT", date(2027, 1, 20), "NYMEX", 1000.0)
    crude_quote = Quote(crude, bid=70.49, ask=70.51, last=None, bid_size=1, ask_size=1, time=NOW)
    quotes = {**QUOTES, crude.key: crude_quote}
    decision = decide(_inputs([Position(crude, quantity=50, average_price=70.0)], quotes=quotes))
    assert decision.trades == ()
    assert decision.metrics["net_delta"] == 0.0


def test_an_unknown_delta_fails_closed_with_no_trade_at_all():
    unquoted = _option(JAN, 6000, "C")
    quotes = {key: quote for key, quote in QUOTES.items() if key != unquoted.key}
    inputs = _inputs([Position(unquoted, quantity=-50, average_price=170.0)], quotes=quotes,
                     parameters=_structure_parameters("short_strangle"))
    decision = decide(inputs)
    assert decision.trades == ()
    assert decision.reason == "net ES delta unknown (a leg has no greeks): no action"
    assert decision.metrics["net_delta"] is None
    json.dumps(decision.metrics, allow_nan=False)


@pytest.mark.parametrize(
    "hedge",
    [None, replace(HEDGE, bid=None), replace(HEDGE, ask=None)],
    ids=["no quote", "no bid", "no ask"],
)
def test_no_two_sided_hedge_quote_fails_closed(hedge):
    decision = decide(_inputs([_futures(8)], hedge=hedge, parameters=_structure_parameters("short_strangle")))
    assert decision.trades == ()
    assert decision.reason == "no two-sided quote for the ES hedge future: no action"


def test_a_hedge_instrument_of_another_product_fails_closed():
    crude = Instrument("CL", "FUT", date(2027, 1, 20), "NYMEX", 1000.0)
    wrong = replace(HEDGE, risk=replace(HEDGE.risk, instrument=crude))
    decision = decide(_inputs([_futures(8)], hedge=wrong))
    assert decision.trades == ()
    assert "is not a ES future" in decision.reason


# ---------------------------------------------------------------------------------------------
# The Whalley-Wilmott band


WW = Band(method="whalley_wilmott", cost_per_contract=5.0, risk_aversion=1e-4, min_width=0.5, max_width=10.0)


def test_whalley_wilmott_matches_a_hand_computation():
    # (3 x 5 x 0.2^2 / (2 x 1e-4 x 50^2))^(1/3) = (0.6 / 0.5)^(1/3) = 1.2^(1/3)
    width = band_half_width(WW, net_gamma=-0.2, future_multiplier=50.0)
    assert width == pytest.approx(1.0626585691826111, rel=1e-12)


@pytest.mark.parametrize("price", [100.0, 6000.0])
def test_whalley_wilmott_in_share_units_converts_to_the_same_contracts(price):
    """The paper's formula in shares (lambda proportional cost, Gamma per share), then / multiplier."""
    multiplier, gamma_contracts, discount = 50.0, 0.8, math.exp(-0.04 * 0.1)
    proportional_cost = WW.cost_per_contract / (price * multiplier)
    gamma_shares = multiplier * gamma_contracts
    shares = (3 * discount * proportional_cost * price * gamma_shares**2 / (2 * WW.risk_aversion)) ** (1 / 3)
    assert band_half_width(WW, net_gamma=gamma_contracts, future_multiplier=multiplier,
                           discount_factor=discount) == pytest.approx(shares / multiplier, rel=1e-12)


def test_whalley_wilmott_grows_with_gamma_and_cost_and_is_clamped():
    widths = [band_half_width(WW, net_gamma=g, future_multiplier=50.0) for g in (0.3, 0.6, 1.2)]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert widths[1] / widths[0] == pytest.approx(2 ** (2 / 3))  # H ~ Gamma^(2/3)
    costly = band_half_width(replace(WW, cost_per_contract=40.0), net_gamma=0.6, future_multiplier=50.0)
    assert costly / widths[1] == pytest.approx(2.0)  # H ~ cost^(1/3)
    assert band_half_width(WW, net_gamma=0.0, future_multiplier=50.0) == 0.5
    assert band_half_width(WW, net_gamma=500.0, future_multiplier=50.0) == 10.0
    assert math.isnan(band_half_width(WW, net_gamma=math.nan, future_multiplier=50.0))
    assert band_half_width(Band(width=2.5), net_gamma=500.0, future_multiplier=50.0) == 2.5


def test_the_agent_uses_the_books_gamma_discounted_to_the_nearest_option_expiry():
    positions = [Position(_option(DEC, 6000, "C"), quantity=-60, average_price=120.0),
                 Position(_option(MAR, 6000, "C"), quantity=10, average_price=250.0), _futures(30)]
    inputs = _inputs(positions, parameters=AgentParameters(band=WW))
    gamma = inputs.book.net[0].greeks.gamma
    expected = band_half_width(WW, net_gamma=gamma, future_multiplier=50.0,
                               discount_factor=math.exp(-RATE * years_to_expiry(_option(DEC, 6000, "C"), NOW)))
    decision = decide(inputs)
    assert 0.5 < expected < 10.0
    assert decision.metrics["band_half_width"] == pytest.approx(expected, rel=1e-12)
    assert decision.metrics["band_method"] == "whalley_wilmott"
    assert decision.metrics["net_gamma"] == pytest.approx(gamma)


def test_the_band_costs_what_the_product_costs_by_default():
    # ES in the simulated market: a one-tick spread (half of 0.25 x 50 = 6.25) + 2.25 commission.
    derived = Band(method="whalley_wilmott")
    assert derived.cost_per_contract is None
    assert band_cost_per_contract(derived, PRODUCTS["ES"]) == 8.50
    assert band_cost_per_contract(replace(derived, cost_per_contract=5.0), PRODUCTS["ES"]) == 5.0
    gamma = 0.6
    assert band_half_width(derived, net_gamma=gamma, future_multiplier=50.0, cost_per_contract=8.5) == (
        pytest.approx(band_half_width(replace(derived, cost_per_contract=8.5), net_gamma=gamma,
                                      future_multiplier=50.0), rel=1e-12))
    with pytest.raises(ValueError, match="cost per contract"):
        band_half_width(derived, net_gamma=gamma, future_multiplier=50.0)


def test_the_agent_bands_on_the_products_cost_unless_told_otherwise():
    positions = [Position(_option(DEC, 6000, "C"), quantity=-60, average_price=120.0), _futures(30)]
    derived = _inputs(positions, parameters=AgentParameters(band=replace(WW, cost_per_contract=None)))
    told = _inputs(positions, parameters=AgentParameters(band=WW))
    gamma = derived.book.net[0].greeks.gamma
    discount = math.exp(-RATE * years_to_expiry(_option(DEC, 6000, "C"), NOW))
    by_product, by_parameter = decide(derived), decide(told)
    assert by_product.metrics["band_cost_per_contract"] == 8.5
    assert by_parameter.metrics["band_cost_per_contract"] == 5.0
    assert by_product.metrics["band_half_width"] == pytest.approx(band_half_width(
        replace(WW, cost_per_contract=8.5), net_gamma=gamma, future_multiplier=50.0, discount_factor=discount))
    # H ~ cost^(1/3), unless clamped
    ratio = by_product.metrics["band_half_width"] / by_parameter.metrics["band_half_width"]
    assert ratio == pytest.approx((8.5 / 5.0) ** (1 / 3))
    assert "band_cost_per_contract" not in decide(_inputs(positions)).metrics  # fixed band


# ---------------------------------------------------------------------------------------------
# Opening structures (the Jan expiry, 52 days out, is nearest the middle of the default 20-60 window)


@pytest.mark.parametrize(
    ("kind", "expected_legs"),
    [
        # |delta| nearest 0.20: the 5700 put (-0.214) and the 6350 call (+0.211).
        ("short_strangle", [("SELL", "ES FOP 20270115 5700 P", 1), ("SELL", "ES FOP 20270115 6350 C", 1)]),
        ("long_strangle", [("BUY", "ES FOP 20270115 5700 P", 1), ("BUY", "ES FOP 20270115 6350 C", 1)]),
        # call delta nearest 0.5 is the 6000 call (+0.51); the put at its strike.
        ("short_straddle", [("SELL", "ES FOP 20270115 6000 C", 1), ("SELL", "ES FOP 20270115 6000 P", 1)]),
        ("long_straddle", [("BUY", "ES FOP 20270115 6000 C", 1), ("BUY", "ES FOP 20270115 6000 P", 1)]),
        # wings: |delta| nearest 0.05 beyond the shorts, the 5400 put (-0.057) and the 6750 call (+0.045).
        ("iron_condor", [("BUY", "ES FOP 20270115 5400 P", 1), ("SELL", "ES FOP 20270115 5700 P", 1),
                         ("SELL", "ES FOP 20270115 6350 C", 1), ("BUY", "ES FOP 20270115 6750 C", 1)]),
    ],
)
def test_each_structure_kind_opens_its_legs_by_delta_as_one_combo_at_the_far_touch(kind, expected_legs):
    decision = decide(_inputs(parameters=_structure_parameters(kind)))
    (trade,) = decision.trades
    assert trade.action == "open_structure"
    assert _legs(trade) == expected_legs
    far_touch = sum(QUOTES[key].ask if side == "BUY" else -QUOTES[key].bid for side, key, _ in expected_legs)
    assert trade.limit_price == pytest.approx(far_touch, abs=1e-9)
    assert round(trade.limit_price / TICK, 9).is_integer()
    assert trade.rationale["kind"] == kind and trade.rationale["dte"] == 52 and trade.rationale["units"] == 1
    assert trade.summary.startswith(f"Open {kind} on ES expiring 2027-01-15 (52 DTE): ")
    assert decision.reason == (f"open {kind} expiring 2027-01-15 (52 DTE); "
                               "net ES delta +0.00 within 0.00 ± 1.00")
    json.dumps(trade.rationale, allow_nan=False)


def test_chosen_strikes_are_the_nearest_by_delta_among_all_listed():
    parameters = _structure_parameters("iron_condor", short_delta=0.30, wing_delta=0.10)
    (trade,) = decide(_inputs(parameters=parameters)).trades
    jan = [q for q in CHAIN if q.risk.instrument.expiry == JAN]
    chosen = {leg["instrument"]: leg for leg in trade.rationale["legs"]}
    for key, leg in chosen.items():
        target = 0.30 if leg["side"] == "SELL" else 0.10
        same_right = [q for q in jan if q.risk.instrument.right == leg["right"]]
        if leg["side"] == "BUY":  # wings lie beyond their short strike
            short = next(s for s in chosen.values() if s["side"] == "SELL" and s["right"] == leg["right"])
            outward = 1 if leg["right"] == "C" else -1
            same_right = [q for q in same_right if outward * (q.risk.instrument.strike - short["strike"]) > 0]
        best = min(abs(abs(q.risk.delta) - target) for q in same_right)
        assert abs(abs(leg["delta"]) - target) == best, key


@pytest.mark.parametrize(
    ("dte_min", "dte_max", "expiry"),
    # 24 and 52 days are both 14 from the middle of 24-52: a tie goes to the nearer expiry.
    [(100, 120, "2027-03-19"), (20, 30, "2026-12-18"), (24, 52, "2026-12-18")],
)
def test_the_expiry_is_the_one_nearest_the_middle_of_the_window(dte_min, dte_max, expiry):
    (trade,) = decide(_inputs(parameters=_structure_parameters("short_strangle", dte_min=dte_min,
                                                               dte_max=dte_max))).trades
    assert trade.rationale["expiry"] == expiry
    assert {leg.instrument.expiry.isoformat() for leg in trade.legs} == {expiry}


def test_no_expiry_in_the_window_opens_nothing_and_says_why():
    decision = decide(_inputs(parameters=_structure_parameters("short_strangle", dte_min=61, dte_max=100)))
    assert decision.trades == ()
    assert decision.reason.startswith(
        "no ES option expiry 61-100 days out with usable greeks: no short_strangle opened"
    )


def test_a_chosen_leg_without_a_two_sided_quote_blocks_the_open():
    key = "ES FOP 20270115 6350 C"
    one_sided = {**QUOTES, key: replace(QUOTES[key], bid=None)}
    chain = tuple(replace(q, bid=None) if q.risk.instrument.key == key else q for q in CHAIN)
    decision = decide(_inputs(parameters=_structure_parameters("short_strangle"), chain=chain,
                              quotes=one_sided))
    assert decision.trades == ()
    assert "no two-sided quote for ES FOP 20270115 6350 C: no short_strangle opened" in decision.reason


def test_structure_units_are_capped_by_the_order_and_leg_limits():
    parameters = _structure_parameters("iron_condor", quantity=8)
    (trade,) = decide(_inputs(parameters=parameters, limits=RiskLimits(max_order_contracts=20))).trades
    assert [leg.quantity for leg in trade.legs] == [5, 5, 5, 5]  # 20 contracts over 4 legs
    assert trade.rationale["capped_by"] == ["max_order_contracts"]
    decision = decide(_inputs(parameters=parameters, limits=RiskLimits(max_order_contracts=3)))
    assert decision.trades == ()
    assert "one iron_condor unit exceeds max_order_contracts: not opened" in decision.reason


# ---------------------------------------------------------------------------------------------
# Exits


STRANGLE_KEYS = ("ES FOP 20270115 5700 P", "ES FOP 20270115 6350 C")


def _held_strangle(entry_price: float, *, expiry: date = JAN, strikes=(5700, 6350), units: int = 1):
    put, call = _option(expiry, strikes[0], "P"), _option(expiry, strikes[1], "C")
    structure = OpenStructure(
        kind="short_strangle", legs=((put.key, -units), (call.key, -units)), entry_price=entry_price,
        quantity=units, expiry=expiry, opened_at=datetime(2026, 11, 2, 15, 0, tzinfo=UTC),
    )
    positions = [Position(put, quantity=-units, average_price=0.0),
                 Position(call, quantity=-units, average_price=0.0)]
    return structure, positions


STRANGLE_MARK = -(_mid(STRANGLE_KEYS[0]) + _mid(STRANGLE_KEYS[1]))  # -99.05: short, per unit


def test_an_open_structure_short_of_its_exits_is_held_with_its_pnl():
    structure, positions = _held_strangle(-150.0)
    decision = decide(_inputs(positions, structure=structure,
                              parameters=_structure_parameters("short_strangle")))
    assert decision.trades == ()
    pnl_pct = (STRANGLE_MARK + 150.0) / 150.0 * 100
    assert decision.metrics["structure_pnl_pct"] == pytest.approx(pnl_pct)
    assert decision.metrics["structure_mark"] == pytest.approx(STRANGLE_MARK)
    assert decision.reason.startswith(f"open short_strangle expiring 2027-01-15 (52 DTE): P&L "
                                      f"{pnl_pct:+.1f}% of the 150.00 entry premium, no exit due")


@pytest.mark.parametrize(
    ("entry_price", "trigger"),
    [(-200.0, "reached the 50% target"), (-30.0, "reached the 200% stop")],
    ids=["profit target", "stop loss"],
)
def test_profit_target_and_stop_loss_close_the_structure_at_the_far_touch(entry_price, trigger):
    structure, positions = _held_strangle(entry_price)
    decision = decide(_inputs(positions, structure=structure,
                              parameters=_structure_parameters("short_strangle")))
    (trade,) = decision.trades  # closed, not reopened in the same decision: that waits for a roll
    assert trade.action == "close_structure"
    assert _legs(trade) == [("BUY", STRANGLE_KEYS[0], 1), ("BUY", STRANGLE_KEYS[1], 1)]
    assert trade.limit_price == pytest.approx(QUOTES[STRANGLE_KEYS[0]].ask + QUOTES[STRANGLE_KEYS[1]].ask)
    assert trigger in trade.summary and trigger in decision.reason
    assert trade.rationale["pnl_pct"] == pytest.approx((STRANGLE_MARK - entry_price) / abs(entry_price) * 100)


def test_a_roll_closes_the_near_structure_and_opens_the_next_then_hedges_the_current_book():
    structure, positions = _held_strangle(-20.0, expiry=NOV, strikes=(5900, 6100))
    decision = decide(_inputs([*positions, _futures(4)], structure=structure,
                              parameters=_structure_parameters("short_strangle")))
    assert [trade.action for trade in decision.trades] == ["close_structure", "open_structure", "hedge"]
    close, opened, hedge = decision.trades
    assert _legs(close) == [("BUY", "ES FOP 20261127 5900 P", 1), ("BUY", "ES FOP 20261127 6100 C", 1)]
    assert _legs(opened) == [("SELL", STRANGLE_KEYS[0], 1), ("SELL", STRANGLE_KEYS[1], 1)]
    held_delta = decide(_inputs([*positions, _futures(4)])).metrics["net_delta"]
    # The book as it is, not as the structure trades would leave it.
    assert hedge.rationale["net_delta"] == pytest.approx(held_delta)
    assert "3 days to expiry is within the 5-day roll" in decision.reason
    assert decision.metrics["structure_dte"] == 3


def test_a_roll_with_no_next_expiry_only_closes():
    structure, positions = _held_strangle(-20.0, expiry=NOV, strikes=(5900, 6100))
    near_options = [option for option in OPTIONS if option.expiry == NOV]
    decision = decide(_inputs(positions, structure=structure, chain=_chain(QUOTES, near_options),
                              parameters=_structure_parameters("short_strangle")))
    assert [trade.action for trade in decision.trades] == ["close_structure"]
    assert "roll: no ES option expiry 20-60 days out" in decision.reason


def test_with_structures_switched_off_a_due_roll_only_closes():
    structure, positions = _held_strangle(-20.0, expiry=NOV, strikes=(5900, 6100))
    decision = decide(_inputs(positions, structure=structure))
    assert [trade.action for trade in decision.trades] == ["close_structure"]


def test_a_close_capped_by_the_limits_waits_to_roll_until_fully_closed():
    structure, positions = _held_strangle(-20.0, expiry=NOV, strikes=(5900, 6100), units=8)
    decision = decide(_inputs(positions, structure=structure, limits=RiskLimits(max_leg_contracts=5),
                              parameters=_structure_parameters("short_strangle")))
    (close,) = decision.trades
    assert [leg.quantity for leg in close.legs] == [5, 5]
    assert close.rationale["capped_by"] == ["max_leg_contracts"]
    assert "roll: the next structure waits until this one is fully closed" in decision.reason


def test_a_structure_whose_legs_left_the_book_is_reported_and_not_traded():
    structure, positions = _held_strangle(-200.0)  # its profit target is due
    decision = decide(_inputs(positions[:1], structure=structure,
                              parameters=_structure_parameters("short_strangle")))
    assert [trade.action for trade in decision.trades] == []
    assert ("open short_strangle expiring 2027-01-15 (52 DTE): legs no longer all in the book "
            "(ES FOP 20270115 6350 C); structure left alone") in decision.reason


def test_an_exit_without_the_quote_side_it_trades_on_is_not_traded():
    structure, positions = _held_strangle(-200.0)
    chain = tuple(replace(q, ask=None) if q.risk.instrument.key == STRANGLE_KEYS[1] else q for q in CHAIN)
    decision = decide(_inputs(positions, structure=structure, chain=chain))
    assert decision.trades == ()
    assert f"but no ask for {STRANGLE_KEYS[1]}: not closed" in decision.reason


def test_a_short_leg_with_no_bid_left_is_still_bought_back_at_its_ask():
    # Found walking the calendar: a short call far out of the money near its roll has no bid.
    structure, positions = _held_strangle(-200.0)
    chain = tuple(replace(q, bid=None) if q.risk.instrument.key == STRANGLE_KEYS[1] else q for q in CHAIN)
    decision = decide(_inputs(positions, structure=structure, chain=chain))
    (close,) = decision.trades
    assert close.action == "close_structure" and {leg.side for leg in close.legs} == {"BUY"}


# ---------------------------------------------------------------------------------------------
# Reproducibility


def test_same_inputs_give_the_same_decision_and_digest_and_any_input_change_moves_the_digest():
    structure, positions = _held_strangle(-20.0, expiry=NOV, strikes=(5900, 6100))
    parameters = _structure_parameters("iron_condor")
    first = decide(_inputs([*positions, _futures(7)], structure=structure, parameters=parameters))
    second = decide(_inputs([*positions, _futures(7)], structure=structure, parameters=parameters))
    assert first == second
    assert len(first.inputs_digest) == 64 and int(first.inputs_digest, 16) >= 0
    moved_quote = tuple(replace(q, bid=q.bid - TICK) if q.risk.instrument.key == STRANGLE_KEYS[0] else q
                        for q in CHAIN)
    held = [*positions, _futures(7)]
    variants = [
        _inputs([*positions, _futures(8)], structure=structure, parameters=parameters),
        _inputs(held, structure=structure, parameters=_structure_parameters("short_strangle")),
        _inputs(held, structure=structure, parameters=parameters, chain=moved_quote),
        _inputs(held, structure=replace(structure, entry_price=-21.0), parameters=parameters),
        _inputs(held, structure=structure, parameters=parameters, limits=RiskLimits(max_leg_contracts=9)),
        _inputs(held, structure=structure, parameters=parameters, hedge=replace(HEDGE, ask=6000.5)),
    ]
    assert len({first.inputs_digest, *(decide(v).inputs_digest for v in variants)}) == 1 + len(variants)


def test_now_must_be_timezone_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        replace(_inputs(), now=NOW.replace(tzinfo=None))


JAN_ATM_CALL = _option(JAN, 6000, "C")


@settings(max_examples=150, deadline=None)
@given(
    futures=st.integers(-60, 60),
    calls=st.integers(-60, 60),
    target=st.floats(-20, 20, allow_nan=False),
    width=st.floats(0, 5, allow_nan=False),
    max_order=st.integers(1, 40),
    max_leg=st.integers(1, 40),
)
def test_a_hedge_never_moves_delta_away_from_target_nor_exceeds_the_caps(futures, calls, target, width,
                                                                        max_order, max_leg):
    positions = [_futures(futures), Position(JAN_ATM_CALL, quantity=calls, average_price=170.0)]
    inputs = _inputs(positions, parameters=AgentParameters(target_delta=target, band=Band(width=width)),
                     limits=RiskLimits(max_order_contracts=max_order, max_leg_contracts=max_leg))
    net_delta = inputs.book.net_delta
    decision = decide(inputs)
    if abs(net_delta - target) > width + 1e-9 and round(target - net_delta) != 0:
        (trade,) = decision.trades
        (leg,) = trade.legs
        assert leg.quantity <= min(max_order, max_leg)
        assert abs(net_delta + leg.signed_quantity - target) < abs(net_delta - target)
        assert leg.signed_quantity * (target - net_delta) > 0
    else:
        assert decision.trades == ()


def test_futures_held_in_a_contract_that_rolled_move_into_the_hedge_future_as_one_spread():
    march = Instrument("ES", "FUT", MAR, "CME", 50.0)
    march_quote = Quote(march, bid=6030.0, ask=6030.5, last=None, bid_size=5, ask_size=5, time=NOW)
    quotes = {**QUOTES, march.key: march_quote}
    hedge = QuotedInstrument(instruments_risk([march], quotes, now=NOW, rate=RATE)[0], bid=6030.0, ask=6030.5)
    old = QuotedInstrument(instruments_risk([FUT], quotes, now=NOW, rate=RATE)[0], bid=5999.75, ask=6000.25)
    inputs = replace(_inputs([_futures(7)], hedge=hedge, quotes=quotes), expiring_futures=(old,))
    decision = decide(inputs)
    (roll,) = [t for t in decision.trades if t.action == "roll_hedge"]
    assert [(leg.instrument.key, leg.side, leg.quantity) for leg in roll.legs] == [
        (FUT.key, "SELL", 7), (march.key, "BUY", 7)]
    assert roll.limit_price == 30.75  # buy March at its ask, sell December at its bid
    assert f"roll 7 {FUT.key} into {march.key}" in decision.reason
    # A short position rolls the other way, capped by the order size (both legs count).
    short = replace(_inputs([_futures(-30)], hedge=hedge, quotes=quotes, limits=RiskLimits(max_order_contracts=20)),
                    expiring_futures=(old,))
    (roll,) = [t for t in decide(short).trades if t.action == "roll_hedge"]
    assert [(leg.side, leg.quantity) for leg in roll.legs] == [("BUY", 10), ("SELL", 10)]


# ---------------------------------------------------------------------------------------------
# Working orders: sent, not finished, counted as if filled


def _working(*legs: tuple[str, Instrument, int], quotes=QUOTES):
    from risk.working import WorkingLeg, value_working

    return value_working([WorkingLeg(order, instrument, quantity) for order, instrument, quantity in legs], quotes,
                         now=NOW, rate=RATE)


def test_a_resting_hedge_is_not_proposed_again_and_the_journal_says_why():
    inputs = replace(_inputs([_futures(5)]), working=_working(("agt-1", FUT, -5)))
    decision = decide(inputs)
    assert decision.trades == ()
    assert decision.reason == "net ES delta +0.00 (of which -5.00 in working orders) within 0.00 ± 1.00"
    assert decision.metrics["net_delta"] == 0.0 and decision.metrics["position_delta"] == 5.0
    assert decision.metrics["working_delta"] == -5.0 and decision.metrics["working_orders"] == ["agt-1"]
    assert decision.inputs_digest != decide(_inputs([_futures(5)])).inputs_digest


def test_only_what_the_working_orders_leave_is_hedged():
    # +8 held, a SELL 5 resting: 3 more to sell, not 8.
    (trade,) = decide(replace(_inputs([_futures(8)]), working=_working(("agt-1", FUT, -5)))).trades
    assert _legs(trade) == [("SELL", "ES FUT 20261218", 3)]
    assert trade.rationale["net_delta"] == 3.0 and trade.rationale["working_delta"] == -5.0
    assert trade.summary.startswith("Net ES delta +3.00 (of which -5.00 in working orders) is outside")
    # A working option order's delta counts too (in underlying contracts).
    call = _option(JAN, 6000, "C")
    working = _working(("trader-1", call, 10))
    (trade,) = decide(replace(_inputs(), working=working)).trades
    assert _legs(trade) == [("SELL", "ES FUT 20261218", round(working.delta))]


def test_contracts_working_on_the_hedges_side_use_up_the_size_limits():
    limits = RiskLimits(max_order_contracts=20, max_leg_contracts=10)
    # +30 held, SELL 6 working: 24 more wanted, 4 more fit beside the 6 under the leg limit of 10.
    (trade,) = decide(replace(_inputs([_futures(30)], limits=limits), working=_working(("agt-1", FUT, -6)))).trades
    assert _legs(trade) == [("SELL", "ES FUT 20261218", 4)]
    assert trade.rationale["capped_by"] == ["max_leg_contracts"] and trade.rationale["working_same_side"] == 6
    assert "6 already working on the same side" in trade.summary
    # With 10 already working there is no room: nothing more is proposed, and the journal says so.
    decision = decide(replace(_inputs([_futures(30)], limits=limits), working=_working(("agt-1", FUT, -10))))
    assert decision.trades == ()
    assert "10 ES FUT 20261218 already working on the same side leave no room under max_leg_contracts" in \
        decision.reason


def test_a_working_order_of_unknown_delta_means_no_action():
    unquoted = _option(JAN, 6000, "C")
    quotes = {key: quote for key, quote in QUOTES.items() if key != unquoted.key}
    decision = decide(replace(_inputs([_futures(5)]), working=_working(("trader-1", unquoted, 1), quotes=quotes)))
    assert decision.trades == ()
    assert "delta of the working orders is unknown" in decision.reason


def test_a_roll_already_working_is_not_sent_again():
    march = Instrument("ES", "FUT", MAR, "CME", 50.0)
    march_quote = Quote(march, bid=6030.0, ask=6030.5, last=None, bid_size=5, ask_size=5, time=NOW)
    quotes = {**QUOTES, march.key: march_quote}
    hedge = QuotedInstrument(instruments_risk([march], quotes, now=NOW, rate=RATE)[0], bid=6030.0, ask=6030.5)
    old = QuotedInstrument(instruments_risk([FUT], quotes, now=NOW, rate=RATE)[0], bid=5999.75, ask=6000.25)
    rolling = _working(("agt-roll", FUT, -7), ("agt-roll", march, 7), quotes=quotes)
    decision = decide(replace(_inputs([_futures(7)], hedge=hedge, quotes=quotes), expiring_futures=(old,),
                              working=rolling))
    assert [t.action for t in decision.trades if t.action == "roll_hedge"] == []
    # Part of it working: the rest rolls.
    part = _working(("agt-roll", FUT, -3), ("agt-roll", march, 3), quotes=quotes)
    decision = decide(replace(_inputs([_futures(7)], hedge=hedge, quotes=quotes), expiring_futures=(old,),
                              working=part))
    (roll,) = [t for t in decision.trades if t.action == "roll_hedge"]
    assert [(leg.side, leg.quantity) for leg in roll.legs] == [("SELL", 4), ("BUY", 4)]
