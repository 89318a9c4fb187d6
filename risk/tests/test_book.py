"""Book valuation: marks, P&L, per-leg and net greeks, failing closed on missing data."""
import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from brokers.domain import Greeks, Instrument, Position, Quote
from risk.book import instruments_risk, value_book, value_books, years_to_expiry
from risk.greeks import black76

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
FUT = Instrument("ES", "FUT", date(2026, 12, 18), "CME", 50.0)
CALL = Instrument("ES", "FOP", date(2026, 12, 18), "CME", 50.0, strike=6000.0, right="C",
                  trading_class="ES", exercise_style="american", underlying_expiry=date(2026, 12, 18))
PUT = Instrument("ES", "FOP", date(2026, 12, 18), "CME", 50.0, strike=5900.0, right="P",
                 trading_class="ES", exercise_style="american", underlying_expiry=date(2026, 12, 18))
CL_FUT = Instrument("CL", "FUT", date(2027, 1, 20), "NYMEX", 1000.0)
RATE = 0.04
VOL = 0.18


def _option_quote(option: Instrument, forward: float = 6000.0, greeks: Greeks | None = None) -> Quote:
    t = years_to_expiry(option, NOW)
    price = float(black76(forward, option.strike, t, RATE, VOL, option.right == "C").price)
    return Quote(option, bid=price - 0.25, ask=price + 0.25, last=None, bid_size=10, ask_size=10,
                 time=NOW, underlying_price=forward, greeks=greeks)


def _quotes(*quotes: Quote) -> dict[str, Quote]:
    return {quote.instrument.key: quote for quote in quotes}


FUT_QUOTE = Quote(FUT, bid=5999.75, ask=6000.25, last=6000.0, bid_size=5, ask_size=5, time=NOW)


def test_model_greeks_recover_the_vol_and_convert_delta_to_futures():
    (risk,) = instruments_risk([CALL], _quotes(_option_quote(CALL)), now=NOW, rate=RATE)
    assert risk.greeks_source == "model"
    assert risk.implied_vol == pytest.approx(VOL, abs=1e-9)
    expected = black76(6000.0, 6000.0, years_to_expiry(CALL, NOW), RATE, VOL, True)
    assert risk.delta == pytest.approx(float(expected.delta), rel=1e-9)
    assert risk.delta_per_contract == pytest.approx(risk.delta)  # same multiplier as the future


def test_fresh_broker_greeks_win_and_say_so():
    broker = Greeks(delta=0.42, gamma=0.001, vega=5.0, theta=-1.0, rho=0.0, implied_vol=0.2,
                    source="broker", time=NOW - timedelta(seconds=5))
    (risk,) = instruments_risk([CALL], _quotes(_option_quote(CALL, greeks=broker)), now=NOW, rate=RATE)
    assert (risk.greeks_source, risk.delta) == ("broker", 0.42)


def test_book_net_delta_pnl_and_per_underlying_grouping():
    positions = [
        Position(CALL, quantity=4, average_price=50.0),
        Position(PUT, quantity=-2, average_price=40.0),
        Position(FUT, quantity=-1, average_price=6010.0),
        Position(CL_FUT, quantity=2, average_price=70.0),
    ]
    cl_quote = Quote(CL_FUT, bid=70.49, ask=70.51, last=None, bid_size=1, ask_size=1, time=NOW)
    quotes = _quotes(_option_quote(CALL), _option_quote(PUT), FUT_QUOTE, cl_quote)
    book = value_book(positions, quotes, now=NOW, rate=RATE)

    legs = {leg.risk.instrument.key: leg for leg in book.legs}
    call, put = legs[CALL.key], legs[PUT.key]
    es_delta = 4 * call.risk.delta - 2 * put.risk.delta - 1
    nets = {entry.symbol: entry.greeks for entry in book.net}
    assert nets["ES"].delta == pytest.approx(es_delta)
    assert nets["CL"].delta == pytest.approx(2.0)
    assert book.net_delta == pytest.approx(es_delta + 2.0)
    assert legs[FUT.key].unrealized_pnl == pytest.approx((6000.0 - 6010.0) * -1 * 50)
    assert legs[CL_FUT.key].unrealized_pnl == pytest.approx(0.5 * 2 * 1000)
    assert book.unrealized_pnl == pytest.approx(sum(leg.unrealized_pnl for leg in book.legs))


def test_a_leg_without_a_quote_makes_its_underlying_unknown_not_flat():
    book = value_book([Position(CALL, 1, 50.0), Position(FUT, -1, 6000.0)], _quotes(FUT_QUOTE), now=NOW, rate=RATE)
    assert math.isnan(book.net[0].greeks.delta)
    assert book.unrealized_pnl is None
    assert {leg.risk.greeks_source for leg in book.legs} == {"none", "model"}


def test_option_forward_falls_back_to_its_future_quote():
    quote = _option_quote(CALL)
    without_underlying = Quote(CALL, quote.bid, quote.ask, None, 1, 1, NOW)
    (risk,) = instruments_risk([CALL], _quotes(without_underlying, FUT_QUOTE), now=NOW, rate=RATE)
    assert risk.forward == 6000.0
    assert risk.implied_vol == pytest.approx(VOL, abs=1e-3)


def test_flat_positions_are_left_out():
    assert value_book([Position(FUT, 0, 6000.0)], _quotes(FUT_QUOTE), now=NOW, rate=RATE).legs == ()


def test_value_books_equals_value_book_for_every_book_exactly():
    far_call = replace(CALL, strike=6200.0)
    near_put = replace(PUT, strike=5975.0)
    unquoted = replace(CALL, strike=6400.0)
    broker = Greeks(delta=0.42, gamma=0.001, vega=5.0, theta=-1.0, rho=0.0, implied_vol=0.2,
                    source="broker", time=NOW - timedelta(seconds=5))
    cl_quote = Quote(CL_FUT, bid=70.49, ask=70.51, last=None, bid_size=1, ask_size=1, time=NOW)
    quotes = _quotes(_option_quote(CALL), _option_quote(PUT), _option_quote(far_call),
                     _option_quote(near_put, greeks=broker), FUT_QUOTE, cl_quote)
    # Shared and distinct contracts in different orders, a flat leg, broker greeks, a leg
    # without a quote (NaN greeks), another underlying and an empty book.
    books = {
        "alpha": [Position(CALL, 4, 50.0), Position(PUT, -2, 40.0), Position(FUT, -1, 6010.0)],
        "beta": [Position(near_put, 3, 30.0), Position(CALL, -1, 55.0), Position(far_call, 0, 9.0),
                 Position(CL_FUT, 2, 70.0)],
        "gamma": [Position(unquoted, 1, 2.0), Position(PUT, 5, 41.0), Position(far_call, -7, 8.5)],
        "delta": [],
    }
    batched = value_books(books, quotes, now=NOW, rate=RATE)
    one_by_one = {name: value_book(positions, quotes, now=NOW, rate=RATE)
                  for name, positions in books.items()}
    assert math.isnan(batched["gamma"].net_delta)
    assert {leg.risk.greeks_source for leg in batched["beta"].legs} == {"broker", "model"}
    # repr compares every float exactly and NaN equal to NaN, which == on the dataclasses does not.
    assert repr(batched) == repr(one_by_one)


SERIAL_CALL = Instrument("ES", "FOP", date(2026, 11, 20), "CME", 50.0, strike=5900.0, right="C",
                         trading_class="ES", exercise_style="american", underlying_expiry=date(2026, 12, 18))


def test_a_leg_past_its_last_trade_is_worth_its_intrinsic_value_and_keeps_the_delta_of_its_exercise():
    after = datetime(2026, 11, 20, 21, 5, tzinfo=UTC)  # 15:05 CT: the serial option has stopped
    quote = Quote(SERIAL_CALL, bid=None, ask=None, last=None, bid_size=0, ask_size=0, time=after,
                  underlying_price=6000.0)
    (risk,) = instruments_risk([SERIAL_CALL], _quotes(quote), now=after, rate=RATE)
    # It exercises into the December future: in the money, it is a long future.
    assert (risk.greeks_source, risk.mark, risk.delta, risk.gamma, risk.vega) == ("expired", 100.0, 1.0, 0.0, 0.0)
    out = replace(SERIAL_CALL, strike=6100.0)
    (risk,) = instruments_risk([out], _quotes(replace(quote, instrument=out)), now=after, rate=RATE)
    assert (risk.mark, risk.delta) == (0.0, 0.0)


def test_a_quarterly_option_past_its_0830_ct_last_trade_settles_in_cash_with_no_delta_left():
    after = datetime(2026, 12, 18, 14, 31, tzinfo=UTC)
    before = datetime(2026, 12, 18, 14, 29, tzinfo=UTC)
    quote = Quote(CALL, bid=None, ask=None, last=None, bid_size=0, ask_size=0, time=after, underlying_price=6050.0)
    (expired,) = instruments_risk([CALL], _quotes(quote), now=after, rate=RATE)
    assert (expired.greeks_source, expired.mark, expired.delta) == ("expired", 50.0, 0.0)
    assert years_to_expiry(CALL, before) > 0 > years_to_expiry(CALL, after)


def test_an_option_the_broker_gave_no_price_is_valued_by_our_model_at_the_brokers_volatility():
    greeks = Greeks(delta=0.5, gamma=0.001, vega=6.0, theta=-1.0, rho=0.0, implied_vol=0.2,
                    source="broker", time=NOW)
    unpriced = Quote(CALL, bid=None, ask=None, last=None, bid_size=0, ask_size=0, time=NOW,
                     underlying_price=6000.0, greeks=greeks, data_type="delayed")
    (risk,) = instruments_risk([CALL], _quotes(unpriced, FUT_QUOTE), now=NOW, rate=RATE)
    expected = float(black76(6000.0, 6000.0, years_to_expiry(CALL, NOW), RATE, 0.2, True).price)
    assert (risk.mark_source, risk.mark) == ("model", pytest.approx(expected))
    bare = replace(unpriced, greeks=None)  # no price and no volatility: nothing values it
    (risk,) = instruments_risk([CALL], _quotes(bare, FUT_QUOTE), now=NOW, rate=RATE)
    assert (risk.mark_source, risk.mark) == ("quote", None)
    (priced,) = instruments_risk([CALL], _quotes(_option_quote(CALL), FUT_QUOTE), now=NOW, rate=RATE)
    assert priced.mark_source == "quote"
