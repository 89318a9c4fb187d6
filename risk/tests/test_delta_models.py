"""The delta models against closed forms and against the simulated market's own delta."""
from datetime import UTC, datetime

import numpy as np
import pytest

from brokers.domain import Position
from brokers.simulator import SimConfig, SimulatedMarket
from brokers.simulator.clock import SimClock
from brokers.simulator.params import MARKET_PARAMS, smile_vol, true_delta
from risk.book import instruments_risk, smile_chain, value_book
from risk.book import years_to_expiry as risk_years
from risk.delta_models import (
    DEFAULT_DELTA_MODEL,
    DeltaModel,
    EstimateFailure,
    HedgeObservation,
    MinimumVarianceCoefficients,
    estimate_minimum_variance,
    model_deltas,
    smile_delta,
)
from risk.greeks import black76
from risk.smile import SmileFit

F, T, RATE = 6000.0, 40 / 365, 0.04
SMILE = SmileFit(atm_vol=0.18, skew=-0.6, curvature=1.0, points=0, rms_error=0.0)
STRIKES = np.array([5600.0, 5900.0, 6000.0, 6100.0, 6400.0])


def _price_on_smile(forward: float, strike: np.ndarray, is_call: bool) -> np.ndarray:
    return black76(forward, strike, T, RATE, SMILE.vol(strike, forward), is_call).price


@pytest.mark.parametrize("is_call", [True, False])
def test_sticky_strike_is_black76(is_call):
    vols = SMILE.vol(STRIKES, F)
    model = black76(F, STRIKES, T, RATE, vols, is_call)
    result = model_deltas(DeltaModel("sticky_strike"), delta=model.delta, vega=model.vega, forward=F,
                          strike=STRIKES, years=T, rate=RATE, is_call=is_call, smiles=[SMILE] * len(STRIKES))
    assert np.array_equal(result.delta, model.delta)
    assert not result.adjusted.any()


@pytest.mark.parametrize("is_call", [True, False])
def test_sticky_moneyness_is_the_derivative_of_the_price_along_the_smile(is_call):
    h = 0.01
    numeric = (_price_on_smile(F + h, STRIKES, is_call) - _price_on_smile(F - h, STRIKES, is_call)) / (2 * h)
    vols = SMILE.vol(STRIKES, F)
    model = black76(F, STRIKES, T, RATE, vols, is_call)
    result = model_deltas(DeltaModel("sticky_moneyness"), delta=model.delta, vega=model.vega, forward=F,
                          strike=STRIKES, years=T, rate=RATE, is_call=is_call, smiles=[SMILE] * len(STRIKES))
    assert result.adjusted.all()
    np.testing.assert_allclose(result.delta, numeric, atol=1e-6)
    np.testing.assert_allclose(smile_delta(forward=F, strike=STRIKES, years=T, rate=RATE, is_call=is_call,
                                           smile=SMILE), numeric, atol=1e-6)
    # With a negative skew a rise of the future lowers ln(K/F) and so raises each strike's vol:
    # every delta is higher than sticky-strike's (calls longer, puts less short).
    assert (result.delta > model.delta).all()


def test_sticky_moneyness_without_a_smile_keeps_the_sticky_strike_delta():
    model = black76(F, STRIKES, T, RATE, 0.18, True)
    result = model_deltas(DeltaModel("sticky_moneyness"), delta=model.delta, vega=model.vega, forward=F,
                          strike=STRIKES, years=T, rate=RATE, is_call=True, smiles=[None] * len(STRIKES))
    assert np.array_equal(result.delta, model.delta) and not result.adjusted.any()


def test_minimum_variance_is_hull_and_whites_formula():
    a, b, c = -0.25, 0.5, -0.5
    coefficients = MinimumVarianceCoefficients(a=a, b=b, c=c, observations=0)
    vols = SMILE.vol(STRIKES, F)
    call = black76(F, STRIKES, T, RATE, vols, True)
    put = black76(F, STRIKES, T, RATE, vols, False)
    model = DeltaModel("minimum_variance", coefficients)
    calls = model_deltas(model, delta=call.delta, vega=call.vega, forward=F, strike=STRIKES, years=T, rate=RATE,
                         is_call=True)
    puts = model_deltas(model, delta=put.delta, vega=put.vega, forward=F, strike=STRIKES, years=T, rate=RATE,
                        is_call=False)
    expected = call.delta + 100 * call.vega / (F * np.sqrt(T)) * (a + b * call.delta + c * call.delta**2)
    np.testing.assert_allclose(calls.delta, expected, rtol=1e-12)
    # Put-call parity: a call and a put of one strike get the same adjustment.
    np.testing.assert_allclose(puts.delta - put.delta, calls.delta - call.delta, atol=1e-12)
    assert calls.adjusted.all() and puts.adjusted.all()


def test_minimum_variance_without_coefficients_keeps_the_sticky_strike_delta():
    model = black76(F, STRIKES, T, RATE, 0.18, True)
    result = model_deltas(DeltaModel("minimum_variance"), delta=model.delta, vega=model.vega, forward=F,
                          strike=STRIKES, years=T, rate=RATE, is_call=True)
    assert np.array_equal(result.delta, model.delta) and not result.adjusted.any()


def test_the_estimator_recovers_known_coefficients():
    a, b, c = -0.2, 0.45, -0.4
    rng = np.random.default_rng(7)
    observations = []
    for _ in range(200):
        strike = float(rng.uniform(5500, 6500))
        is_call = bool(rng.integers(2))
        move = float(rng.normal(0, 10))
        model = black76(F, strike, T, RATE, 0.18, is_call)
        delta, vega = float(model.delta), float(model.vega)
        call_delta = delta if is_call else delta + np.exp(-RATE * T)
        mv = delta + 100 * vega / (F * np.sqrt(T)) * (a + b * call_delta + c * call_delta**2)
        observations.append(HedgeObservation(delta=delta, vega=vega, forward=F, strike=strike, years=T,
                                             is_call=is_call, price_change=mv * move, forward_change=move))
    estimate = estimate_minimum_variance(observations, rate=RATE)
    assert isinstance(estimate, MinimumVarianceCoefficients)
    assert (estimate.a, estimate.b, estimate.c) == pytest.approx((a, b, c), abs=1e-9)
    assert estimate.observations == 200
    too_few = estimate_minimum_variance(observations[:10], rate=RATE)
    assert isinstance(too_few, EstimateFailure) and "10 usable observations" in too_few.reason


def test_the_simulators_own_delta_is_its_price_derivative():
    params = MARKET_PARAMS["ES"]
    h = 0.01
    for is_call in (True, False):
        def price(forward, is_call=is_call):
            return black76(forward, STRIKES, T, RATE, smile_vol("ES", STRIKES, forward, 0.18), is_call).price
        numeric = (price(F + h) - price(F - h)) / (2 * h)
        exact = true_delta("ES", forward=F, strike=STRIKES, years=T, rate=RATE, atm_vol=0.18, is_call=is_call)
        np.testing.assert_allclose(exact, numeric, atol=1e-6)
    assert params.skew < 0  # so the check above is not of a flat smile


def _simulated_book(seed: int):
    now = datetime(2025, 2, 3, 15, 0, tzinfo=UTC)
    market = SimulatedMarket(SimConfig(seed=seed), clock=SimClock.manual(now))
    future = market.listed_futures("ES")[0]
    chain = market.option_chain(future)
    expiry = max(option.expiry for option in chain)
    options = {o.key: o for o in chain if o.expiry == expiry}
    quotes = {q.instrument.key: q for q in market.quotes([*options.values(), future])}
    forward = next(iter(quotes.values())).underlying_price or quotes[future.key].mid
    calls = sorted((o for o in options.values() if o.right == "C"), key=lambda o: o.strike)
    puts = sorted((o for o in options.values() if o.right == "P"), key=lambda o: o.strike)
    short_call = min(calls, key=lambda o: abs(quotes[o.key].greeks.delta - 0.20))
    short_put = min(puts, key=lambda o: abs(quotes[o.key].greeks.delta + 0.20))
    atm = min(calls, key=lambda o: abs(o.strike - forward))
    positions = [Position(short_call, -50, 0.0), Position(short_put, -50, 0.0), Position(atm, 40, 0.0)]
    smile_quotes = {o.key: quotes[o.key] for o in smile_chain([p.instrument for p in positions], chain, forward)}
    smile_quotes.update({p.instrument.key: quotes[p.instrument.key] for p in positions})
    truth = sum(p.quantity * market.true_delta(p.instrument) for p in positions)
    return positions, smile_quotes, now, truth


@pytest.mark.parametrize("seed", [1, 2])
def test_the_sticky_moneyness_delta_of_a_simulated_book_is_the_markets_own(seed):
    positions, quotes, now, truth = _simulated_book(seed)
    moneyness = value_book(positions, quotes, now=now, rate=0.04, delta_models={"ES": DeltaModel("sticky_moneyness")})
    strike = value_book(positions, quotes, now=now, rate=0.04, delta_models={"ES": DeltaModel("sticky_strike")})
    (net,) = moneyness.net
    assert net.delta_model == "sticky_moneyness"
    assert {leg.risk.greeks_source for leg in moneyness.legs} == {"broker+smile"}
    # Fitted to tick-rounded quotes: within 0.1 contract of the market's own on a 140-lot book.
    assert moneyness.net_delta == pytest.approx(truth, abs=0.1)
    # The sticky-strike delta misses it by whole contracts (the residual).
    assert abs(strike.net_delta - truth) > 1.0
    assert {leg.risk.greeks_source for leg in strike.legs} == {"broker"}


def test_a_leg_without_a_fitted_smile_keeps_its_sticky_strike_delta_and_says_why():
    positions, quotes, now, _ = _simulated_book(1)
    only_legs = {p.instrument.key: quotes[p.instrument.key] for p in positions[:1]}
    (risk,) = instruments_risk([positions[0].instrument], only_legs, now=now, rate=0.04,
                               delta_models={"ES": DeltaModel("sticky_moneyness")})
    assert risk.greeks_source == "broker" and risk.delta_model == "sticky_strike"
    assert "no smile fitted for this expiry (1 strike(s)" in risk.delta_note
    assert risk.delta == only_legs[positions[0].instrument.key].greeks.delta


def test_no_model_chosen_is_sticky_strike_and_an_unnamed_underlying_gets_the_default():
    positions, quotes, now, _ = _simulated_book(1)
    assert value_book(positions, quotes, now=now, rate=0.04).net[0].delta_model == "sticky_strike"
    assert value_book(positions, quotes, now=now, rate=0.04, delta_models={"NQ": DeltaModel("sticky_strike")}
                      ).net[0].delta_model == DEFAULT_DELTA_MODEL == "sticky_moneyness"


def test_the_minimum_variance_model_adjusts_broker_greeks_and_says_so():
    positions, quotes, now, _ = _simulated_book(1)
    coefficients = MinimumVarianceCoefficients(a=-0.25, b=0.5, c=-0.5, observations=0)
    legs = [p.instrument for p in positions]
    risks = instruments_risk(legs, quotes, now=now, rate=0.04,
                             delta_models={"ES": DeltaModel("minimum_variance", coefficients)})
    for option, risk in zip(legs, risks, strict=True):
        broker = quotes[option.key].greeks
        expected = model_deltas(DeltaModel("minimum_variance", coefficients), delta=broker.delta,
                                vega=broker.vega, forward=quotes[option.key].underlying_price,
                                strike=option.strike, years=risk_years(option, now), rate=0.04,
                                is_call=option.right == "C").delta
        assert risk.greeks_source == "broker+mv" and risk.delta_model == "minimum_variance"
        assert risk.delta == pytest.approx(float(expected), abs=1e-12)
    (unset,) = instruments_risk(legs[:1], quotes, now=now, rate=0.04,
                                delta_models={"ES": DeltaModel("minimum_variance")})
    assert unset.greeks_source == "broker" and "no minimum-variance coefficients" in unset.delta_note


def test_the_smile_chain_spans_the_held_strikes_out_of_the_money_whatever_the_grid():
    positions, quotes, now, _ = _simulated_book(1)
    held = [p.instrument for p in positions]
    forward = quotes[held[0].key].underlying_price
    chain = [q.instrument for q in quotes.values()]
    chosen = smile_chain(held, chain, forward)
    assert 5 <= len(chosen) <= 13
    assert all((o.right == "C") == (o.strike >= forward) for o in chosen)
    furthest = max(abs(np.log(o.strike / forward)) for o in held)
    assert min(np.log(o.strike / forward) for o in chosen) <= -min(furthest, 0.03)
    assert max(np.log(o.strike / forward) for o in chosen) >= min(furthest, 0.03)
