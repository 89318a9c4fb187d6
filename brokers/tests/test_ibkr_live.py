"""IB's states and limits, through the real ib_async client against the loopback fake TWS: the
link lost at the handshake, pacing, a hung gateway, client-id collision, 10197 and farm notices,
the order account, permId, and orders IB misreports as dead."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import date

import pytest
from ib_async import IB

from brokers.domain import BrokerError, Instrument, OrderLeg, OrderRequest
from brokers.ibkr import IBKRBroker, IBKRConfig
from brokers.tests.fake_tws import ErrorButWorking, FakeTWS, InactiveButWorking, Reject, Rest

ES_FUT = 1001
STRIKES = range(5000, 6250, 50)  # 25 listed calls


def listed(tws: FakeTWS) -> FakeTWS:
    tws.list_future(con_id=ES_FUT, symbol="ES", last_trade_date="20271217", exchange="CME",
                    multiplier=50)
    for i, strike in enumerate(STRIKES):
        tws.list_option(con_id=2000 + i, under_con_id=ES_FUT, last_trade_date="20271217",
                        strike=strike, right="C", trading_class="ES")
        tws.set_quote(2000 + i, bid=100.0 + i, ask=101.0 + i)
        tws.set_greeks(2000 + i, implied_vol=0.2, delta=0.5, gamma=0.001, vega=10.0, theta=-1.0,
                       option_price=100.5 + i, underlying_price=6000.0)
    return tws.start()


@pytest.fixture
def fake() -> Iterator[FakeTWS]:
    tws = listed(FakeTWS())
    yield tws
    tws.close()


def make_broker(port: int, **overrides: object) -> IBKRBroker:
    values: dict[str, object] = dict(
        host="127.0.0.1", port=port, client_id=7, underlying_instrument="ES",
        underlying_expiry="202712", connect_retries=0, request_timeout_seconds=3.0,
        order_ack_timeout_seconds=3.0, market_data_wait_seconds=2.0)
    values.update(overrides)
    return IBKRBroker(IBKRConfig(**values))  # type: ignore[arg-type]


@pytest.fixture
def broker(fake: FakeTWS) -> Iterator[IBKRBroker]:
    ibkr = make_broker(fake.port)
    ibkr.connect()
    yield ibkr
    ibkr.disconnect()


def call_option(strike: float) -> Instrument:
    index = list(STRIKES).index(strike)
    return Instrument("ES", "FOP", date(2027, 12, 17), "CME", 50.0, strike=float(strike), right="C",
                      trading_class="ES", underlying_expiry=date(2027, 12, 17),
                      broker_ref=str(2000 + index))


def buy(cid: str, strike: float = 6000, price: float = 100.5) -> OrderRequest:
    return OrderRequest(cid, (OrderLeg(call_option(strike), "BUY", 1),), "LMT", price)


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20  # a failure guard, not a measure
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


# ---------------------------------------------------------------- item 1: link down at handshake

def test_a_link_lost_during_the_handshake_holds_every_order_until_ib_is_back(fake: FakeTWS) -> None:
    fake.set_link(up=False)
    ibkr = make_broker(fake.port)
    try:
        ibkr.connect()  # TWS answers; its link to IB does not
        health = ibkr.health()
        assert not health.connected and "1100" in health.detail
        with pytest.raises(BrokerError) as e:
            ibkr.place_order(buy("during-1100"))
        assert (e.value.code, e.value.retryable) == ("connectivity_lost", True)
        assert fake.messages(3) == []  # nothing went out blind
        fake.set_link(up=True)
        eventually(lambda: ibkr.health().connected, "1102 did not restore the link")
        try:
            assert ibkr.place_order(buy("after-1102")).state == "filled"
        except BrokerError as unknown:
            # Once in a CI run the acknowledgement, racing the resynchronisation 1102 starts, took
            # longer than the order's ack timeout: the platform's rule is then to ask, never to send
            # again, and the order must be found filled.
            assert unknown.code == "order_outcome_unknown", unknown
            eventually(lambda: getattr(ibkr.order_status("after-1102"), "state", None) == "filled",
                       "the order placed after 1102 was not found filled")
        assert len(fake.messages(3)) == 1
    finally:
        ibkr.disconnect()


# ---------------------------------------------------------------- item 3: pacing at the wire

def test_the_fake_is_as_strict_as_ib_about_pacing(fake: FakeTWS) -> None:
    ib = IB()
    ib.client.MaxRequests = 0  # no pacing at all: what a burst of fresh sessions amounted to
    ib.connect("127.0.0.1", fake.port, clientId=99, timeout=5)
    try:
        for _ in range(80):
            ib.client.reqCurrentTime()
        eventually(lambda: fake.pacing_violations > 0, "the fake let 80 messages in a second pass")
    finally:
        ib.disconnect()


def test_every_message_cancels_included_stays_under_fifty_in_any_second(fake: FakeTWS,
                                                                         broker: IBKRBroker) -> None:
    chain = [call_option(s) for s in STRIKES]
    sent_before = sum(len(fake.messages(m)) for m in (1, 2, 49))

    def quote_twice(instruments: list[Instrument]) -> None:
        broker.quotes(instruments)
        broker.quotes(instruments)

    slices = [chain[0:9], chain[9:17], chain[17:25]]  # one line per contract at a time
    workers = [threading.Thread(target=quote_twice, args=(s,)) for s in slices]
    workers += [threading.Thread(target=broker.health) for _ in range(60)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    market_data, cancels, pings = (len(fake.messages(m)) for m in (1, 2, 49))
    assert (market_data, cancels) == (50, 50) and pings >= 60  # reqMktData, cancelMktData, time
    assert market_data + cancels + pings - sent_before > 150  # far above one second's allowance
    assert fake.pacing_violations == 0
    assert fake.max_messages_per_second <= 50


# ---------------------------------------------------------------- item 8: a hung gateway

def test_a_gateway_that_never_completes_the_handshake_fails_the_connect_in_bounded_time(
        fake: FakeTWS) -> None:
    fake.hang_handshake = True
    ibkr = make_broker(fake.port, request_timeout_seconds=0.5, connect_retries=1,
                       connect_backoff_seconds=0.01)
    try:
        with pytest.raises(BrokerError) as e:
            ibkr.connect()
        assert (e.value.code, e.value.retryable) == ("connect_failed", True)
        assert e.value.context["attempts"] == 2
    finally:
        ibkr.disconnect()


# ---------------------------------------------------------------- rules

def test_a_client_id_in_use_moves_to_the_next_one(fake: FakeTWS, broker: IBKRBroker) -> None:
    second = make_broker(fake.port)  # also asks for client id 7
    try:
        second.connect()
        assert (broker.client_id, second.client_id) == (7, 8)
        assert fake.connected_clients == 2
        assert second.health().connected
    finally:
        second.disconnect()


def test_competing_session_and_farm_notices_show_and_the_model_values(fake: FakeTWS,
                                                                      broker: IBKRBroker) -> None:
    (quote,) = broker.quotes([call_option(6000)])
    assert quote.greeks is not None and quote.greeks.source == "broker"
    fake.send_error(2103, "Market data farm connection is broken:usfarm")
    fake.send_error(10197, "No market data during competing live session")
    eventually(lambda: "usfarm" in broker.health().detail, "farm notice not in health")
    health = broker.health()
    assert health.connected and "10197" in health.detail
    (quote,) = broker.quotes([call_option(6000)])
    assert quote.greeks is None  # the book is valued with the model's greeks
    fake.send_error(2104, "Market data farm connection is OK:usfarm")
    eventually(lambda: "usfarm" not in broker.health().detail, "farm recovery not seen")


def test_every_order_names_the_account(fake: FakeTWS, broker: IBKRBroker) -> None:
    status = broker.place_order(buy("with-account"))
    (sent,) = fake.messages(3)
    assert "DU1234567" in sent
    (order,) = fake.orders
    assert status.broker_perm_id == str(order.perm_id) and status.broker_order_id == str(order.order_id)


def test_an_advisor_login_needs_the_account_and_sends_it() -> None:
    with listed(FakeTWS(account="DF100,DU111,DU222")) as tws:
        unnamed = make_broker(tws.port)
        unnamed.connect()
        try:
            with pytest.raises(BrokerError) as e:
                unnamed.place_order(buy("which-account"))
            assert (e.value.code, e.value.retryable) == ("account_required", False)
            assert tws.messages(3) == []
        finally:
            unnamed.disconnect()
        named = make_broker(tws.port, account="DU222")
        named.connect()
        try:
            named.place_order(buy("to-du222"))
            (sent,) = tws.messages(3)
            assert "DU222" in sent and "DU111" not in sent
        finally:
            named.disconnect()


@pytest.mark.parametrize("misreport", [InactiveButWorking(), ErrorButWorking()])
def test_an_order_reported_dead_is_asked_for_by_order_ref_before_it_is_believed(
        fake: FakeTWS, broker: IBKRBroker, misreport: object) -> None:
    completed_asks = len(fake.messages(99))
    fake.script_next_order(misreport)  # type: ignore[arg-type]
    status = broker.place_order(buy("still-working"))
    assert status.state == "submitted"  # what TWS says when asked, not the misreport
    assert len(fake.messages(99)) > completed_asks
    assert broker.order_status("still-working").state == "submitted"  # type: ignore[union-attr]
    assert len(fake.messages(3)) == 1


def test_a_real_rejection_is_still_a_rejection(fake: FakeTWS, broker: IBKRBroker) -> None:
    fake.script_next_order(Reject(201, "Order rejected - reason: margin"))
    with pytest.raises(BrokerError) as e:
        broker.place_order(buy("rejected"))
    assert (e.value.code, e.value.retryable) == ("order_rejected", False)


def test_a_working_order_that_never_fills_stays_working(fake: FakeTWS, broker: IBKRBroker) -> None:
    fake.script_next_order(Rest())
    assert broker.place_order(buy("resting")).state == "submitted"
    assert broker.order_status("resting").state == "submitted"  # type: ignore[union-attr]
    assert broker.place_order(buy("resting")).state == "submitted"
    assert len(fake.messages(3)) == 1


def test_an_order_placed_under_a_client_id_now_taken_is_still_found(fake: FakeTWS) -> None:
    first = make_broker(fake.port)
    first.connect()
    fake.script_next_order(Rest())
    first.place_order(buy("by-client-7"))
    first.disconnect()
    squatter = IB()  # another program now holds client id 7
    squatter.connect("127.0.0.1", fake.port, clientId=7, timeout=5)
    second = make_broker(fake.port)
    try:
        second.connect()
        assert second.client_id == 8
        status = second.place_order(buy("by-client-7"))  # the retry of an unknown outcome
        assert status.state == "submitted"
        assert len(fake.messages(3)) == 1  # found among every client's open orders, not resent
    finally:
        second.disconnect()
        squatter.disconnect()
