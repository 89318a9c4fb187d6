"""The IBKR connection's product settings are checked with TWS at connect (issue 14 item 9):
through the connect-broker API and the real ib_async client against the fake TWS."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from django.test import override_settings
from django_tenants.utils import tenant_context

from brokers.ibkr import IBKRBroker
from brokers.models import BrokerConnection
from brokers.tests.fake_tws import FakeTWS
from brokers.tests.test_ibkr import config_for
from tradingplatform.testing import bearer

YM_H6, YM_H7, YM_M7, ES_H7 = 4001, 4002, 4003, 1001
# The original specification's example: the Dow future on CBOT, its options' class and multiplier.
ORIGINAL = {"host": "127.0.0.1", "client_id": 5, "underlying_instrument": "YM",
            "underlying_expiry": "202703", "exchange_overrides": {"YM": "CBOT"},
            "trading_class": "YM", "multiplier": 5, "connect_retries": 0}


@pytest.fixture
def fake() -> Iterator[FakeTWS]:
    tws = FakeTWS()
    tws.list_future(con_id=YM_H6, symbol="YM", last_trade_date="20260320", exchange="CBOT",
                    multiplier=5, min_tick=1)
    tws.list_future(con_id=YM_H7, symbol="YM", last_trade_date="20270319", exchange="CBOT",
                    multiplier=5, min_tick=1)
    tws.list_future(con_id=YM_M7, symbol="YM", last_trade_date="20270618", exchange="CBOT",
                    multiplier=5, min_tick=1)
    tws.list_option(con_id=4101, under_con_id=YM_H7, last_trade_date="20270319", strike=44000,
                    right="C", trading_class="YM", min_tick=1)
    tws.list_future(con_id=ES_H7, symbol="ES", last_trade_date="20270319", exchange="CME",
                    multiplier=50)
    tws.list_option(con_id=4201, under_con_id=ES_H7, last_trade_date="20270319", strike=6000,
                    right="C", trading_class="ES")
    tws.start()
    yield tws
    bad = tws.bad_requests
    tws.close()
    assert bad == []


def _connect(api, alpha, fake: FakeTWS, **changes: Any):
    credentials = {**ORIGINAL, "port": fake.port, **changes}
    credentials = {k: v for k, v in credentials.items() if v is not None}
    with override_settings(USE_MOCK_BROKER=False):
        return api.post(f"/clients/{alpha.client_id}/connect-broker",
                        {"broker": "ibkr", "credentials": credentials}, format="json",
                        **bearer(alpha.owner))


def _stored(alpha) -> BrokerConnection | None:
    with tenant_context(alpha.client):
        return BrokerConnection.objects.first()


def test_the_original_specifications_payload_connects_and_is_resolved(api, alpha,
                                                                      fake: FakeTWS) -> None:
    response = _connect(api, alpha, fake)
    assert response.status_code == 200, response.content
    assert response.json()["connected"] is True
    stored = json.loads(_stored(alpha).credentials)
    assert (stored["underlying_instrument"], stored["underlying_expiry"], stored["trading_class"],
            stored["multiplier"]) == ("YM", "20270319", "YM", 5.0)


@pytest.mark.parametrize(("changes", "field", "says"), [
    ({"underlying_expiry": "202603"}, "underlying_expiry",
     "The YM 202603 future expired on 2026-03-20. Listed now: 202703, 202706."),
    ({"trading_class": "YX"}, "trading_class", "IB lists these option classes on it: YM"),
    ({"multiplier": 10}, "multiplier", "has multiplier 5, not 10"),
    ({"exchange_overrides": {"YM": "CME"}}, "exchange_overrides",
     'IB lists YM futures on CBOT, not CME: set exchange_overrides to {"YM": "CBOT"}'),
    ({"underlying_instrument": "ZQ", "exchange_overrides": {"ZQ": "CBOT"}},
     "underlying_instrument", "IB lists no future 'ZQ' on any exchange"),
    ({"underlying_expiry": "202709"}, "underlying_expiry",
     "IB lists no YM future for 202709 on CBOT. Listed: 202703, 202706."),
])
def test_settings_ib_does_not_list_are_a_400_that_says_which(
        api, alpha, fake: FakeTWS, changes: dict, field: str, says: str) -> None:
    response = _connect(api, alpha, fake, **changes)
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]["credentials"]
    assert list(errors) == [field]
    assert says in " ".join(errors[field])
    assert _stored(alpha) is None  # nothing changed


def test_a_table_product_is_resolved_and_becomes_the_agents_default(api, alpha,
                                                                    fake: FakeTWS) -> None:
    response = _connect(api, alpha, fake, underlying_instrument="ES", exchange_overrides={},
                        trading_class=None, multiplier=None)
    assert response.status_code == 200, response.content
    stored = json.loads(_stored(alpha).credentials)
    assert (stored["underlying_expiry"], stored["trading_class"], stored["multiplier"]) == (
        "20270319", "ES", 50.0)
    # ... and the agent takes the connection's future as its defaults
    from agents.selectors import agent_parameters_get

    with tenant_context(alpha.client):
        parameters = agent_parameters_get()
    assert (parameters.underlying, parameters.hedge_future_expiry) == ("ES", date(2027, 3, 19))


def test_a_product_outside_the_table_trades_through_the_broker(fake: FakeTWS) -> None:
    broker = IBKRBroker(config_for(fake.port, underlying_instrument="YM",
                                   underlying_expiry="20270319", exchange_overrides={"YM": "CBOT"},
                                   trading_class="YM", multiplier=5.0))
    broker.connect()
    try:
        future = broker.underlying()
        (call,) = broker.option_chain(future)
        assert (future.symbol, future.exchange, future.multiplier) == ("YM", "CBOT", 5.0)
        assert (call.strike, call.trading_class, call.exercise_style, call.underlying_expiry) == (
            44000.0, "YM", "american", date(2027, 3, 19))
        assert [f.expiry for f in broker.listed_futures("YM")] == [date(2027, 3, 19),
                                                                   date(2027, 6, 18)]
    finally:
        broker.disconnect()
