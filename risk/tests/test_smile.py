"""The smile fit: closed forms (a parabola priced by Black-76 is recovered), bad quotes ignored,
failures say why, and the simulated market's own smile is found from its chain's quotes."""
from datetime import UTC, datetime

import numpy as np
import pytest

from brokers.simulator import SimConfig, SimulatedMarket
from brokers.simulator.clock import SimClock
from brokers.simulator.params import MARKET_PARAMS
from risk.book import years_to_expiry
from risk.greeks import black76
from risk.smile import SmileFailure, SmileFit, SmileQuote, fit_smile, usable_quotes

F, T, RATE = 6000.0, 30 / 365, 0.04
TRUE = SmileFit(atm_vol=0.18, skew=-0.6, curvature=1.0, points=0, rms_error=0.0)
STRIKES = np.arange(5500.0, 6501.0, 50.0)


def _quotes(smile: SmileFit = TRUE, half_spread: float = 0.05, strikes=STRIKES) -> list[SmileQuote]:
    quotes = []
    for strike in strikes:
        for is_call in (True, False):
            price = float(black76(F, strike, T, RATE, smile.vol(strike, F), is_call).price)
            quotes.append(SmileQuote(strike=float(strike), is_call=is_call, bid=price - half_spread,
                                     ask=price + half_spread))
    return quotes


def test_recovers_a_parabola_priced_by_black76():
    fit = fit_smile(_quotes(half_spread=1e-6), forward=F, years=T, rate=RATE)
    assert isinstance(fit, SmileFit)
    assert fit.atm_vol == pytest.approx(0.18, abs=1e-6)
    assert fit.skew == pytest.approx(-0.6, abs=1e-4)
    assert fit.curvature == pytest.approx(1.0, abs=1e-3)
    assert fit.points == len(STRIKES)  # one per strike: the out-of-the-money side
    assert fit.rms_error < 1e-6


def test_slope_and_dvol_dforward_are_the_parabolas_derivatives():
    strike = 6200.0
    m = np.log(strike / F)
    assert float(TRUE.slope(strike, F)) == pytest.approx(-0.6 + 2.0 * m)
    h = 1e-3
    numeric = (float(TRUE.vol(strike, F + h)) - float(TRUE.vol(strike, F - h))) / (2 * h)
    assert float(TRUE.dvol_dforward(strike, F)) == pytest.approx(numeric, rel=1e-6)


def test_missing_crossed_and_zero_bid_quotes_are_ignored():
    good = _quotes(half_spread=1e-6)
    bad = [
        SmileQuote(strike=6050.0, is_call=True, bid=None, ask=80.0),  # one-sided
        SmileQuote(strike=6050.0, is_call=True, bid=0.0, ask=500.0),  # zero bid
        SmileQuote(strike=5950.0, is_call=False, bid=300.0, ask=1.0),  # crossed
        SmileQuote(strike=6150.0, is_call=True, bid=float("nan"), ask=3.0),  # not a number
    ]
    assert usable_quotes(bad) == []
    plain = fit_smile(good, forward=F, years=T, rate=RATE)
    mixed = fit_smile(bad + good, forward=F, years=T, rate=RATE)
    assert isinstance(mixed, SmileFit)
    assert (mixed.atm_vol, mixed.skew, mixed.curvature) == pytest.approx((plain.atm_vol, plain.skew, plain.curvature))


def test_an_outlying_quote_is_rejected():
    quotes = _quotes(half_spread=0.02)
    # The 6100 call quoted as if its vol were 10 points higher (a stale or erroneous quote).
    price = float(black76(F, 6100.0, T, RATE, float(TRUE.vol(6100.0, F)) + 0.10, True).price)
    quotes = [q for q in quotes if not (q.strike == 6100.0 and q.is_call)]
    quotes.append(SmileQuote(strike=6100.0, is_call=True, bid=price - 0.02, ask=price + 0.02))
    fit = fit_smile(quotes, forward=F, years=T, rate=RATE)
    assert isinstance(fit, SmileFit)
    assert fit.points == len(STRIKES) - 1
    assert fit.skew == pytest.approx(-0.6, abs=0.01)


@pytest.mark.parametrize(("quotes", "forward", "years", "reason"), [
    (_quotes(strikes=[6000.0, 6050.0]), F, T, "2 strike(s) with a usable quote"),
    ([SmileQuote(6000.0, True, None, None)], F, T, "no two-sided quote"),
    (_quotes(), float("nan"), T, "no usable forward"),
    (_quotes(), F, 0.0, "expired"),
])
def test_failures_say_why(quotes, forward, years, reason):
    result = fit_smile(quotes, forward=forward, years=years, rate=RATE)
    assert isinstance(result, SmileFailure)
    assert reason in result.reason


def test_finds_the_simulated_markets_smile_from_its_chain():
    now = datetime(2025, 2, 3, 15, 0, tzinfo=UTC)
    market = SimulatedMarket(SimConfig(seed=3), clock=SimClock.manual(now))
    future = market.listed_futures("ES")[0]
    chain = market.option_chain(future)
    expiry = max(option.expiry for option in chain)
    options = [option for option in chain if option.expiry == expiry]
    quotes = market.quotes(options)
    forward = quotes[0].underlying_price
    fit = fit_smile([SmileQuote(q.instrument.strike, q.instrument.right == "C", q.bid, q.ask) for q in quotes],
                    forward=forward, years=years_to_expiry(options[0], now), rate=market.config.rate)
    assert isinstance(fit, SmileFit)
    params = MARKET_PARAMS["ES"]
    # Quotes are rounded to the option tick, so the smile is found to within a vol point's
    # fraction near the money.
    assert fit.atm_vol == pytest.approx(0.18, abs=0.002)
    assert fit.skew == pytest.approx(params.skew, abs=0.03)
    assert fit.curvature == pytest.approx(params.curvature, abs=0.5)
