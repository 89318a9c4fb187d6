from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(USE_I18N=False)
    django.setup()

from brokers.domain import Broker, BrokerError, OrderLeg, OrderRequest  # noqa: E402
from brokers.mock import (  # noqa: E402
    InMemoryStateStore,
    JsonFileStateStore,
    MockBroker,
    MockCredentialsSerializer,
)
from brokers.simulator import SimClock  # noqa: E402

UTC = UTC
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def make_broker(store=None, *, clock: SimClock | None = None, **credentials) -> MockBroker:
    serializer = MockCredentialsSerializer(data={"seed": 3, **credentials})
    assert serializer.is_valid(), serializer.errors
    broker = MockBroker.from_credentials(
        serializer.validated_data, store=store or InMemoryStateStore(), clock=clock or SimClock.manual(START)
    )
    broker.connect()
    return broker


def market_order(cid: str, instrument, side: str = "BUY", quantity: int = 1) -> OrderRequest:
    return OrderRequest(cid, (OrderLeg(instrument, side, quantity),), order_type="MKT")


def script(broker: MockBroker, clock: SimClock, part: int) -> None:
    """The same trading day, split in two halves so that a restart can happen in between."""
    es = broker.lookup_instrument(symbol="ES", sec_type="FUT")
    chain = broker.option_chain(es)
    below = es_mid(broker, es) - 200
    put = next(o for o in chain if o.right == "P" and o.expiry == es.expiry and o.strike < below)
    if part == 1:
        broker.place_order(market_order("p1-future", es, "BUY", 3))
        bid = broker.quote(es).bid
        broker.place_order(OrderRequest("p1-rest", (OrderLeg(es, "BUY", 1),), "LMT", bid - 3.0, "GTC"))
        clock.advance(2 * 3600)
        broker.place_order(market_order("p1-put", put, "BUY", 4))
    else:
        clock.advance(3 * 3600)
        broker.shock("ES", -0.02)
        broker.place_order(market_order("p2-future", es, "SELL", 2))
        clock.advance(86_400)
        broker.place_order(market_order("p2-put", put, "SELL", 4))


def es_mid(broker: MockBroker, instrument) -> float:
    return broker.quote(instrument).mid


def observable(broker: MockBroker) -> str:
    return json.dumps(
        {
            "fills": [asdict(f) for f in broker.fills_since(START)],
            "positions": [asdict(p) for p in broker.positions()],
            "summary": asdict(broker.account_summary()),
        },
        default=str,
    )


# --- credentials ----------------------------------------------------------------------------


def test_credentials_are_optional_and_validated():
    empty = MockCredentialsSerializer(data={})
    assert empty.is_valid()
    assert empty.validated_data == {"always_open": True, "slippage_ticks": 0, "commission_per_contract": 2.25}
    bad = MockCredentialsSerializer(data={"seed": "x", "commission_per_contract": -1, "slippage_ticks": -2})
    assert not bad.is_valid()
    assert set(bad.errors) == {"seed", "commission_per_contract", "slippage_ticks"}
    assert not MockCredentialsSerializer(data={"seed": -1}).is_valid()


def test_from_credentials_applies_the_settings():
    broker = make_broker(slippage_ticks=2, commission_per_contract=0.5)
    assert isinstance(broker, Broker) and broker.name == "mock"
    es = broker.lookup_instrument(symbol="ES", sec_type="FUT")
    ask = broker.quote(es).ask
    broker.place_order(market_order("b", es, quantity=2))
    (fill,) = broker.fills_since(START)
    assert fill.price == ask + 0.5 and fill.commission == 1.0
    assert broker.simulator.config.seed == 3


# --- connection and faults ------------------------------------------------------------------


def test_calls_before_connect_raise_a_retryable_broker_error():
    broker = MockBroker.from_credentials({}, store=InMemoryStateStore(), clock=SimClock.manual(START))
    with pytest.raises(BrokerError) as error:
        broker.positions()
    assert error.value.code == "not_connected" and error.value.retryable
    assert broker.health().connected is False


def test_injected_disconnect_until_reconnected():
    clock = SimClock.manual(START)
    broker = make_broker(clock=clock)
    es = broker.lookup_instrument(symbol="ES", sec_type="FUT")
    broker.inject_disconnect(failed_reconnects=1)
    for call in (lambda: broker.quote(es), broker.positions, broker.account_summary,
                 lambda: broker.place_order(market_order("x", es))):
        with pytest.raises(BrokerError) as error:
            call()
        assert error.value.code == "disconnected" and error.value.retryable
        assert error.value.payload()["type"] == "broker_error"
    health = broker.health()
    assert health.connected is False and "lost" in health.detail
    with pytest.raises(BrokerError) as failed:
        broker.connect()
    assert failed.value.code == "connect_failed" and failed.value.retryable
    broker.connect()
    assert broker.health().connected is True
    assert broker.order_status("x") is None
    assert broker.place_order(market_order("x", es)).state == "filled"


def test_rejection_injection_through_the_broker():
    broker = make_broker()
    es = broker.lookup_instrument(symbol="ES", sec_type="FUT")
    broker.inject_rejections(1, code="risk_reject", message="account restricted")
    status = broker.place_order(market_order("r", es))
    assert status.state == "rejected" and status.message == "risk_reject: account restricted"
    assert broker.place_order(market_order("ok", es)).state == "filled"


def test_failures_surface_as_broker_errors_only():
    broker = make_broker()
    es = broker.lookup_instrument(symbol="ES", sec_type="FUT")
    cases = [
        (lambda: broker.lookup_instrument(symbol="ZZ", sec_type="FUT"), "instrument_not_found"),
        (lambda: broker.place_order(market_order("q", es, quantity=0)), "invalid_order"),
        (lambda: broker.cancel_order("missing"), "order_not_found"),
        (lambda: broker.fills_since(datetime(2026, 1, 1)), "invalid_request"),
        (lambda: broker.option_chain(broker.option_chain(es)[0]), "invalid_request"),
    ]
    for call, code in cases:
        with pytest.raises(BrokerError) as error:
            call()
        assert error.value.code == code and error.value.retryable is False
        assert error.value.broker == "mock"


def test_idempotent_orders_and_lookup_by_client_order_id():
    broker = make_broker()
    es = broker.lookup_instrument(symbol="ES", sec_type="FUT")
    placed = broker.place_order(market_order("same", es, quantity=2))
    assert broker.order_status("same") == placed
    assert broker.place_order(market_order("same", es, quantity=2)) == placed
    assert [p.quantity for p in broker.positions()] == [2]
    with pytest.raises(BrokerError) as error:
        broker.place_order(market_order("same", es, quantity=5))
    assert error.value.code == "duplicate_client_order_id"


def test_combo_through_the_broker():
    broker = make_broker()
    es = broker.lookup_instrument(symbol="ES", sec_type="FUT")
    chain = [o for o in broker.option_chain(es) if o.expiry == es.expiry and o.right == "C"]
    low, high = chain[18], chain[22]
    legs = (OrderLeg(low, "BUY", 2), OrderLeg(high, "SELL", 2))
    status = broker.place_order(OrderRequest("v", legs, "MKT"))
    assert status.state == "filled" and status.filled_quantity == 2
    assert {p.instrument.key: p.quantity for p in broker.positions()} == {low.key: 2, high.key: -2}


# --- persistence ----------------------------------------------------------------------------


def test_state_is_saved_after_changes_only():
    store = InMemoryStateStore()
    broker = make_broker(store)
    after_connect = store.saves
    es = broker.lookup_instrument(symbol="ES", sec_type="FUT")
    broker.quotes([es] * 3)
    broker.positions()
    assert store.saves == after_connect
    broker.place_order(market_order("b", es))
    assert store.saves == after_connect + 1
    broker.set_spread_multiplier(None, 2.0)
    assert store.saves == after_connect + 2
    assert store.load()["orders"][0]["request"]["client_order_id"] == "b"


def test_restart_through_the_json_file_store_equals_never_stopping(tmp_path):
    straight_clock = SimClock.manual(START)
    straight = make_broker(clock=straight_clock)
    script(straight, straight_clock, 1)
    script(straight, straight_clock, 2)

    path = tmp_path / "state" / "alpha.json"
    first_clock = SimClock.manual(START)
    first = make_broker(JsonFileStateStore(path), clock=first_clock)
    script(first, first_clock, 1)
    first.disconnect()
    assert sorted(p.name for p in path.parent.iterdir()) == ["alpha.json"]

    second_clock = SimClock.manual(first_clock.now())
    second = make_broker(JsonFileStateStore(path), clock=second_clock)
    script(second, second_clock, 2)
    assert observable(second) == observable(straight)
    assert len(second.fills_since(START)) == 5


def test_restored_account_keeps_its_seed_and_takes_new_execution_settings(tmp_path):
    store = JsonFileStateStore(tmp_path / "s.json")
    clock = SimClock.manual(START)
    make_broker(store, clock=clock, seed=3).disconnect()
    again = make_broker(store, clock=clock, seed=99, slippage_ticks=4)
    assert again.simulator.config.seed == 3
    assert again.simulator.config.slippage_ticks == 4
    assert store.load()["config"]["slippage_ticks"] == 4


def test_clock_comes_back_from_the_state_when_none_is_given():
    store = InMemoryStateStore()
    clock = SimClock.manual(START)
    broker = make_broker(store, clock=clock)
    clock.advance(600)
    broker.place_order(market_order("b", broker.lookup_instrument(symbol="ES", sec_type="FUT")))
    restored = MockBroker.from_credentials({}, store=store)
    restored.connect()
    assert restored.simulator.clock.now() == START + timedelta(seconds=600)
    assert restored.order_status("b").state == "filled"


def test_a_failing_store_is_a_retryable_broker_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    broker = MockBroker.from_credentials({}, store=JsonFileStateStore(blocker / "state.json"),
                                         clock=SimClock.manual(START))
    with pytest.raises(BrokerError) as error:
        broker.connect()
    assert error.value.code == "state_store_failed" and error.value.retryable


def test_an_unreadable_stored_state_is_refused_on_connect():
    store = InMemoryStateStore({"version": 99})
    broker = MockBroker.from_credentials({}, store=store, clock=SimClock.manual(START))
    with pytest.raises(BrokerError) as error:
        broker.connect()
    assert error.value.code == "state_invalid" and error.value.retryable is False
