from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.domain import Greeks
from risk.greeks import (
    Black76,
    LegGreeks,
    NetGreeks,
    black76,
    book_net_greeks,
    implied_vol,
    select_leg_greeks,
)

GREEK_NAMES = ("price", "delta", "gamma", "vega", "theta", "rho")


def random_book(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    forward = rng.uniform(20.0, 6000.0, n)
    return {
        "forward": forward,
        "strike": forward * np.exp(rng.uniform(-0.5, 0.5, n)),
        "time_to_expiry": rng.uniform(2.0 / 365.0, 3.0, n),
        "rate": rng.uniform(-0.01, 0.08, n),
        "vol": rng.uniform(0.05, 1.2, n),
        "is_call": rng.random(n) < 0.5,
    }


# --- black76: reference values and identities -------------------------------------------------


def test_haug_black76_example_call_and_put_are_both_1_7011() -> None:
    # Haug, The Complete Guide to Option Pricing Formulas, Black-76: F = K = 19, T = 0.75,
    # r = 10%, sigma = 28%; at the money the call and the put are worth the same.
    result = black76(19.0, 19.0, 0.75, 0.10, 0.28, [True, False])
    assert result.price == pytest.approx([1.7011, 1.7011], abs=5e-5)


def test_scalar_inputs_give_zero_dimensional_arrays_and_arguments_broadcast() -> None:
    scalar = black76(100.0, 100.0, 1.0, 0.05, 0.2, True)
    assert all(getattr(scalar, name).shape == () for name in GREEK_NAMES)

    strikes = np.array([[90.0, 100.0, 110.0]])
    grid = black76(np.array([[95.0], [105.0]]), strikes, 0.5, 0.03, 0.25, False)
    assert grid.price.shape == (2, 3)
    one = black76(105.0, 110.0, 0.5, 0.03, 0.25, False)
    assert grid.price[1, 2] == one.price
    assert grid.theta[1, 2] == one.theta


def test_output_arrays_are_independent_buffers() -> None:
    result = black76(**random_book(50, seed=1))
    arrays = [getattr(result, name) for name in GREEK_NAMES]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)


def test_vectorized_result_equals_one_option_at_a_time() -> None:
    book = random_book(40, seed=2)
    together = black76(**book)
    for i in range(40):
        alone = black76(**{name: values[i] for name, values in book.items()})
        for name in GREEK_NAMES:
            assert getattr(alone, name) == pytest.approx(getattr(together, name)[i], rel=1e-13)


@settings(max_examples=200, deadline=None)
@given(
    forward=st.floats(1.0, 10_000.0),
    moneyness=st.floats(-1.5, 1.5),
    time_to_expiry=st.floats(1e-3, 5.0),
    rate=st.floats(-0.02, 0.15),
    vol=st.floats(0.01, 2.0),
)
def test_put_call_parity(
    forward: float, moneyness: float, time_to_expiry: float, rate: float, vol: float
) -> None:
    strike = forward * math.exp(moneyness)
    result = black76(forward, strike, time_to_expiry, rate, vol, [True, False])
    discount = math.exp(-rate * time_to_expiry)
    call, put = result.price
    assert call - put == pytest.approx(discount * (forward - strike), abs=1e-9 * (forward + strike))
    assert result.delta[0] - result.delta[1] == pytest.approx(discount, abs=1e-12)
    assert result.gamma[0] == pytest.approx(result.gamma[1], rel=1e-12)
    assert result.vega[0] == pytest.approx(result.vega[1], rel=1e-12)
    assert call >= 0.0 and put >= 0.0
    # The bounds hold up to one rounding: the engine's discount factor is numpy's exp, this one math's.
    bound = discount * (1 + 1e-15)
    assert 0.0 <= result.delta[0] <= bound and -bound <= result.delta[1] <= 0.0


def test_greeks_match_central_finite_differences_in_their_units() -> None:
    book = random_book(200, seed=3)
    f, k, t, r, v, c = (book[n] for n in ("forward", "strike", "time_to_expiry", "rate", "vol", "is_call"))
    base = black76(f, k, t, r, v, c)

    def price(**bumped: np.ndarray) -> np.ndarray:
        args = {"forward": f, "strike": k, "time_to_expiry": t, "rate": r, "vol": v, "is_call": c}
        return black76(**(args | bumped)).price

    h = 1e-4 * f
    delta = (price(forward=f + h) - price(forward=f - h)) / (2 * h)
    gamma = (price(forward=f + h) - 2 * base.price + price(forward=f - h)) / (h * h)
    vega_per_point = (price(vol=v + 1e-5) - price(vol=v - 1e-5)) / (2e-5) / 100
    day = 1.0 / 365.0
    theta_per_day = (price(time_to_expiry=t - 1e-3 * day) - price(time_to_expiry=t + 1e-3 * day)) / 2e-3
    rho_per_point = (price(rate=r + 1e-6) - price(rate=r - 1e-6)) / (2e-6) / 100

    scale = f  # price-unit greeks: compare with the option's own size
    np.testing.assert_allclose(base.delta, delta, rtol=0, atol=1e-7)
    np.testing.assert_allclose(base.gamma * f * f, gamma * f * f, rtol=2e-4, atol=1e-6 * scale.max())
    np.testing.assert_allclose(base.vega, vega_per_point, rtol=1e-6, atol=1e-9 * scale.max())
    np.testing.assert_allclose(base.theta, theta_per_day, rtol=1e-5, atol=1e-9 * scale.max())
    np.testing.assert_allclose(base.rho, rho_per_point, rtol=1e-6, atol=1e-9 * scale.max())


# --- black76 against QuantLib -----------------------------------------------------------------


def test_price_delta_gamma_vega_match_quantlib_black_calculator() -> None:
    book = random_book(300, seed=4)
    ours = black76(**book)
    for i in range(300):
        t = book["time_to_expiry"][i]
        option_type = ql.Option.Call if book["is_call"][i] else ql.Option.Put
        calculator = ql.BlackCalculator(
            ql.PlainVanillaPayoff(option_type, float(book["strike"][i])),
            float(book["forward"][i]),
            float(book["vol"][i] * math.sqrt(t)),
            float(math.exp(-book["rate"][i] * t)),
        )
        assert ours.price[i] == pytest.approx(calculator.value(), rel=1e-10, abs=1e-10)
        assert ours.delta[i] == pytest.approx(calculator.deltaForward(), abs=1e-12)
        assert ours.gamma[i] == pytest.approx(calculator.gammaForward(), rel=1e-10, abs=1e-15)
        assert ours.vega[i] == pytest.approx(calculator.vega(float(t)) / 100, rel=1e-10, abs=1e-12)


def quantlib_option_on_future(
    forward: float, strike: float, days: int, rate: float, vol: float, is_call: bool
) -> ql.VanillaOption:
    today = ql.Date(15, ql.January, 2025)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    process = ql.BlackProcess(
        ql.QuoteHandle(ql.SimpleQuote(forward)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, rate, day_count)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), vol, day_count)),
    )
    option = ql.VanillaOption(
        ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, strike),
        ql.EuropeanExercise(today + days),
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return option


@pytest.mark.parametrize(
    ("forward", "strike", "days", "rate", "vol", "is_call"),
    [
        (6000.0, 6100.0, 30, 0.045, 0.18, True),
        (6000.0, 5500.0, 90, 0.045, 0.22, False),
        (70.0, 55.0, 200, 0.05, 0.45, True),
        (2600.0, 3000.0, 400, 0.0, 0.16, False),
        (21000.0, 21000.0, 1, 0.03, 0.30, True),
    ],
)
def test_every_greek_matches_quantlib_engine_on_a_futures_process(
    forward: float, strike: float, days: int, rate: float, vol: float, is_call: bool
) -> None:
    option = quantlib_option_on_future(forward, strike, days, rate, vol, is_call)
    ours = black76(forward, strike, days / 365.0, rate, vol, is_call)
    assert float(ours.price) == pytest.approx(option.NPV(), rel=1e-10)
    assert float(ours.delta) == pytest.approx(option.delta(), abs=1e-12)
    assert float(ours.gamma) == pytest.approx(option.gamma(), rel=1e-10)
    assert float(ours.vega) == pytest.approx(option.vega() / 100, rel=1e-10)
    assert float(ours.theta) == pytest.approx(option.thetaPerDay(), rel=1e-10)
    # QuantLib's BlackProcess reads the rate twice (discounting and the future's carry); moving
    # both together, as rho does with the future held fixed, is the sum of its two rhos.
    assert float(ours.rho) == pytest.approx((option.rho() + option.dividendRho()) / 100, rel=1e-10)


# --- black76 edge cases -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forward", "strike", "is_call", "price", "delta"),
    [
        (105.0, 100.0, True, 5.0, 1.0),
        (95.0, 100.0, True, 0.0, 0.0),
        (100.0, 100.0, True, 0.0, 0.5),
        (95.0, 100.0, False, 5.0, -1.0),
        (105.0, 100.0, False, 0.0, 0.0),
        (100.0, 100.0, False, 0.0, -0.5),
        (-3.0, 10.0, False, 13.0, -1.0),  # a negative future at expiry still has an intrinsic value
    ],
)
@pytest.mark.parametrize("time_to_expiry", [0.0, -0.01])
def test_expired_option_is_worth_its_undiscounted_intrinsic_value_and_has_no_other_greeks(
    forward: float, strike: float, is_call: bool, price: float, delta: float, time_to_expiry: float
) -> None:
    result = black76(forward, strike, time_to_expiry, 0.05, 0.2, is_call)
    assert float(result.price) == price
    assert float(result.delta) == delta
    for name in ("gamma", "vega", "theta", "rho"):
        assert float(getattr(result, name)) == 0.0


def test_expiry_limits_are_continuous_with_the_live_formula() -> None:
    nearly = black76([105.0, 95.0], 100.0, 1e-9, 0.05, 0.2, True)
    expired = black76([105.0, 95.0], 100.0, 0.0, 0.05, 0.2, True)
    np.testing.assert_allclose(nearly.price, expired.price, atol=1e-6)
    np.testing.assert_allclose(nearly.delta, expired.delta, atol=1e-6)


@pytest.mark.parametrize(
    ("forward", "strike", "is_call", "payoff", "exercised"),
    [
        (105.0, 100.0, True, 5.0, 1.0),
        (95.0, 100.0, True, 0.0, 0.0),
        (100.0, 100.0, True, 0.0, 0.5),
        (95.0, 100.0, False, 5.0, 1.0),
        (100.0, 100.0, False, 0.0, 0.5),
    ],
)
def test_zero_vol_option_is_its_discounted_certain_payoff(
    forward: float, strike: float, is_call: bool, payoff: float, exercised: float
) -> None:
    t, r = 0.5, 0.04
    discount = math.exp(-r * t)
    result = black76(forward, strike, t, r, 0.0, is_call)
    sign = 1.0 if is_call else -1.0
    assert float(result.price) == pytest.approx(discount * payoff, rel=1e-15)
    assert float(result.delta) == pytest.approx(sign * discount * exercised, rel=1e-15)
    assert float(result.gamma) == 0.0 and float(result.vega) == 0.0
    assert float(result.theta) == pytest.approx(r * discount * payoff / 365.0, rel=1e-15)
    assert float(result.rho) == pytest.approx(-t * discount * payoff / 100.0, rel=1e-15)


def test_tiny_vol_agrees_with_the_zero_vol_limit_away_from_the_money() -> None:
    tiny = black76([105.0, 95.0], 100.0, 0.5, 0.04, 1e-6, [True, False])
    zero = black76([105.0, 95.0], 100.0, 0.5, 0.04, 0.0, [True, False])
    for name in GREEK_NAMES:
        np.testing.assert_allclose(getattr(tiny, name), getattr(zero, name), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("strike", [0.0, -5.0])
def test_non_positive_strike_call_is_a_discounted_forward_and_put_is_worthless(strike: float) -> None:
    t, r, forward = 0.25, 0.05, 20.0
    discount = math.exp(-r * t)
    call, put = (black76(forward, strike, t, r, 0.4, flag) for flag in (True, False))
    assert float(call.price) == pytest.approx(discount * (forward - strike), rel=1e-15)
    assert float(call.delta) == pytest.approx(discount, rel=1e-15)
    assert float(call.gamma) == 0.0 and float(call.vega) == 0.0
    assert float(call.theta) == pytest.approx(r * float(call.price) / 365.0, rel=1e-15)
    for name in GREEK_NAMES:
        assert float(getattr(put, name)) == 0.0
    near_zero = black76(forward, 1e-9, t, r, 0.4, True)
    assert float(near_zero.price) == pytest.approx(discount * forward, rel=1e-9)


@pytest.mark.parametrize(
    ("forward", "vol"), [(-3.0, 0.3), (0.0, 0.3), (100.0, -0.2)]
)
def test_live_option_outside_the_lognormal_model_is_nan(forward: float, vol: float) -> None:
    result = black76(forward, 100.0, 0.5, 0.05, vol, True)
    for name in GREEK_NAMES:
        assert math.isnan(float(getattr(result, name)))


@pytest.mark.parametrize("position", range(5))
@pytest.mark.parametrize("time_to_expiry", [0.5, 0.0])
def test_nan_in_any_input_gives_nan_in_every_output(position: int, time_to_expiry: float) -> None:
    args = [100.0, 95.0, time_to_expiry, 0.05, 0.2]
    args[position] = math.nan
    result = black76(*args, True)
    for name in GREEK_NAMES:
        assert math.isnan(float(getattr(result, name))), name


def test_edge_elements_do_not_disturb_regular_ones_in_the_same_array() -> None:
    book = random_book(64, seed=5)
    clean = black76(**book)
    mixed_book = {name: values.copy() for name, values in book.items()}
    mixed_book["time_to_expiry"][3] = 0.0
    mixed_book["vol"][10] = 0.0
    mixed_book["strike"][20] = -1.0
    mixed_book["forward"][30] = math.nan
    mixed = black76(**mixed_book)
    untouched = np.setdiff1d(np.arange(64), [3, 10, 20, 30])
    for name in GREEK_NAMES:
        np.testing.assert_array_equal(getattr(mixed, name)[untouched], getattr(clean, name)[untouched])
    assert math.isnan(mixed.price[30])
    assert mixed.gamma[3] == mixed.gamma[10] == mixed.gamma[20] == 0.0


# --- implied volatility -----------------------------------------------------------------------


def test_implied_vol_recovers_haugs_example() -> None:
    vol = implied_vol([1.70105072524, 1.70105072524], 19.0, 19.0, 0.75, 0.10, [True, False])
    np.testing.assert_allclose(vol, [0.28, 0.28], rtol=1e-10)


def predicted_vol_error(model: Black76, vol: np.ndarray, price_error: np.ndarray) -> np.ndarray:
    """Relative vol error caused by a price error: deep in or out of the money, where vega
    vanishes, a price rounding of a few ulps leaves the vol undetermined."""
    with np.errstate(divide="ignore", over="ignore"):
        return price_error / (model.vega * 100 * vol)


def test_implied_vol_round_trips_across_moneyness_expiry_and_vol() -> None:
    rng = np.random.default_rng(6)
    n = 20_000
    forward = rng.uniform(10.0, 6000.0, n)
    strike = forward * np.exp(rng.uniform(-2.5, 2.5, n))  # deep in and out of the money
    t = rng.uniform(1.0 / 365.0, 5.0, n)
    rate = rng.uniform(-0.01, 0.1, n)
    vol = rng.uniform(0.02, 1.5, n)
    is_call = rng.random(n) < 0.5
    model = black76(forward, strike, t, rate, vol, is_call)

    recovered = implied_vol(model.price, forward, strike, t, rate, is_call)

    price_rounding = 8 * np.finfo(float).eps * (forward + strike)
    identifiable = predicted_vol_error(model, vol, price_rounding) < 1e-12
    assert identifiable.sum() > 0.6 * n
    np.testing.assert_allclose(recovered[identifiable], vol[identifiable], rtol=1e-10)
    # Everywhere else the answer, if any, must still reproduce the price to about 1e-14.
    solved = np.isfinite(recovered)
    assert solved.sum() > 0.99 * n
    repriced = black76(forward, strike, t, rate, recovered, is_call).price
    assert np.all(np.abs(repriced - model.price)[solved] <= 8 * price_rounding[solved])


@pytest.mark.parametrize(
    ("forward", "strike", "t", "vol", "is_call"),
    [
        (100.0, 300.0, 0.1, 0.3, True),  # price about 1e-70
        (100.0, 30.0, 0.1, 0.3, False),
        (100.0, 160.0, 1.0, 0.3, False),  # deep in the money: 60 of intrinsic, 1.4 of time value
        (100.0, 100.0, 10.0, 3.0, True),  # near the upper bound F e^-rT
        (100.0, 100.0 * (1 + 1e-12), 0.5, 0.2, True),  # at the money to 12 digits
    ],
)
def test_implied_vol_round_trips_extreme_options(
    forward: float, strike: float, t: float, vol: float, is_call: bool
) -> None:
    price = float(black76(forward, strike, t, 0.03, vol, is_call).price)
    assert float(implied_vol(price, forward, strike, t, 0.03, is_call)) == pytest.approx(vol, rel=1e-8)


def test_implied_vol_agrees_with_quantlib() -> None:
    rng = np.random.default_rng(7)
    forward = rng.uniform(50.0, 150.0, 200)
    strike = rng.uniform(50.0, 150.0, 200)
    t = rng.uniform(0.05, 2.0, 200)
    vol = rng.uniform(0.1, 0.8, 200)
    model = black76(forward, strike, t, 0.02, vol, True)
    price = model.price
    ours = implied_vol(price, forward, strike, t, 0.02, True)
    rounding = 8 * np.finfo(float).eps * forward
    identifiable = np.flatnonzero(predicted_vol_error(model, vol, rounding) < 1e-10)
    assert identifiable.size > 150
    for i in identifiable:
        std_dev = ql.blackFormulaImpliedStdDev(
            ql.Option.Call, float(strike[i]), float(forward[i]), float(price[i]),
            math.exp(-0.02 * t[i]), 0.0, 0.2, 1e-14, 200,
        )
        assert ours[i] == pytest.approx(std_dev / math.sqrt(t[i]), rel=1e-8)


def test_implied_vol_is_nan_outside_no_arbitrage_bounds_and_zero_at_intrinsic() -> None:
    forward, strike, t, rate = 100.0, 90.0, 0.5, 0.04
    discount = math.exp(-rate * t)
    prices_and_expected = [
        (discount * 10.0 - 1e-9, math.nan),  # below the discounted intrinsic value
        (discount * 10.0, 0.0),  # exactly intrinsic: no time value, no vol
        (discount * 100.0, math.nan),  # the call's upper bound needs an infinite vol
        (discount * 100.0 + 1.0, math.nan),
        (-1.0, math.nan),
    ]
    prices = [p for p, _ in prices_and_expected]
    got = implied_vol(prices, forward, strike, t, rate, True)
    np.testing.assert_array_equal(got, [e for _, e in prices_and_expected])
    put_above_strike = implied_vol(discount * strike + 1e-6, forward, strike, t, rate, False)
    assert math.isnan(float(put_above_strike))


@pytest.mark.parametrize(
    ("price", "forward", "strike", "t"),
    [(5.0, 100.0, 100.0, 0.0), (5.0, 100.0, 100.0, -1.0), (5.0, -1.0, 100.0, 1.0),
     (5.0, 100.0, 0.0, 1.0), (math.nan, 100.0, 100.0, 1.0), (5.0, math.nan, 100.0, 1.0)],
)
def test_implied_vol_is_nan_without_a_model_answer(
    price: float, forward: float, strike: float, t: float
) -> None:
    assert math.isnan(float(implied_vol(price, forward, strike, t, 0.05, True)))


def test_implied_vol_is_nan_rather_than_a_guess_when_out_of_iterations() -> None:
    price = float(black76(100.0, 140.0, 0.5, 0.02, 0.35, True).price)
    assert float(implied_vol(price, 100.0, 140.0, 0.5, 0.02, True)) == pytest.approx(0.35, rel=1e-12)
    assert math.isnan(float(implied_vol(price, 100.0, 140.0, 0.5, 0.02, True, max_iterations=1)))


def test_implied_vol_keeps_the_broadcast_shape() -> None:
    prices = black76(100.0, [[90.0, 100.0], [110.0, 120.0]], 0.5, 0.01, 0.3, True).price
    vol = implied_vol(prices, 100.0, [[90.0, 100.0], [110.0, 120.0]], 0.5, 0.01, True)
    assert vol.shape == (2, 2)
    np.testing.assert_allclose(vol, 0.3, rtol=1e-10)


# --- net greeks of a book ---------------------------------------------------------------------


def test_net_greeks_of_a_small_mixed_book_computed_by_hand() -> None:
    # ES book: +10 calls, -5 puts, -4 ES futures, +10 micro (MES, 5 USD/pt) futures.
    net = book_net_greeks(
        quantity=[10, -5, -4, 10],
        delta=[0.5, -0.3, math.nan, math.nan],
        gamma=[0.01, 0.012, math.nan, math.nan],
        vega=[2.0, 1.5, math.nan, math.nan],
        theta=[-0.8, -0.6, math.nan, math.nan],
        multiplier=[50.0, 50.0, 50.0, 5.0],
        underlying_multiplier=50.0,
        is_future=[False, False, True, True],
    )
    # delta: 10*0.5 + (-5)(-0.3) - 4 + 10*5/50 = 5 + 1.5 - 4 + 1
    assert net == NetGreeks(
        delta=pytest.approx(3.5),
        gamma=pytest.approx(10 * 0.01 - 5 * 0.012),
        vega=pytest.approx(10 * 2.0 * 50 - 5 * 1.5 * 50),  # USD per vol point
        theta=pytest.approx(10 * -0.8 * 50 - 5 * -0.6 * 50),  # USD per day
    )


def test_net_delta_and_gamma_are_the_book_value_sensitivity_in_underlying_contracts() -> None:
    # Options with a different multiplier than the future (as for a mini on a full-size future).
    quantity = np.array([7.0, -3.0, 12.0, 2.0])
    strike = np.array([95.0, 105.0, 100.0, 0.0])
    is_call = np.array([True, False, True, True])
    multiplier = np.array([100.0, 100.0, 10.0, 1000.0])
    is_future = np.array([False, False, False, True])
    underlying_multiplier = 1000.0
    t, r, vol = 0.3, 0.02, 0.35

    def book_usd(forward: float) -> float:
        options = black76(forward, strike, t, r, vol, is_call).price
        values = np.where(is_future, forward, options)  # a future's P&L moves one for one
        return float(np.sum(quantity * values * multiplier))

    greeks = black76(100.0, strike, t, r, vol, is_call)
    net = book_net_greeks(
        quantity=quantity, delta=greeks.delta, gamma=greeks.gamma, vega=greeks.vega,
        theta=greeks.theta, multiplier=multiplier, underlying_multiplier=underlying_multiplier,
        is_future=is_future,
    )
    h = 0.01
    usd_per_point = (book_usd(100.0 + h) - book_usd(100.0 - h)) / (2 * h)
    usd_per_point2 = (book_usd(100.0 + h) - 2 * book_usd(100.0) + book_usd(100.0 - h)) / h**2
    assert net.delta == pytest.approx(usd_per_point / underlying_multiplier, rel=1e-8)
    assert net.gamma == pytest.approx(usd_per_point2 / underlying_multiplier, rel=1e-5)


def test_missing_greeks_poison_the_total_unless_the_leg_is_flat() -> None:
    common = {"gamma": [0.0, 0.0], "vega": [0.0, 0.0], "theta": [0.0, 0.0],
              "multiplier": 50.0, "underlying_multiplier": 50.0, "is_future": [False, False]}
    flat = book_net_greeks(quantity=[2, 0], delta=[0.25, math.nan], **common)
    assert flat.delta == 0.5
    held = book_net_greeks(quantity=[2, 1], delta=[0.25, math.nan], **common)
    assert math.isnan(held.delta)


def test_empty_book_is_flat() -> None:
    net = book_net_greeks(quantity=[], delta=[], gamma=[], vega=[], theta=[], multiplier=[],
                          underlying_multiplier=50.0, is_future=[])
    assert net == NetGreeks(delta=0.0, gamma=0.0, vega=0.0, theta=0.0)


# --- broker or model greeks per leg -----------------------------------------------------------


NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def broker_greeks(age: timedelta | None, delta: float = 0.42, rho: float = math.nan) -> Greeks:
    return Greeks(delta=delta, gamma=0.01, vega=3.0, theta=-1.0, rho=rho, implied_vol=0.2,
                  source="broker", time=None if age is None else NOW - age)


def test_select_leg_greeks_prefers_fresh_complete_broker_greeks() -> None:
    model = black76(100.0, [95.0, 100.0, 105.0, 110.0, 115.0, 120.0], 0.5, 0.03, 0.25, True)
    broker = [
        broker_greeks(timedelta(seconds=5)),
        broker_greeks(timedelta(seconds=5), rho=-0.07),
        None,
        broker_greeks(timedelta(seconds=61)),  # stale
        broker_greeks(None),  # age unknown
        broker_greeks(timedelta(seconds=1), delta=math.nan),  # incomplete
    ]
    chosen = select_leg_greeks(broker=broker, model=model, now=NOW, max_age=timedelta(seconds=60))

    assert isinstance(chosen, LegGreeks)
    assert chosen.source == ("broker", "broker", "model", "model", "model", "model")
    assert chosen.delta[0] == chosen.delta[1] == 0.42
    assert chosen.vega[0] == 3.0 and chosen.theta[1] == -1.0
    assert chosen.rho[0] == model.rho[0]  # the broker sent no rho
    assert chosen.rho[1] == -0.07
    for name in ("delta", "gamma", "vega", "theta", "rho"):
        np.testing.assert_array_equal(getattr(chosen, name)[2:], getattr(model, name)[2:])


def test_select_leg_greeks_leaves_the_model_result_untouched() -> None:
    model = black76(100.0, [95.0, 105.0], 0.5, 0.03, 0.25, True)
    before = model.delta.copy()
    select_leg_greeks(broker=[broker_greeks(timedelta(0))] * 2, model=model, now=NOW,
                      max_age=timedelta(seconds=60))
    np.testing.assert_array_equal(model.delta, before)
    assert isinstance(model, Black76)
