"""Contracts' last trading moments and roll dates by product rules (pure), and the simulator
listing what the exchange lists: serial and quarterly option months on the right future."""
from __future__ import annotations

from datetime import UTC, date, datetime

from brokers.domain import Instrument
from brokers.products import PRODUCTS, expiry_moment, roll_date
from brokers.simulator import SimClock, SimConfig, SimulatedMarket

ES = PRODUCTS["ES"]


def _option(expiry: date, underlying_expiry: date) -> Instrument:
    return Instrument("ES", "FOP", expiry, "CME", 50.0, strike=6000.0, right="C", trading_class="ES",
                      exercise_style="american", underlying_expiry=underlying_expiry)


def test_es_quarterly_contracts_stop_at_0830_ct_and_serial_options_at_1500_ct():
    december = date(2026, 12, 18)
    assert expiry_moment(Instrument("ES", "FUT", december, "CME", 50.0)) == datetime(2026, 12, 18, 14, 30, tzinfo=UTC)
    assert expiry_moment(_option(december, december)) == datetime(2026, 12, 18, 14, 30, tzinfo=UTC)
    # January options deliver the March future and stop at 15:00 CT (CST: UTC-6).
    assert expiry_moment(_option(date(2027, 1, 15), date(2027, 3, 19))) == datetime(2027, 1, 15, 21, 0, tzinfo=UTC)
    # In summer Chicago is on CDT (UTC-5).
    assert expiry_moment(Instrument("ES", "FUT", date(2027, 6, 18), "CME", 50.0)) == datetime(
        2027, 6, 18, 13, 30, tzinfo=UTC)


def test_an_unknown_product_keeps_the_2100_utc_convention():
    assert expiry_moment(Instrument("ZZ", "FUT", date(2027, 1, 15), "X", 1.0)) == datetime(
        2027, 1, 15, 21, 0, tzinfo=UTC)


def test_roll_dates():
    assert roll_date(ES, date(2026, 12, 18)) == date(2026, 12, 10)  # Thursday, eight days before
    assert roll_date(ES, date(2027, 3, 19)).weekday() == 3
    # Crude: five business days before the last trading day (April 2027 stops on 2027-03-22).
    assert roll_date(PRODUCTS["CL"], date(2027, 3, 22)) == date(2027, 3, 15)
    # Gold, delivered: five business days before the first notice day, the last business day of
    # March for April 2027 (2027-03-31); Good Friday 2027-03-26 is not a business day.
    assert roll_date(PRODUCTS["GC"], date(2027, 4, 28)) == date(2027, 3, 23)
    # A date that is no gold contract counts back from itself.
    assert roll_date(PRODUCTS["GC"], date(2027, 3, 19)) == date(2027, 3, 12)


def test_the_simulator_lists_serial_months_on_the_next_quarterly_future():
    market = SimulatedMarket(SimConfig(anchor=datetime(2026, 1, 1, tzinfo=UTC)),
                             clock=SimClock.manual(datetime(2026, 11, 30, 15, tzinfo=UTC)))
    december, march = market.listed_futures("ES")[:2]
    assert {o.expiry for o in market.option_chain(december)} == {date(2026, 12, 18)}
    march_options = market.option_chain(march)
    assert sorted({o.expiry for o in march_options}) == [date(2027, 1, 15), date(2027, 2, 19), date(2027, 3, 19)]
    assert {o.underlying_expiry for o in march_options} == {date(2027, 3, 19)}


def test_on_expiry_day_the_future_stops_at_its_last_trade_and_settles_then():
    market = SimulatedMarket(SimConfig(anchor=datetime(2026, 1, 1, tzinfo=UTC)),
                             clock=SimClock.manual(datetime(2026, 12, 18, 14, 0, tzinfo=UTC)))
    assert market.listed_futures("ES")[0].expiry == date(2026, 12, 18)  # 08:00 CT: still trading
    market.clock.jump(datetime(2026, 12, 18, 14, 30, tzinfo=UTC))
    assert market.listed_futures("ES")[0].expiry == date(2027, 3, 19)  # 08:30 CT: gone
