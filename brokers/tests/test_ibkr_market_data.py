"""Market-data lines and data types: IBKRBroker through the real ib_async client against the fake
TWS (brokers/ibkr/market_data.py)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date

import pytest
from django.test import override_settings

from brokers.domain import BrokerError, Instrument
from brokers.ibkr import IBKRBroker
from brokers.tests.fake_tws import FakeTWS
from brokers.tests.test_ibkr import config_for

ES_FUT = 1001
STRIKES = [5000.0 + 25 * i for i in range(41)]  # 41 strikes, calls and puts: 82 options


def _con_id(strike: float, right: str) -> int:
    return 200_000 + int(strike) * 10 + (1 if right == "C" else 2)


@pytest.fixture
def fake() -> Iterator[FakeTWS]:
    tws = FakeTWS(market_data_lines=100)
    tws.list_future(con_id=ES_FUT, symbol="ES", last_trade_date="20270319", exchange="CME",
                    multiplier=50)
    tws.set_quote(ES_FUT, bid=6000.0, ask=6000.25)
    for strike in STRIKES:
        for right in "CP":
            con_id = _con_id(strike, right)
            tws.list_option(con_id=con_id, under_con_id=ES_FUT, last_trade_date="20270319",
                            strike=strike, right=right, trading_class="ES")
            tws.set_quote(con_id, bid=10.0, ask=10.5)
            tws.set_greeks(con_id, implied_vol=0.2, delta=0.3 if right == "C" else -0.3,
                           gamma=0.001, vega=5.0, theta=-1.0, option_price=10.25,
                           underlying_price=6000.125)
    tws.start()
    yield tws
    bad = tws.bad_requests
    tws.close()
    assert bad == []


def _lines_released(fake: FakeTWS) -> bool:
    """Every line given back (the cancels may still be in flight when quotes() returns)."""
    deadline = time.monotonic() + 5
    while fake.lines_in_use and time.monotonic() < deadline:
        time.sleep(0.01)
    return fake.lines_in_use == 0


def _broker(fake: FakeTWS, **overrides: object) -> IBKRBroker:
    broker = IBKRBroker(config_for(fake.port, **overrides))
    broker.connect()
    return broker


def _options() -> list[Instrument]:
    return [Instrument("ES", "FOP", date(2027, 3, 19), "CME", 50.0, strike=strike, right=right,
                       trading_class="ES", underlying_expiry=date(2027, 3, 19),
                       broker_ref=str(_con_id(strike, right)))
            for strike in STRIKES for right in "CP"]


def test_quotes_stay_within_the_line_budget_and_release_every_line(fake: FakeTWS) -> None:
    broker = _broker(fake, market_data_lines=20)
    try:
        quotes = broker.quotes(_options())
        assert _lines_released(fake)  # while still connected
    finally:
        broker.disconnect()
    assert len(quotes) == 82 and all(q.bid == 10.0 and q.greeks is not None for q in quotes)
    assert [q.instrument for q in quotes] == _options()
    assert fake.max_lines_used == 20
    assert len(fake.messages(2)) == len(fake.messages(1)) == 82  # each subscription cancelled


def test_a_smaller_account_than_configured_shrinks_the_batches_instead_of_failing(
        fake: FakeTWS) -> None:
    fake.market_data_lines = 30  # TWS's windows hold the rest of a 100-line account
    broker = _broker(fake, market_data_lines=80)
    try:
        quotes = broker.quotes(_options())
        assert _lines_released(fake)
    finally:
        broker.disconnect()
    assert len(quotes) == 82 and all(q.bid == 10.0 for q in quotes)
    assert fake.max_lines_used == 30


def test_no_free_line_at_all_is_a_retryable_error(fake: FakeTWS) -> None:
    fake.market_data_lines = 0
    broker = _broker(fake)
    try:
        with pytest.raises(BrokerError) as e:
            broker.quotes(_options()[:3])
    finally:
        broker.disconnect()
    assert (e.value.code, e.value.retryable, e.value.context["ib_code"]) == (
        "max_tickers_reached", True, 101)


def test_a_second_quote_never_starts_from_the_previous_subscriptions_prices(
        fake: FakeTWS) -> None:
    broker = _broker(fake)
    try:
        option = _options()[0]
        assert broker.quotes([option])[0].bid == 10.0
        fake.set_quote(int(option.broker_ref), bid=11.0, ask=11.5)
        fake.set_greeks(int(option.broker_ref), implied_vol=0.2, delta=0.3, gamma=0.001,
                        vega=5.0, theta=-1.0, option_price=11.25, underlying_price=6000.125)
        (again,) = broker.quotes([option])
    finally:
        broker.disconnect()
    assert (again.bid, again.ask) == (11.0, 11.5)


def test_live_data_is_asked_for_and_labelled(fake: FakeTWS) -> None:
    broker = _broker(fake)
    try:
        (quote,) = broker.quotes(_options()[:1])
    finally:
        broker.disconnect()
    assert quote.data_type == "live"
    assert fake.messages(59)[-1][2] == "2"  # reqMarketDataType: live, frozen when closed


def test_an_account_without_live_data_gets_delayed_quotes_when_the_setting_allows(
        fake: FakeTWS) -> None:
    fake.set_market_data(subscribed=False)
    broker = _broker(fake, market_data_fallback="delayed", underlying_expiry="202703")
    try:
        future = broker.underlying()
        quotes = broker.quotes([future, *_options()[:2]])
    finally:
        broker.disconnect()
    assert fake.messages(59)[-1][2] == "3"
    assert [q.data_type for q in quotes] == ["delayed"] * 3  # 10167 is a notice, not a failure
    assert (quotes[0].bid, quotes[0].ask) == (6000.0, 6000.25)
    assert quotes[1].greeks is not None and quotes[1].greeks.delta == 0.3  # delayed model tick 83


def test_without_a_delayed_fallback_354_leaves_the_instrument_unpriced_not_failed(
        fake: FakeTWS) -> None:
    fake.set_market_data(subscribed=False)
    broker = _broker(fake)  # the default fallback is frozen, which needs the subscription too
    try:
        quotes = broker.quotes(_options()[:2])
        assert _lines_released(fake)
    finally:
        broker.disconnect()
    assert [(q.data_type, q.bid, q.ask) for q in quotes] == [("none", None, None)] * 2
    assert fake.messages(2) == []  # refused subscriptions are not cancelled (TWS would say 300)


def test_a_closed_market_serves_frozen_quotes(fake: FakeTWS) -> None:
    fake.set_market_data(subscribed=True, market_open=False)
    broker = _broker(fake)
    try:
        (quote,) = broker.quotes(_options()[:1])
    finally:
        broker.disconnect()
    assert (quote.data_type, quote.bid) == ("frozen", 10.0)
    fake.set_market_data(subscribed=False, market_open=False)
    broker = _broker(fake, market_data_fallback="delayed_frozen")
    try:
        (quote,) = broker.quotes(_options()[:1])
    finally:
        broker.disconnect()
    assert (quote.data_type, quote.bid) == ("delayed_frozen", 10.0)


@pytest.mark.parametrize(("fallback", "shown"), [("delayed", "delayed"), ("frozen", "none")])
def test_positions_of_an_account_without_live_data_say_what_each_quote_is(
        api, alpha, fake: FakeTWS, fallback: str, shown: str) -> None:
    from tradingplatform.testing import bearer

    fake.set_market_data(subscribed=False)
    call = _con_id(6000.0, "C")
    fake.drop_greeks(call)  # IB's model sent nothing: the platform's own values the leg
    fake.set_position(call, -2, 10.0)
    fake.set_position(ES_FUT, 1, 5990.0)
    credentials = {"host": "127.0.0.1", "port": fake.port, "client_id": 9,
                   "underlying_instrument": "ES", "underlying_expiry": "202703",
                   "connect_retries": 0, "market_data_fallback": fallback}
    # a direct connection: the session process has its own tests (test_ibkr_session.py)
    with override_settings(USE_MOCK_BROKER=False, IBKR_SESSION_PROCESS=False):
        connected = api.post(f"/clients/{alpha.client_id}/connect-broker",
                             {"broker": "ibkr", "credentials": credentials}, format="json",
                             **bearer(alpha.owner))
        assert connected.json()["connected"] is True, connected.content
        response = api.get("/clients/alpha/positions", **bearer(alpha.viewer))
    assert response.status_code == 200, response.content
    legs = {leg["instrument"]["sec_type"]: leg for leg in response.json()["legs"]}
    assert {leg["market_data"] for leg in legs.values()} == {shown}
    if shown == "delayed":
        assert legs["FOP"]["mark"] == 10.25 and legs["FUT"]["mark"] == 6000.125
        assert legs["FOP"]["greeks"]["source"] == "model"
        assert legs["FOP"]["greeks"]["delta"] is not None
    else:  # unpriced, but the book is there
        assert legs["FOP"]["mark"] is None and legs["FOP"]["quantity"] == -2


def test_no_order_is_sent_on_delayed_quotes(api, alpha, fake: FakeTWS) -> None:
    """Delayed data shows the book; it never prices an order (its age is unknown: stale)."""
    from django_tenants.utils import tenant_context

    from brokers.domain import OrderLeg, OrderRequest
    from risk.governor import ReasonCode
    from risk.services import Actor, order_submit
    from tradingplatform.testing import bearer

    fake.set_market_data(subscribed=False)
    credentials = {"host": "127.0.0.1", "port": fake.port, "client_id": 9,
                   "underlying_instrument": "ES", "underlying_expiry": "202703",
                   "connect_retries": 0, "market_data_fallback": "delayed"}
    with override_settings(USE_MOCK_BROKER=False):
        api.post(f"/clients/{alpha.client_id}/connect-broker",
                 {"broker": "ibkr", "credentials": credentials}, format="json",
                 **bearer(alpha.owner))
        with tenant_context(alpha.client):
            result = order_submit(client=alpha.client, actor=Actor("user", "test"), order=OrderRequest(
                client_order_id="on-delayed", legs=(OrderLeg(_options()[0], "BUY", 1),),
                order_type="LMT", limit_price=10.5))
    assert not result.accepted
    assert ReasonCode.STALE_QUOTE in result.decision.codes
    assert fake.messages(3) == []


def test_many_small_batches_get_the_time_they_need(fake: FakeTWS) -> None:
    """Options without IB greeks are read until the wait is over: 21 batches of 4 take longer than
    one request's timeout, and the call's own timeout grows with its batches."""
    options = _options()
    for option in options:
        fake.drop_greeks(int(option.broker_ref))
    broker = _broker(fake, market_data_lines=4, market_data_wait_seconds=0.3,
                     request_timeout_seconds=3.0)
    try:
        quotes = broker.quotes(options)
    finally:
        broker.disconnect()
    assert len(quotes) == 82 and all(q.bid == 10.0 and q.greeks is None for q in quotes)
    assert fake.max_lines_used == 4


@override_settings(USE_MOCK_BROKER=False)
def test_an_option_ib_prices_only_by_its_model_is_valued_by_ours(api, alpha, fake: FakeTWS) -> None:
    from tradingplatform.testing import bearer

    untraded = 299_999
    fake.list_option(con_id=untraded, under_con_id=ES_FUT, last_trade_date="20270319",
                     strike=7000.0, right="C", trading_class="ES")
    fake.set_greeks(untraded, implied_vol=0.25, delta=0.02, gamma=0.0001, vega=0.5, theta=-0.1,
                    option_price=1.1, underlying_price=6000.125)  # no bid, ask or last
    fake.set_position(untraded, -3, 2.0)
    credentials = {"host": "127.0.0.1", "port": fake.port, "client_id": 9,
                   "underlying_instrument": "ES", "underlying_expiry": "202703",
                   "connect_retries": 0}
    api.post(f"/clients/{alpha.client_id}/connect-broker",
             {"broker": "ibkr", "credentials": credentials}, format="json", **bearer(alpha.owner))
    response = api.get("/clients/alpha/positions", **bearer(alpha.viewer))
    assert response.status_code == 200, response.content
    (leg,) = response.json()["legs"]
    assert leg["market_data"] == "model"
    assert leg["mark"] > 0 and leg["unrealized_pnl"] is not None


def test_an_instrument_asked_twice_takes_one_line_and_gives_it_back(fake: FakeTWS) -> None:
    broker = _broker(fake)
    try:
        option = _options()[0]
        quotes = broker.quotes([option, option])
        assert _lines_released(fake)
    finally:
        broker.disconnect()
    assert [q.bid for q in quotes] == [10.0, 10.0]
    assert len(fake.messages(1)) == len(fake.messages(2)) == 1
