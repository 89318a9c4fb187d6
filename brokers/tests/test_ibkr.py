"""IBKRBroker through the real ib_async client, over TCP, against the loopback fake TWS."""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from ib_async import IB, Contract, LimitOrder

from brokers.domain import BrokerError, Instrument, OrderLeg, OrderRequest
from brokers.ibkr import IBKRBroker, IBKRConfig
from brokers.tests.fake_tws import FakeTWS, Fill, Reject, Rest

ES_FUT, ES_C6000, ES_C6100, CL_FUT = 1001, 2001, 2002, 3001


@pytest.fixture
def fake() -> Iterator[FakeTWS]:
    tws = FakeTWS()
    tws.list_future(con_id=ES_FUT, symbol="ES", last_trade_date="20271217", exchange="CME",
                    multiplier=50)
    tws.list_future(con_id=1000, symbol="ES", last_trade_date="20270917", exchange="CME",
                    multiplier=50)
    tws.list_option(con_id=ES_C6000, under_con_id=ES_FUT, last_trade_date="20271217",
                    strike=6000, right="C", trading_class="ES")
    tws.list_option(con_id=ES_C6100, under_con_id=ES_FUT, last_trade_date="20271217",
                    strike=6100, right="C", trading_class="ES")
    tws.list_future(con_id=CL_FUT, symbol="CL", last_trade_date="20271119", exchange="NYMEX",
                    multiplier=1000)
    tws.start()
    yield tws
    bad = tws.bad_requests
    tws.close()
    assert bad == []  # every request ib_async sent was read field by field at server version 178


def config_for(port: int, **overrides: object) -> IBKRConfig:
    values: dict[str, object] = dict(
        host="127.0.0.1", port=port, client_id=7, underlying_instrument="ES",
        underlying_expiry="202712", connect_retries=0, connect_backoff_seconds=0.05,
        request_timeout_seconds=3.0, order_ack_timeout_seconds=3.0,
        market_data_wait_seconds=2.0)
    values.update(overrides)
    return IBKRConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def broker(fake: FakeTWS) -> Iterator[IBKRBroker]:
    ibkr = IBKRBroker(config_for(fake.port, connect_retries=5))
    ibkr.connect()
    yield ibkr
    ibkr.disconnect()


def option(broker: IBKRBroker, strike: float) -> Instrument:
    return broker.lookup_instrument(symbol="ES", sec_type="FOP", expiry=date(2027, 12, 17),
                                    strike=strike, right="C")


def buy(instrument: Instrument, cid: str, price: float = 100.5, qty: int = 2) -> OrderRequest:
    return OrderRequest(cid, (OrderLeg(instrument, "BUY", qty),), "LMT", price)


def test_connects_with_the_tws_handshake_and_reports_health(fake: FakeTWS,
                                                            broker: IBKRBroker) -> None:
    health = broker.health()
    assert health.connected and "178" in health.detail
    assert fake.connected_clients == 1
    assert fake.messages(71)[0][2] == "7"  # startApi carried our client id


def test_the_fake_reads_requests_like_tws_178(fake: FakeTWS) -> None:
    ib = IB()
    errors: list[tuple[int, str]] = []
    ib.errorEvent += lambda req_id, code, message, contract: errors.append((code, message))
    ib.connect("127.0.0.1", fake.port, clientId=31, timeout=5)
    try:
        assert ib.client.serverVersion() == 178
        ib.client.send(49)  # reqCurrentTime without its version field
        ib.client.send(9999, 1)  # no such request
        ib.client.send(2, 2, 777)  # cancelMktData of a ticker never requested
        deadline = time.monotonic() + 5
        while len(errors) < 3 + 3 and time.monotonic() < deadline:  # 3 farm notices first
            ib.sleep(0.05)
        codes = [code for code, _ in errors]
        assert codes[:3] == [2104, 2106, 2158]
        assert sorted(codes[3:]) == [300, 320, 320]
        assert len(fake.bad_requests) == 2
        fake.script_next_order(Rest())
        trade = ib.placeOrder(Contract(conId=ES_C6000, exchange="CME"), LimitOrder("BUY", 1, 5.0))
        while trade.orderStatus.status != "Submitted" and time.monotonic() < deadline + 5:
            ib.sleep(0.05)
        ib.reqGlobalCancel()
        while not trade.isDone() and time.monotonic() < deadline + 10:
            ib.sleep(0.05)
        assert trade.orderStatus.status == "Cancelled"
        second = IB()
        with pytest.raises((ConnectionError, TimeoutError)):
            second.connect("127.0.0.1", fake.port, clientId=31, timeout=2)  # 326: id in use
        second.disconnect()
    finally:
        ib.disconnect()
    fake.forget_bad_requests()  # the two above were deliberate


def test_calls_before_connect_fail_without_retry(fake: FakeTWS) -> None:
    ibkr = IBKRBroker(config_for(fake.port))
    with pytest.raises(BrokerError) as e:
        ibkr.positions()
    assert (e.value.code, e.value.retryable) == ("not_connected", False)
    assert not ibkr.health().connected


def test_connect_retries_while_the_port_refuses(fake: FakeTWS) -> None:
    fake.stop()
    placeholder = socket.socket()  # bound but not listening: connections are refused
    placeholder.bind(("127.0.0.1", 0))
    port = placeholder.getsockname()[1]
    first_refusal = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "connect attempt 1/" in record.getMessage():
                first_refusal.set()

    watch = Watch()
    logging.getLogger("brokers.ibkr.broker").addHandler(watch)
    ibkr = IBKRBroker(config_for(port, connect_retries=8, connect_backoff_seconds=0.05))
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(_attempt(ibkr.connect)))
    try:
        worker.start()
        assert first_refusal.wait(10)
        placeholder.close()
        fake.start(port)
        worker.join(30)
        assert outcome == [None]
        assert ibkr.health().connected
    finally:
        logging.getLogger("brokers.ibkr.broker").removeHandler(watch)
        ibkr.disconnect()


def _attempt(call: object) -> object:
    try:
        call()  # type: ignore[operator]
    except BrokerError as e:
        return e
    return None


def test_connect_gives_up_with_a_retryable_error() -> None:
    placeholder = socket.socket()
    placeholder.bind(("127.0.0.1", 0))
    try:
        ibkr = IBKRBroker(config_for(placeholder.getsockname()[1], connect_retries=1))
        with pytest.raises(BrokerError) as e:
            ibkr.connect()
        assert (e.value.code, e.value.retryable) == ("connect_failed", True)
        assert e.value.context["attempts"] == 2
        ibkr.disconnect()
    finally:
        placeholder.close()


def test_lookup_builds_cme_contracts_with_trading_class_and_multiplier(
        fake: FakeTWS, broker: IBKRBroker) -> None:
    call = option(broker, 6000)
    assert (call.broker_ref, call.exchange, call.trading_class, call.multiplier) == (
        str(ES_C6000), "CME", "ES", 50.0)
    assert call.underlying_expiry == date(2027, 12, 17)
    assert call.exercise_style == "american"
    sent = fake.messages(9)[-2]  # the FOP lookup (the last one resolved its underlying)
    # contract fields: conId, symbol, secType, expiry, strike, right, multiplier, exchange, ...
    assert sent[4:11] == ["ES", "FOP", "20271217", "6000.0", "C", "50", "CME"]
    assert sent[14] == "ES"
    assert all("GLOBEX" not in "".join(f) for f in fake.messages(9))


def test_front_future_and_nymex_routing(fake: FakeTWS, broker: IBKRBroker) -> None:
    front = broker.lookup_instrument(symbol="ES", sec_type="FUT")
    assert (front.expiry, front.broker_ref) == (date(2027, 9, 17), "1000")
    crude = broker.lookup_instrument(symbol="CL", sec_type="FUT")
    assert (crude.exchange, crude.multiplier) == ("NYMEX", 1000.0)
    assert fake.messages(9)[-1][10] == "NYMEX"
    assert broker.underlying().broker_ref == str(ES_FUT)


def test_exchange_override_is_sent_to_ib(fake: FakeTWS) -> None:
    ibkr = IBKRBroker(config_for(fake.port, exchange_overrides={"CL": "CME"}))
    ibkr.connect()
    try:
        with pytest.raises(BrokerError) as e:
            ibkr.lookup_instrument(symbol="CL", sec_type="FUT")
        assert (e.value.code, e.value.retryable) == ("unknown_contract", False)
        assert fake.messages(9)[-1][10] == "CME"
    finally:
        ibkr.disconnect()


def test_single_leg_order_fills_with_commission(fake: FakeTWS, broker: IBKRBroker) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    call = option(broker, 6000)
    status = broker.place_order(buy(call, "cid-1"))
    assert status.client_order_id == "cid-1"
    assert (status.state, status.filled_quantity, status.average_fill_price) == ("filled", 2, 100.5)
    sent = fake.messages(3)[0]
    assert (sent[2], sent[16], sent[17], sent[18], sent[26]) == (
        str(ES_C6000), "BUY", "2", "LMT", "cid-1")
    (fill,) = broker.fills_since(since)
    assert (fill.client_order_id, fill.instrument, fill.side, fill.quantity, fill.price,
            fill.commission) == ("cid-1", call, "BUY", 2, 100.5, 2.5)
    assert fill.realized_pnl is None
    (position,) = broker.positions()
    assert (position.instrument, position.quantity, position.average_price) == (call, 2, 100.5)


def test_combo_order_goes_out_as_one_bag(fake: FakeTWS, broker: IBKRBroker) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    low, high = option(broker, 6000), option(broker, 6100)
    fake.script_next_order(Fill(price=40.0, leg_prices={ES_C6000: 100.0, ES_C6100: 60.0}))
    spread = OrderRequest("spread-1", (OrderLeg(low, "BUY", 2), OrderLeg(high, "SELL", 2)),
                          "LMT", 40.0)
    status = broker.place_order(spread)
    assert (status.state, status.filled_quantity, status.average_fill_price) == ("filled", 2, 40.0)
    sent = fake.messages(3)[0]
    assert (sent[4], sent[9], sent[16], sent[17]) == ("BAG", "CME", "BUY", "2")
    assert int(sent[35]) == 2
    assert sent[36:40] == [str(ES_C6000), "1", "BUY", "CME"]
    assert sent[44:48] == [str(ES_C6100), "1", "SELL", "CME"]
    fills = broker.fills_since(since)
    assert sorted((f.instrument.strike, f.side, f.quantity, f.price) for f in fills) == [
        (6000.0, "BUY", 2, 100.0), (6100.0, "SELL", 2, 60.0)]


@pytest.mark.parametrize(("ib_code", "code", "retryable"), [
    (201, "order_rejected", False), (110, "invalid_price_increment", False),
    (200, "unknown_contract", False), (103, "duplicate_order_id", False)])
def test_order_rejections_map_to_non_retryable_errors(
        fake: FakeTWS, broker: IBKRBroker, ib_code: int, code: str, retryable: bool) -> None:
    call = option(broker, 6000)
    fake.script_next_order(Reject(ib_code, "refused by the fake"))
    with pytest.raises(BrokerError) as e:
        broker.place_order(buy(call, f"rej-{ib_code}"))
    assert (e.value.code, e.value.retryable, e.value.context["ib_code"]) == (
        code, retryable, ib_code)
    assert e.value.payload()["type"] == "broker_error"
    status = broker.order_status(f"rej-{ib_code}")
    assert status is not None and status.state == "rejected"


def test_link_loss_1100_is_retryable_and_1102_restores(fake: FakeTWS,
                                                       broker: IBKRBroker) -> None:
    call = option(broker, 6000)
    fake.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
    assert not broker.health().connected
    with pytest.raises(BrokerError) as e:
        broker.place_order(buy(call, "during-1100"))
    assert (e.value.code, e.value.retryable) == ("connectivity_lost", True)
    assert fake.messages(3) == []
    fake.send_error(1102, "Connectivity between IB and TWS has been restored - data maintained.")
    assert broker.health().connected
    assert broker.place_order(buy(call, "after-1102")).state == "filled"


def test_retry_by_client_order_id_never_sends_twice(fake: FakeTWS, broker: IBKRBroker) -> None:
    call = option(broker, 6000)
    fake.script_next_order(Rest())
    first = broker.place_order(buy(call, "once"))
    again = broker.place_order(buy(call, "once"))
    assert first.state == again.state == "submitted"
    assert again.broker_order_id == first.broker_order_id
    assert len(fake.messages(3)) == 1
    assert broker.order_status("never-sent") is None


def test_retry_from_a_fresh_process_finds_the_order_at_tws(fake: FakeTWS,
                                                           broker: IBKRBroker) -> None:
    call = option(broker, 6000)
    broker.place_order(buy(call, "survivor"))
    broker.disconnect()  # the old process died: TWS refuses a second session on its client id
    restarted = IBKRBroker(config_for(fake.port))
    restarted.connect()
    try:
        status = restarted.place_order(buy(call, "survivor"))
        assert (status.state, status.filled_quantity) == ("filled", 2)
        assert len(fake.messages(3)) == 1
    finally:
        restarted.disconnect()


def test_cancel_a_working_order(fake: FakeTWS, broker: IBKRBroker) -> None:
    call = option(broker, 6000)
    fake.script_next_order(Rest())
    broker.place_order(buy(call, "to-cancel"))
    assert broker.cancel_order("to-cancel").state == "cancelled"
    with pytest.raises(BrokerError) as e:
        broker.cancel_order("unknown-id")
    assert (e.value.code, e.value.retryable) == ("order_not_found", False)


def test_fills_made_while_disconnected_appear_after_reconnect(fake: FakeTWS,
                                                              broker: IBKRBroker) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    call = option(broker, 6000)
    fake.script_next_order(Rest())
    broker.place_order(buy(call, "resting", price=99.0))
    port = fake.port
    fake.stop()
    fake.fill_resting_order("resting", 98.75)
    fake.start(port)
    (fill,) = broker.fills_since(since)
    assert (fill.client_order_id, fill.price, fill.quantity, fill.commission) == (
        "resting", 98.75, 2, 2.5)
    status = broker.order_status("resting")
    assert status is not None and (status.state, status.filled_quantity) == ("filled", 2)
    assert broker.health().connected


def test_a_partial_fill_then_the_rest_while_disconnected_are_each_reported_once(
        fake: FakeTWS, broker: IBKRBroker) -> None:
    """One of three filled while connected: the order works on, partially filled. The link
    drops, the other two fill meanwhile; after it returns both executions are there, once each,
    and the order is filled at their average."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    call = option(broker, 6000)
    fake.script_next_order(Rest())
    broker.place_order(buy(call, "partial", price=99.0, qty=3))
    fake.fill_resting_order("partial", 98.75, quantity=1)
    deadline = time.monotonic() + 5
    while (status := broker.order_status("partial")) is None or status.filled_quantity < 1:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert (status.state, status.filled_quantity, status.average_fill_price) == ("partially_filled", 1, 98.75)
    assert [(f.quantity, f.price) for f in broker.fills_since(since)] == [(1, 98.75)]
    port = fake.port
    fake.stop()
    fake.fill_resting_order("partial", 98.5)
    fake.start(port)
    fills = broker.fills_since(since)
    assert sorted((f.quantity, f.price, f.commission) for f in fills) == [(1, 98.75, 1.25), (2, 98.5, 2.5)]
    assert len({f.fill_id for f in fills}) == 2
    status = broker.order_status("partial")
    assert status is not None and (status.state, status.filled_quantity) == ("filled", 3)
    assert status.average_fill_price == pytest.approx((98.75 + 2 * 98.5) / 3)


def test_model_greeks_from_tick_option_computation(fake: FakeTWS, broker: IBKRBroker) -> None:
    call = option(broker, 6000)
    fake.set_quote(ES_C6000, bid=100.0, ask=101.0, bid_size=5, ask_size=7)
    fake.set_greeks(ES_C6000, implied_vol=0.18, delta=0.52, gamma=0.0011, vega=11.5,
                    theta=-1.25, option_price=100.5, underlying_price=6010.0)
    (quote,) = broker.quotes([call])
    assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (100.0, 101.0, 5, 7)
    assert quote.underlying_price == 6010.0
    greeks = quote.greeks
    assert greeks is not None and greeks.source == "broker"
    assert (greeks.delta, greeks.gamma, greeks.vega, greeks.theta, greeks.implied_vol) == (
        0.52, 0.0011, 11.5, -1.25, 0.18)
    years = (call.expiry - greeks.time.date()).days / 365.0  # type: ignore[union-attr]
    assert greeks.rho == pytest.approx(-years * 100.5 / 100)
    assert fake.messages(1)[0][-4] == "106"  # generic tick list asked for option greeks


def test_market_data_error_is_mapped(fake: FakeTWS, broker: IBKRBroker) -> None:
    ghost = Instrument("ES", "FOP", date(2027, 12, 17), "CME", 50.0, strike=7000.0, right="C",
                       trading_class="ES", broker_ref="424242")
    with pytest.raises(BrokerError) as e:
        broker.quotes([ghost])
    assert (e.value.code, e.value.retryable) == ("unknown_contract", False)


def test_option_chain_lists_the_options_of_the_future(broker: IBKRBroker) -> None:
    future = broker.underlying()
    chain = broker.option_chain(future)
    assert [(i.strike, i.right, i.broker_ref) for i in chain] == [
        (6000.0, "C", str(ES_C6000)), (6100.0, "C", str(ES_C6100))]
    assert {i.underlying_expiry for i in chain} == {future.expiry}


def test_account_summary(broker: IBKRBroker) -> None:
    summary = broker.account_summary()
    assert (summary.currency, summary.net_liquidation, summary.initial_margin,
            summary.maintenance_margin, summary.available_funds) == (
        "USD", 1_000_000.0, 125_000.0, 100_000.0, 875_000.0)
