"""POST /clients/{id}/agent/proposals: explicit legs drafted as a pending proposal (trader role)."""
from __future__ import annotations

from django_tenants.utils import tenant_context

from agents.models import Proposal
from agents.tests.books import configure
from brokers.models import Order
from risk import services as risk
from tradingplatform.testing import bearer

URL = "/clients/alpha/agent/proposals"


def _post(api, body, user):
    return api.post(URL, body, format="json", **bearer(user))


def _counts(fixture):
    with tenant_context(fixture.client):
        return Proposal.objects.count(), Order.objects.count()


def test_a_trader_drafts_legs_and_gets_201_with_the_pending_proposal_and_its_precheck(api, alpha):
    configure(alpha)
    response = _post(api, {"legs": [{"side": "BUY", "quantity": 2, "symbol": "ES", "sec_type": "FUT"}]}, alpha.trader)
    assert response.status_code == 201, response.json()
    (proposal,) = response.json()["proposals"]
    assert proposal["status"] == "pending" and proposal["source"] == "api" and proposal["action"] == "trade"
    assert proposal["precheck"]["accepted"] is True
    assert _counts(alpha) == (1, 0)
    listed = api.get(f"{URL}?status=pending", **bearer(alpha.viewer)).json()
    assert [p["trade_id"] for p in listed["results"]] == [proposal["trade_id"]]
    approved = api.post(f"/clients/alpha/agent/approve/{proposal['trade_id']}", **bearer(alpha.trader))
    assert approved.status_code == 200 and approved.json()["status"] == "executed"


def test_every_field_error_at_once_and_nothing_created(api, alpha):
    configure(alpha)
    response = _post(api, {"legs": [
        {"side": "HOLD", "quantity": 0, "symbol": "XX", "sec_type": "FUT"},
        {"side": "SELL", "quantity": 1, "symbol": "ES", "sec_type": "FOP"},
        {"side": "SELL", "quantity": 1, "symbol": "ES", "sec_type": "FUT", "strike": 6000, "colour": "red"},
    ]}, alpha.trader)
    assert response.status_code == 400
    errors = response.json()["errors"]["legs"]
    assert set(errors["0"]) == {"side", "quantity", "symbol"}
    assert set(errors["1"]) == {"strike", "right"}
    assert set(errors["2"]) >= {"colour"}
    assert _post(api, {}, alpha.trader).status_code == 400
    assert _post(api, {"legs": []}, alpha.trader).status_code == 400
    assert _counts(alpha) == (0, 0)


def test_an_unknown_strike_is_a_400_naming_it(api, alpha):
    configure(alpha)
    response = _post(api, {"legs": [{"side": "SELL", "quantity": 1, "symbol": "ES", "sec_type": "FOP",
                                     "strike": 6003.5, "right": "C"}]}, alpha.trader)
    assert response.status_code == 400
    assert "6003.5" in response.json()["errors"]["legs"]["0"]["strike"][0]
    assert _counts(alpha) == (0, 0)


def test_a_viewer_may_not_draft(api, alpha):
    configure(alpha)
    response = _post(api, {"legs": [{"side": "BUY", "quantity": 1, "symbol": "ES", "sec_type": "FUT"}]}, alpha.viewer)
    assert response.status_code == 403
    assert _counts(alpha) == (0, 0)


def test_a_governor_refusal_is_422_with_every_violation_and_creates_nothing(api, alpha):
    configure(alpha, risk_limits={"max_order_contracts": 1, "max_leg_contracts": 1, "max_net_delta": 50})
    response = _post(api, {"legs": [{"side": "BUY", "quantity": 3, "symbol": "ES", "sec_type": "FUT"}]}, alpha.trader)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "risk_rejected" and body["violations"]
    assert _counts(alpha) == (0, 0)


def test_a_halt_is_423_and_creates_nothing(api, alpha):
    configure(alpha)
    risk.emergency_halt_set(halted=True, reason="exchange outage", actor=risk.Actor("operator", "ops"))
    try:
        response = _post(api, {"legs": [{"side": "BUY", "quantity": 1, "symbol": "ES", "sec_type": "FUT"}]},
                         alpha.trader)
    finally:
        risk.emergency_halt_set(halted=False, reason="over", actor=risk.Actor("operator", "ops"))
    assert response.status_code == 423 and response.json()["code"] == "halted"
    assert _counts(alpha) == (0, 0)


def test_the_schema_types_the_request_and_the_answers(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    post = schema["paths"]["/clients/{client_id}/agent/proposals"]["post"]
    assert {"201", "422", "423"} <= set(post["responses"])
    assert "TradeRequest" in post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
