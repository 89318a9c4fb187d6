"""IBKR's option chain is chosen by underlying future, serial months included (issue 14 item 7):
IBKRBroker through the real ib_async client against the fake TWS."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from brokers.contracts import hedge_future_select, option_underlyings
from brokers.ibkr import IBKRBroker
from brokers.ibkr.chain import ChainRow, chain_expiries
from brokers.tests.fake_tws import FakeTWS
from brokers.tests.test_ibkr import config_for

ES_H7, ES_M7 = 1001, 1002  # March and June 2027 E-mini futures
# expiry -> (future it delivers, trading class): March options expire with their future; April and
# May are serial months on June; EW1 is a weekly class on June that must not be mixed in.
OPTIONS = {
    "20270319": (ES_H7, "ES"), "20270416": (ES_M7, "ES"), "20270521": (ES_M7, "ES"),
    "20270618": (ES_M7, "ES"), "20270409": (ES_M7, "EW1"),
}


@pytest.fixture
def fake() -> Iterator[FakeTWS]:
    tws = FakeTWS()
    tws.list_future(con_id=ES_H7, symbol="ES", last_trade_date="20270319", exchange="CME",
                    multiplier=50)
    tws.list_future(con_id=ES_M7, symbol="ES", last_trade_date="20270618", exchange="CME",
                    multiplier=50)
    con_id = 5000
    for expiry, (future, trading_class) in OPTIONS.items():
        for strike in (5900.0, 6000.0, 6100.0):
            for right in "CP":
                con_id += 1
                tws.list_option(con_id=con_id, under_con_id=future, last_trade_date=expiry,
                                strike=strike, right=right, trading_class=trading_class)
    tws.start()
    yield tws
    bad = tws.bad_requests
    tws.close()
    assert bad == []


@pytest.fixture
def broker(fake: FakeTWS) -> Iterator[IBKRBroker]:
    ibkr = IBKRBroker(config_for(fake.port, underlying_expiry="202706"))
    ibkr.connect()
    yield ibkr
    ibkr.disconnect()


def test_the_chain_of_a_future_includes_its_serial_months(fake: FakeTWS,
                                                           broker: IBKRBroker) -> None:
    june = broker.underlying()
    chain = broker.option_chain(june)
    assert sorted({o.expiry for o in chain}) == [date(2027, 4, 16), date(2027, 5, 21),
                                                 date(2027, 6, 18)]
    assert {o.trading_class for o in chain} == {"ES"}  # not the weekly EW1
    assert {o.underlying_expiry for o in chain} == {date(2027, 6, 18)}
    assert len(chain) == 3 * 6
    (secdef,) = fake.messages(78)
    assert secdef[2:6] == ["ES", "CME", "FUT", str(ES_M7)]
    # one contract-details request per expiry, never one per option
    fop_lookups = [m for m in fake.messages(9) if m[5] == "FOP"]
    assert sorted(m[6] for m in fop_lookups) == ["20270416", "20270521", "20270618"]


def test_the_agents_window_reaches_serial_options_through_the_later_future(
        broker: IBKRBroker) -> None:
    today = date(2027, 3, 1)  # March options 18 days out: under a 20-60 day window
    futures = broker.listed_futures("ES")
    hedge = hedge_future_select(futures, today=today, chosen_expiry=None).future
    options = [option for future in option_underlyings(futures, hedge=hedge, today=today,
                                                       dte_max=60)
               for option in broker.option_chain(future)]
    in_window = sorted({o.expiry for o in options if 20 <= (o.expiry - today).days <= 60})
    assert in_window == [date(2027, 4, 16)]  # the April serial, on the June future


def test_chain_rows_of_another_exchange_class_or_future_are_left_out() -> None:
    rows = [ChainRow("CME", 7, "ES", "50", ("20270416", "20270618")),
            ChainRow("CME", 7, "EW1", "50", ("20270409",)),
            ChainRow("CBOT", 7, "ES", "50", ("20270521",)),
            ChainRow("CME", 8, "ES", "50", ("20270319",))]
    assert chain_expiries(rows, exchange="CME", trading_class="ES", underlying_con_id=7) == [
        ("ES", "20270416"), ("ES", "20270618")]
