"""The product table (brokers.products) against its sources, its price grids, and every product
trading on the simulated market.

The expected values below are CME's, read from each product's contract-specification page (the
`source` of its entry) and, for last trading days, from CME's published expiration calendars of
past contracts (the dates in `test_last_trading_days_follow_cme`)."""
from __future__ import annotations

import math
from datetime import UTC, date, datetime, time

import numpy as np
import pytest
from ib_async import Contract, ContractDetails

from brokers.domain import Instrument, OrderLeg, OrderRequest
from brokers.ibkr.contracts import details_disagreements
from brokers.products import (
    PRODUCTS,
    TickRule,
    contract_disagreements,
    expiry_moment,
    future_contract_month,
    future_expiry,
    on_price_grid,
    option_exercise_style,
    option_expiry,
    option_last_trade,
    option_trading_class,
    price_add_ticks,
    price_round,
    price_text,
    product_for,
    product_get,
    underlying_month,
)
from brokers.simulator import MARKET_PARAMS, SimClock, SimConfig, SimulatedMarket, SimulationError

DESK_PRODUCTS = {"ES", "MES", "NQ", "MNQ", "YM", "RTY", "CL", "NG", "GC", "SI", "HG", "ZN", "ZB", "ZF", "ZT",
                 "ZC", "ZS", "ZW", "6E", "6J", "LE", "HE"}

# symbol: exchange, contract size as IB states it (multiplier x price magnifier), USD value of one
# future tick, USD value of the option ticks (reduced, regular), Globex option code.
SPECS = {
    "ES": ("CME", 50, 12.50, (2.50, 12.50), "ES"),
    "MES": ("CME", 5, 1.25, (0.25, 1.25), "MES"),
    "NQ": ("CME", 20, 5.00, (1.00, 5.00), "NQ"),
    "MNQ": ("CME", 2, 0.50, (0.10, 0.50), "MNQ"),
    "YM": ("CBOT", 5, 5.00, (1.00, 5.00), "OYM"),
    "RTY": ("CME", 50, 5.00, (2.50, 5.00), "RTO"),
    "CL": ("NYMEX", 1000, 10.00, (10.00, 10.00), "LO"),
    "NG": ("NYMEX", 10000, 10.00, (10.00, 10.00), "ON"),  # American; LNE is the European LN
    "GC": ("COMEX", 100, 10.00, (10.00, 10.00), "OG"),
    "SI": ("COMEX", 5000, 25.00, (5.00, 5.00), "SO"),
    "HG": ("COMEX", 25000, 12.50, (12.50, 12.50), "HXE"),
    "ZN": ("CBOT", 1000, 15.625, (15.625, 15.625), "OZN"),
    "ZB": ("CBOT", 1000, 31.25, (15.625, 15.625), "OZB"),
    "ZF": ("CBOT", 1000, 7.8125, (7.8125, 7.8125), "OZF"),
    "ZT": ("CBOT", 2000, 7.8125, (15.625, 15.625), "OZT"),
    "ZC": ("CBOT", 5000, 12.50, (6.25, 6.25), "OZC"),
    "ZS": ("CBOT", 5000, 12.50, (6.25, 6.25), "OZS"),
    "ZW": ("CBOT", 5000, 12.50, (6.25, 6.25), "OZW"),
    "6E": ("CME", 125000, 6.25, (6.25, 12.50), "EUU"),
    "6J": ("CME", 12500000, 6.25, (6.25, 12.50), "JPU"),
    "LE": ("CME", 40000, 10.00, (10.00, 10.00), "LE"),
    "HE": ("CME", 40000, 10.00, (10.00, 10.00), "HE"),
}


def test_the_table_covers_the_products_a_us_futures_options_desk_trades():
    assert DESK_PRODUCTS <= set(PRODUCTS), sorted(DESK_PRODUCTS - set(PRODUCTS))
    assert set(SPECS) == set(PRODUCTS)  # a product added to the table is checked here too


@pytest.mark.parametrize("symbol", sorted(SPECS))
def test_contract_terms_follow_the_cme_specification(symbol):
    product = PRODUCTS[symbol]
    exchange, size, future_tick_value, (reduced_value, regular_value), option_class = SPECS[symbol]
    assert product.exchange == exchange
    assert product.broker_multiplier == size
    assert product.future_tick * product.multiplier == pytest.approx(future_tick_value)
    assert product.option_tick_rule.minimum * product.multiplier == pytest.approx(reduced_value)
    assert product.option_tick_rule.tick * product.multiplier == pytest.approx(regular_value)
    assert product.option_trading_class == option_class
    assert product.source.startswith("https://www.cmegroup.com/")
    assert product.currency == "USD"


def test_every_product_has_simulator_parameters():
    # A product added without them would fail only when a client first trades it on the simulator.
    missing = sorted(set(PRODUCTS) - set(MARKET_PARAMS))
    assert missing == [], f"products without brokers.simulator.MARKET_PARAMS: {missing}"


def test_look_ups():
    assert product_get("es") is PRODUCTS["ES"] and product_get("XX") is None and product_get(None) is None
    assert product_for("6e") is PRODUCTS["6E"]
    with pytest.raises(KeyError, match="known: 6E, 6J, CL"):
        product_for("XX")


# --- price grids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "price", "nearest", "buy", "sell"),
    [
        ("ES", 4.97, 4.95, 5.00, 4.95),  # 0.05 at or below a 5.00 premium
        ("ES", 5.00, 5.00, 5.00, 5.00),
        ("ES", 5.01, 5.00, 5.25, 5.00),  # 0.25 above it
        ("ES", 5.20, 5.25, 5.25, 5.00),
        ("ES", 0.01, 0.05, 0.05, 0.05),  # never below the smallest tick
        ("NQ", 123.40, 123.50, 123.50, 123.25),
        ("YM", 3.85, 3.80, 4.00, 3.80),  # 0.20 (a dollar) at or below 4.00
        ("YM", 4.30, 4.00, 5.00, 4.00),  # whole points above
        ("RTY", 5.12, 5.10, 5.20, 5.10),
        ("6E", 0.00047, 0.00045, 0.00050, 0.00045),  # half ticks below a 0.0005 premium
        ("6E", 0.00051, 0.0005, 0.0006, 0.0005),
        ("6J", 0.0000043, 0.0000045, 0.0000045, 0.000004),
        ("ZN", 1.37, 1 + 24 / 64, 1 + 24 / 64, 1 + 23 / 64),  # 64ths
        ("ZT", 0.26, 0.2578125, 0.265625, 0.2578125),  # halves of 64ths
        ("ZC", 7.30, 7.25, 7.375, 7.25),  # eighths of a cent
        ("SI", 0.5554, 0.555, 0.556, 0.555),
    ],
)
def test_option_prices_round_to_the_real_grid(symbol, price, nearest, buy, sell):
    product = PRODUCTS[symbol]
    assert price_round(product, price, kind="option") == pytest.approx(nearest, abs=1e-12)
    assert price_round(product, price, kind="option", side="BUY") == pytest.approx(buy, abs=1e-12)
    assert price_round(product, price, kind="option", side="SELL") == pytest.approx(sell, abs=1e-12)
    # Passive: never pay more, or receive less, than asked.
    assert price_round(product, price, kind="option", side="BUY", passive=True) == pytest.approx(
        max(sell, product.option_tick), abs=1e-12)
    assert price_round(product, price, kind="option", side="SELL", passive=True) == pytest.approx(buy, abs=1e-12)


@pytest.mark.parametrize(
    ("symbol", "price", "text"),
    [
        ("ZB", 118.5, "118-16"),  # 32nds
        ("ZN", 110.51, "110-165"),  # halves of 32nds
        ("ZF", 108 + 16.75 / 32, "108-167"),  # quarters
        ("ZF", 108 + 16.25 / 32, "108-162"),
        ("ZT", 103 + 3.125 / 32, "103-031"),  # eighths
        ("ZN", 110.0, "110-00"),
        ("ES", 6000.1, "6000.00"),
        ("6J", 0.00671234, "0.0067125"),
        ("ZC", 450.3, "450.25"),
    ],
)
def test_futures_prices_on_their_grid_and_as_the_exchange_writes_them(symbol, price, text):
    assert price_text(PRODUCTS[symbol], price) == text


def test_treasury_options_are_written_in_64ths():
    assert price_text(PRODUCTS["ZN"], 1 + 23 / 64, kind="option") == "1-23"
    assert on_price_grid(PRODUCTS["ZN"], 1 + 23 / 64, kind="option")
    assert not on_price_grid(PRODUCTS["ZN"], 1.37, kind="option")


def test_ticks_are_added_along_the_tiers():
    es = PRODUCTS["ES"]
    assert price_add_ticks(es, 4.95, 2, kind="option") == 5.25  # 5.00, then 5.25
    assert price_add_ticks(es, 5.25, -2, kind="option") == 4.95  # 5.00, then 4.95
    assert price_add_ticks(es, 4.95, 4, kind="option") == 5.75
    assert price_add_ticks(es, 6000.0, -3, kind="future") == 5999.25
    assert price_add_ticks(PRODUCTS["ZN"], 110.5, 1) == 110.515625


def test_a_tick_rule_must_be_consistent():
    with pytest.raises(ValueError):
        TickRule(0.25, 0.05, 5.01)  # the threshold must lie on both grids
    with pytest.raises(ValueError):
        TickRule(0.25, 0.10, 5.0)  # the regular tick is a multiple of the reduced one
    rule = PRODUCTS["ES"].option_tick_rule
    assert list(rule.floor(np.array([4.97, 5.30, np.nan]))[:2]) == [4.95, 5.25]
    assert rule.tick_at(5.0) == 0.05 and rule.tick_at(5.05) == 0.25


# --- contracts' lives ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "month", "future_last_day", "option_last_day"),
    [
        ("ES", (2024, 12), date(2024, 12, 20), date(2024, 12, 20)),
        ("CL", (2024, 12), date(2024, 11, 20), date(2024, 11, 15)),  # the 25th a Monday: 3 days before
        ("CL", (2025, 1), date(2024, 12, 19), date(2024, 12, 16)),  # the 25th a holiday: 4 days before
        ("NG", (2025, 1), date(2024, 12, 27), date(2024, 12, 26)),
        ("GC", (2024, 12), date(2024, 12, 27), date(2024, 11, 25)),  # options: 4th last business day
        ("GC", (2025, 2), date(2025, 2, 26), date(2025, 1, 28)),
        ("SI", (2025, 3), date(2025, 3, 27), date(2025, 2, 25)),
        ("HG", (2025, 3), date(2025, 3, 27), date(2025, 2, 25)),
        ("ZN", (2024, 12), date(2024, 12, 19), date(2024, 11, 22)),
        ("ZB", (2025, 3), date(2025, 3, 20), date(2025, 2, 21)),
        ("ZF", (2024, 12), date(2024, 12, 31), date(2024, 11, 22)),
        ("ZT", (2025, 3), date(2025, 3, 31), date(2025, 2, 21)),
        ("ZC", (2024, 12), date(2024, 12, 13), date(2024, 11, 22)),
        ("ZS", (2025, 1), date(2025, 1, 14), date(2024, 12, 27)),
        ("ZW", (2025, 3), date(2025, 3, 14), date(2025, 2, 21)),
        ("6E", (2024, 12), date(2024, 12, 16), date(2024, 12, 6)),
        ("6J", (2025, 3), date(2025, 3, 17), date(2025, 3, 7)),
        ("LE", (2024, 12), date(2024, 12, 31), date(2024, 12, 6)),
        ("HE", (2024, 12), date(2024, 12, 13), date(2024, 12, 13)),
    ],
)
def test_last_trading_days_follow_cme(symbol, month, future_last_day, option_last_day):
    product = PRODUCTS[symbol]
    assert future_expiry(product, *month) == future_last_day
    assert future_contract_month(product, future_last_day) == month
    assert option_expiry(product, month) == option_last_day


# Last trading moments of options, each from its rule and the CME source named in
# docs/brokers/products.md ("Verified against"). UTC: Chicago is UTC-6 in winter, UTC-5 in summer.
@pytest.mark.parametrize(
    ("symbol", "option_month", "moment", "trading_class", "style"),
    [
        # Treasuries: the last Friday at least 2 business days before the last business day of the
        # month before (2027-02-26: 2027-02-19), at the 16:00 CT close of the Globex session.
        ("ZN", (2027, 3), datetime(2027, 2, 19, 22, 0, tzinfo=UTC), "OZN", "american"),
        ("ZF", (2027, 3), datetime(2027, 2, 19, 22, 0, tzinfo=UTC), "OZF", "american"),
        # A serial month (into March): the last business day of January 2027 is Friday the 29th.
        ("ZB", (2027, 2), datetime(2027, 1, 22, 22, 0, tzinfo=UTC), "OZB", "american"),
        ("ZT", (2027, 6), datetime(2027, 5, 21, 21, 0, tzinfo=UTC), "OZT", "american"),  # 16:00 CDT
        # Grains: the same Friday, at the 13:20 CT close of the day session (CBOT SER #7395).
        ("ZC", (2027, 3), datetime(2027, 2, 19, 19, 20, tzinfo=UTC), "OZC", "american"),
        ("ZS", (2027, 11), datetime(2027, 10, 22, 18, 20, tzinfo=UTC), "OZS", "american"),  # 13:20 CDT
        ("ZW", (2026, 12), datetime(2026, 11, 20, 19, 20, tzinfo=UTC), "OZW", "american"),
        # Natural gas: CME's American options (ON), the business day before the future (2026-12-29).
        ("NG", (2027, 1), datetime(2026, 12, 28, 19, 30, tzinfo=UTC), "ON", "american"),
        # Livestock: live cattle the first Friday of the option month at 13:00 CT; lean hogs with the
        # future, the 10th business day at 12:00 CT.
        ("LE", (2027, 2), datetime(2027, 2, 5, 19, 0, tzinfo=UTC), "LE", "american"),
        ("HE", (2027, 2), datetime(2027, 2, 12, 18, 0, tzinfo=UTC), "HE", "american"),
        # Nasdaq-100: quarterly options (NQ, MNQ) at 08:30 CT with the future; serial months are the
        # Week-3 Friday weeklies (QN3, MQ3), European, at 15:00 CT on their 3rd Friday.
        ("NQ", (2027, 3), datetime(2027, 3, 19, 13, 30, tzinfo=UTC), "NQ", "american"),
        ("NQ", (2027, 1), datetime(2027, 1, 15, 21, 0, tzinfo=UTC), "QN3", "european"),
        ("MNQ", (2027, 3), datetime(2027, 3, 19, 13, 30, tzinfo=UTC), "MNQ", "american"),
        ("MNQ", (2027, 2), datetime(2027, 2, 19, 21, 0, tzinfo=UTC), "MQ3", "european"),
    ],
)
def test_options_stop_at_the_moment_cme_specifies(symbol, option_month, moment, trading_class, style):
    product = PRODUCTS[symbol]
    expiry = option_expiry(product, option_month)
    underlying = future_expiry(product, *underlying_month(product, option_month))
    assert option_last_trade(product, expiry, underlying) == moment
    assert option_trading_class(product, expiry, underlying) == trading_class
    assert option_exercise_style(product, expiry, underlying) == style


def test_serial_options_exercise_into_the_next_future_with_their_own_style_and_class():
    es, gold = PRODUCTS["ES"], PRODUCTS["GC"]
    march = date(2027, 3, 19)
    january = option_expiry(es, (2027, 1))
    assert january == date(2027, 1, 15)
    assert option_last_trade(es, january, march) == datetime(2027, 1, 15, 21, 0, tzinfo=UTC)  # 15:00 CT
    assert option_last_trade(es, march, march) == datetime(2027, 3, 19, 13, 30, tzinfo=UTC)  # 08:30 CDT
    market = _market()
    chain = market.option_chain(market.lookup(symbol="ES", sec_type="FUT", expiry=march))
    styles = {(o.expiry, o.exercise_style, o.trading_class) for o in chain}
    assert styles == {(date(2027, 1, 15), "european", "EW3"), (date(2027, 2, 19), "european", "EW3"),
                      (march, "american", "ES")}
    # A January gold option exercises into February's future and stops on 2026-12-28.
    february = market.lookup(symbol="GC", sec_type="FUT", expiry=future_expiry(gold, 2027, 2))
    assert sorted({o.expiry for o in market.option_chain(february)}) == [date(2026, 12, 28), date(2027, 1, 26)]


@pytest.mark.parametrize(
    ("symbol", "expiry", "moment"),
    [
        ("CL", date(2026, 12, 21), datetime(2026, 12, 21, 19, 30, tzinfo=UTC)),  # 13:30 CT
        ("GC", date(2026, 12, 29), datetime(2026, 12, 29, 18, 30, tzinfo=UTC)),  # 12:30 CT
        ("ZN", date(2027, 3, 19), datetime(2027, 3, 19, 17, 1, tzinfo=UTC)),  # 12:01 CDT
        ("6E", date(2027, 3, 15), datetime(2027, 3, 15, 14, 16, tzinfo=UTC)),  # 09:16 CDT
        ("HE", date(2026, 12, 14), datetime(2026, 12, 14, 18, 0, tzinfo=UTC)),  # 12:00 CT
    ],
)
def test_futures_stop_at_their_time_of_day(symbol, expiry, moment):
    assert expiry_moment(Instrument(symbol, "FUT", expiry, PRODUCTS[symbol].exchange, 1.0)) == moment


def test_every_product_lists_its_cycle_in_order():
    for product in PRODUCTS.values():
        months = [m for m in range(1, 13) if m in product.futures_months]
        assert months == sorted(product.futures_months), product.symbol
        for year in (2026, 2027):
            for month in product.futures_months:
                expiry = future_expiry(product, year, month)
                assert future_contract_month(product, expiry) == (year, month), product.symbol
                assert option_expiry(product, (year, month)) <= expiry, product.symbol
                if product.quarterly_option_last_trade_time != product.serial_time():
                    # the quarterly/serial time split relies on quarterly options expiring with the future
                    assert option_expiry(product, (year, month)) == expiry, product.symbol


# --- every product on the simulator ---------------------------------------------------------------


def _market() -> SimulatedMarket:
    return SimulatedMarket(SimConfig(anchor=datetime(2026, 1, 1, tzinfo=UTC)),
                           clock=SimClock.manual(datetime(2026, 11, 30, 15, 0, tzinfo=UTC)))


@pytest.mark.parametrize("symbol", sorted(PRODUCTS))
def test_every_product_trades_on_the_simulator(symbol):
    product, market = PRODUCTS[symbol], _market()
    futures = market.listed_futures(symbol)
    assert len(futures) == 4
    assert all(future_contract_month(product, f.expiry) is not None for f in futures)
    assert [f.expiry for f in futures] == sorted(f.expiry for f in futures)
    quote = market.quotes([futures[0]])[0]
    assert quote.bid < quote.ask and on_price_grid(product, quote.bid) and on_price_grid(product, quote.ask)
    # The simulated index is a random walk from the reference price on 2026-01-01: within four
    # standard deviations of it eleven months later.
    assert abs(math.log(quote.mid / product.reference_price)) < 4 * product.reference_vol * math.sqrt(11 / 12)
    future = next(f for f in futures if market.option_chain(f))
    step = MARKET_PARAMS[symbol].strike_step
    atm = round(market.quotes([future])[0].mid / step) * step
    call = next(o for o in market.option_chain(future) if o.strike == pytest.approx(atm) and o.right == "C")
    option_quote = market.quotes([call])[0]
    assert option_quote.ask > 0 and on_price_grid(product, option_quote.ask, kind="option")
    assert option_quote.bid is None or on_price_grid(product, option_quote.bid, kind="option")
    limit = price_round(product, option_quote.ask, kind="option", side="BUY")
    status = market.place_order(OrderRequest(client_order_id=f"buy-{symbol}", legs=(OrderLeg(call, "BUY", 1),),
                                             order_type="LMT", limit_price=limit))
    assert status.state == "filled", status
    assert market.positions()[0].instrument.key == call.key


def test_the_simulator_quotes_es_options_on_the_tiered_grid_and_refuses_prices_off_it():
    market = _market()
    chain = [o for future in market.listed_futures("ES") for o in market.option_chain(future)]
    asks = [q.ask for q in market.quotes(chain) if q.ask is not None]
    assert any(a <= 5.0 for a in asks) and any(a > 5.0 for a in asks)
    for ask in asks:
        tick = 0.05 if ask <= 5.0 else 0.25
        assert abs(ask / tick - round(ask / tick)) < 1e-9, ask
    expensive = next(o for o, q in zip(chain, market.quotes(chain), strict=True) if q.ask and q.ask > 20)
    with pytest.raises(SimulationError, match="0.05 up to 5, 0.25 above"):
        market.place_order(OrderRequest(client_order_id="off-grid", legs=(OrderLeg(expensive, "BUY", 1),),
                                        order_type="LMT", limit_price=20.10))


# --- the broker's own contract details ------------------------------------------------------------


def test_contract_details_that_agree_give_no_disagreement():
    es = PRODUCTS["ES"]
    assert contract_disagreements(es, option=False, exchange="CME", multiplier="50", min_tick=0.25,
                                  trading_class="ES", currency="USD") == []
    assert contract_disagreements(es, option=True, exchange="CME", multiplier=50.0, min_tick=0.05,
                                  trading_class="ES") == []
    assert contract_disagreements(es, option=True, trading_class="EW3") == []  # the serial class
    assert contract_disagreements(es, option=True) == []  # nothing given, nothing compared
    corn = PRODUCTS["ZC"]  # IB: multiplier 5000, price magnifier 100 (prices in cents)
    assert contract_disagreements(corn, option=False, multiplier="5000", price_magnifier=100, min_tick=0.25) == []


def test_each_disagreement_is_named():
    gc = PRODUCTS["GC"]
    problems = contract_disagreements(gc, option=True, exchange="NYMEX", multiplier=10.0, min_tick=0.05,
                                      trading_class="GC", currency="EUR")
    assert problems == [
        "GC option: exchange 'NYMEX', the table says 'COMEX'",
        "GC option: currency 'EUR', the table says 'USD'",
        "GC option: multiplier 10, the table says 100",
        "GC option: minimum tick 0.05, the table says 0.1",
        "GC option: trading class 'GC', the table says 'OG'",
    ]
    assert contract_disagreements(PRODUCTS["ZC"], option=False, multiplier=50, price_magnifier=1) == [
        "ZC future: multiplier 50, the table says 5000",
        "ZC future: price magnifier 1, the table says 100",
    ]


def test_tws_contract_details_are_checked_against_the_table():
    agreeing = ContractDetails(
        contract=Contract(secType="FOP", symbol="ES", exchange="CME", multiplier="50", currency="USD",
                          tradingClass="ES"), minTick=0.05, priceMagnifier=1)
    assert details_disagreements(agreeing) == []
    wrong = ContractDetails(
        contract=Contract(secType="FUT", symbol="ZN", exchange="CBOT", multiplier="100000", currency="USD",
                          tradingClass="ZN"), minTick=0.0078125, priceMagnifier=1)
    assert details_disagreements(wrong) == [
        "ZN future: multiplier 100000, the table says 1000",
        "ZN future: minimum tick 0.0078125, the table says 0.015625",
    ]
    unknown = ContractDetails(contract=Contract(secType="FUT", symbol="ZZ", exchange="CME"), minTick=1.0)
    assert details_disagreements(unknown) == []


def test_option_times_of_day_are_data():
    assert PRODUCTS["ES"].quarterly_option_last_trade_time == time(8, 30)
    assert PRODUCTS["ES"].serial_time() == time(15, 0)
    assert PRODUCTS["CL"].serial_time() == PRODUCTS["CL"].quarterly_option_last_trade_time == time(13, 30)


def test_the_simulator_keeps_each_product_to_its_sessions():
    # Closed-market simulation: corn pauses 07:45-08:30 CT between its night and day sessions,
    # live cattle trades only 08:30-13:05 CT, crude nearly around the clock.
    market = SimulatedMarket(SimConfig(anchor=datetime(2026, 1, 1, tzinfo=UTC), always_open=False),
                             clock=SimClock.manual(datetime(2026, 11, 24, 14, 0, tzinfo=UTC)))  # 08:00 CT
    assert not market.is_open("ZC") and not market.is_open("LE") and market.is_open("CL")
    market.clock.jump(datetime(2026, 11, 24, 15, 0, tzinfo=UTC))  # 09:00 CT
    assert market.is_open("ZC") and market.is_open("LE") and market.is_open("CL")
    market.clock.jump(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))  # 20:00 CT
    assert market.is_open("ZC") and not market.is_open("LE") and market.is_open("CL")
