"""GET /clients/{id}/chain: the hedge future's options, quoted and valued, held legs marked."""
from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from agents.tests.books import buy_calls, configure
from brokers.services import broker_session
from tradingplatform.testing import bearer


def test_the_chain_shows_the_nearest_expiry_with_quotes_iv_and_greeks(api, alpha):
    response = api.get("/clients/alpha/chain", **bearer(alpha.viewer))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["underlying"] == "ES" and body["hedge_future_key"].startswith("ES FUT")
    assert body["expiries"] and body["expiry"] == body["expiries"][0]["expiry"]
    assert [e["expiry"] for e in body["expiries"]] == sorted(e["expiry"] for e in body["expiries"])
    rows = body["rows"]
    assert len(rows) > 10 and [r["strike"] for r in rows] == sorted(r["strike"] for r in rows)
    (atm,) = [r for r in rows if r["at_the_money"]]
    call, put = atm["call"], atm["put"]
    assert call["bid"] < call["ask"] and 0.3 < call["delta"] < 0.7 and -0.7 < put["delta"] < -0.3
    assert 0.05 < call["implied_vol"] < 1.0 and call["gamma"] > 0 and call["vega"] > 0
    assert call["held"] == put["held"] == 0


def test_held_legs_are_marked_in_the_chain_and_on_their_expiry(api, alpha):
    configure(alpha)
    call = buy_calls(alpha, 2)
    body = api.get(f"/clients/alpha/chain?expiry={call.expiry.isoformat()}", **bearer(alpha.viewer)).json()
    assert body["expiry"] == call.expiry.isoformat()
    held = [side for row in body["rows"] for side in (row["call"], row["put"]) if side and side["held"]]
    assert [(side["instrument_key"], side["held"]) for side in held] == [(call.key, 2)]
    (tab,) = [e for e in body["expiries"] if e["expiry"] == call.expiry.isoformat()]
    assert tab["held_legs"] == 1


@pytest.mark.parametrize("query", ["expiry=soon", "expiry=2020-01-17", "strike=5000"])
def test_a_bad_query_is_400_with_the_field_named(api, alpha, query):
    response = api.get(f"/clients/alpha/chain?{query}", **bearer(alpha.viewer))
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {query.split("=")[0]}


def test_a_non_member_gets_404(api, alpha, beta):
    assert api.get("/clients/alpha/chain", **bearer(beta.trader)).status_code == 404


def test_with_the_broker_down_the_chain_is_503_naming_it(api, alpha):
    with tenant_context(alpha.client), broker_session() as broker:
        broker.inject_disconnect(failed_reconnects=1000)
    response = api.get("/clients/alpha/chain", **bearer(alpha.viewer))
    assert response.status_code == 503 and response.json()["detail"]["broker"] == "mock"
