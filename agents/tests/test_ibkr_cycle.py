"""A structure cycle on Interactive Brokers within a 100-line account (issue 14 item 4): the
agent's cycle through the real ib_async client against the fake TWS."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
from django.test import override_settings
from django_tenants.utils import tenant_context

from agents import services
from agents.tests.books import configure
from brokers.tests.fake_tws import FakeTWS
from risk.greeks import black76
from tradingplatform.testing import bearer, ibkr_connect

ES_H7, ES_M7 = 1001, 1002
EXPIRIES = {"20270319": ES_H7, "20270416": ES_M7}  # March on March; the April serial on June
FORWARDS = {ES_H7: 6000.0, ES_M7: 6030.0}
STRIKES = [5500.0 + 25 * i for i in range(41)]  # 41 strikes x 2 rights x 2 expiries = 164 options
VOL = 0.18


@pytest.fixture
def fake() -> Iterator[FakeTWS]:
    tws = FakeTWS(market_data_lines=100)
    for con_id, expiry in ((ES_H7, "20270319"), (ES_M7, "20270618")):
        tws.list_future(con_id=con_id, symbol="ES", last_trade_date=expiry, exchange="CME",
                        multiplier=50)
        tws.set_quote(con_id, bid=FORWARDS[con_id] - 0.25, ask=FORWARDS[con_id] + 0.25)
    now = datetime.now(UTC)
    con_id = 10_000
    for expiry, future in EXPIRIES.items():
        years = (datetime.strptime(expiry + " 13:30", "%Y%m%d %H:%M").replace(tzinfo=UTC)
                 - now).total_seconds() / (365 * 86400)
        for strike in STRIKES:
            for right in "CP":
                con_id += 1
                tws.list_option(con_id=con_id, under_con_id=future, last_trade_date=expiry,
                                strike=strike, right=right, trading_class="ES")
                model = black76(FORWARDS[future], strike, years, 0.04, VOL, right == "C")
                price = max(round(float(model.price) * 4) / 4, 0.25)
                tws.set_quote(con_id, bid=price - 0.25 if price > 0.25 else 0.05,
                              ask=price + 0.25)
                tws.set_greeks(con_id, implied_vol=VOL, delta=float(model.delta),
                               gamma=float(model.gamma), vega=float(model.vega),
                               theta=float(model.theta), option_price=price,
                               underlying_price=FORWARDS[future])
    tws.start()
    yield tws
    bad = tws.bad_requests
    tws.close()
    assert bad == []


@override_settings(USE_MOCK_BROKER=False)
def test_a_strangle_opens_on_a_100_line_account_quoting_only_choosable_strikes(api, alpha,
                                                                               fake: FakeTWS):
    response = ibkr_connect(api, alpha, port=fake.port, client_id=3, underlying_expiry="202703",
                            connect_retries=0)
    assert response.json()["connected"] is True, response.content
    configure(alpha, structure={"kind": "short_strangle", "short_delta": 0.2, "dte_min": 20,
                                "dte_max": 60, "quantity": 1},
              hedge_future_expiry=None)
    with tenant_context(alpha.client):
        outcome = services.cycle_run(client=alpha.client, key="ibkr-lines", trigger="manual")
    actions = [p.action for p in outcome.proposals]
    assert "open_structure" in actions, outcome.decision.reason
    (opened,) = [p for p in outcome.proposals if p.action == "open_structure"]
    # the strikes the policy would have chosen with the whole chain quoted
    years = (datetime(2027, 3, 19, 13, 30, tzinfo=UTC) - datetime.now(UTC)).total_seconds() / (365 * 86400)
    expected = set()
    for right in "CP":
        deltas = np.abs(black76(FORWARDS[ES_H7], np.array(STRIKES), years, 0.04, VOL, right == "C").delta)
        expected.add((STRIKES[int(np.argmin(np.abs(deltas - 0.2)))], right))
    assert {(leg["instrument"]["strike"], leg["instrument"]["right"]) for leg in opened.legs} == expected
    option_requests = [m for m in fake.messages(1) if m[5] == "FOP"]
    assert len(option_requests) < 60  # of 164 listed: only the strikes a 0.2 strangle can take
    assert fake.max_lines_used <= 80
    assert len(fake.messages(2)) == len(fake.messages(1))  # every line given back
    # The listing the cycle made serves the chain page and the next cycle (OPTION_CHAIN_CACHE_SECONDS):
    # IB's option parameters and its options' contract details are not asked again.
    def listings() -> tuple[int, int]:
        return len(fake.messages(78)), len([m for m in fake.messages(9) if m[5] == "FOP"])

    listed = listings()
    assert listed[0] >= 1
    assert api.get(f"/clients/{alpha.client_id}/chain", **bearer(alpha.viewer)).status_code == 200
    with tenant_context(alpha.client):
        services.cycle_run(client=alpha.client, key="ibkr-lines-again", trigger="manual")
    assert listings() == listed
