"""Mode, parameters and status of the agent, through HTTP."""
import json

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from tradingplatform.testing import audit_events, bearer


def test_status_reports_mode_state_limits_breaker_and_broker(api, alpha):
    body = api.get("/clients/alpha/agent/status", **bearer(alpha.viewer)).json()
    assert body["mode"] == "confirmation"
    assert body["trading_state"] == "ACTIVE"
    assert body["executing"] is False
    assert body["limits"]["max_net_delta"] == 10.0
    assert body["circuit_breaker"] == {"tripped": False, "consecutive_losses": 0, "trips_at": 3,
                                       "loss_threshold": "500.00"}
    assert body["broker"]["routed_to"] == "mock"
    assert body["halt"]["emergency"]["halted"] is False


def test_status_of_a_fresh_client_writes_nothing(api, alpha):
    from risk.models import RiskStateRecord
    from tenants.models import PlatformControl

    # Fresh: no risk state row in the client's schema and no platform control row (rolled back).
    PlatformControl.objects.all().delete()
    with tenant_context(alpha.client):
        RiskStateRecord.objects.all().delete()
    headers = bearer(alpha.viewer)
    with CaptureQueriesContext(connection) as queries:
        body = api.get("/clients/alpha/agent/status", **headers).json()
    assert body["trading_state"] == "ACTIVE" and body["halt"]["emergency"]["halted"] is False
    writes = [q["sql"] for q in queries.captured_queries
              if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []
    assert not PlatformControl.objects.exists()
    with tenant_context(alpha.client):
        assert not RiskStateRecord.objects.exists()


@override_settings(RISK_CEILING_MAX_NET_DELTA="30", RISK_CEILING_MAX_DAILY_LOSS="1000")
def test_an_owner_cannot_set_a_limit_above_the_operator_ceiling(api, alpha):
    post = lambda body: api.post("/clients/alpha/agent/parameters", body, format="json", **bearer(alpha.owner))  # noqa: E731
    response = post({"risk_limits": {"max_net_delta": 31, "max_daily_loss": "1000.01"}})
    assert response.status_code == 400
    assert set(response.json()["errors"]["risk_limits"]) == {"max_net_delta", "max_daily_loss"}
    assert post({"risk_limits": {"max_net_delta": 30}}).status_code == 200
    body = api.get("/clients/alpha/agent/status", **bearer(alpha.viewer)).json()
    assert body["limits"]["max_net_delta"] == 30


def test_platform_ceilings_exist_by_default_so_absurd_limits_are_refused(api, alpha, settings):
    post = lambda body: api.post("/clients/alpha/agent/parameters", body, format="json", **bearer(alpha.owner))  # noqa: E731
    response = post({"risk_limits": {"max_order_contracts": 10**30, "max_net_delta": 1e308}})
    assert response.status_code == 400
    errors = response.json()["errors"]["risk_limits"]
    assert set(errors) == {"max_order_contracts", "max_net_delta"}
    assert "500" in errors["max_order_contracts"][0]
    with tenant_context(alpha.client):
        from risk.selectors import risk_limits_get
        assert risk_limits_get().max_order_contracts == 20  # nothing was stored
    # the ceilings are shown in the parameters' bounds (the API schema)
    schema = api.get("/api/schema/", {"format": "json"}, **bearer(alpha.owner)).json()
    limits = next(component for name, component in schema["components"]["schemas"].items()
                  if "max_order_contracts" in component.get("properties", {}))
    assert limits["properties"]["max_order_contracts"]["maximum"] == 500
    assert limits["properties"]["max_net_delta"]["maximum"] == 500
    settings.RISK_CEILING_MAX_NET_DELTA = ""  # an operator cannot remove a ceiling, only move it
    from risk.selectors import risk_limit_ceilings
    assert risk_limit_ceilings()["max_net_delta"] == 500.0


@override_settings(AUTONOMOUS_ENABLED=False)
def test_autonomous_mode_is_refused_and_audited_while_the_kill_switch_is_off(api, alpha):
    response = api.post("/clients/alpha/agent/mode", {"mode": "autonomous"}, format="json", **bearer(alpha.owner))
    assert response.status_code == 403
    assert response.json()["code"] == "autonomous_disabled"
    assert audit_events(client_id="alpha", kind="agent.mode_refused")
    assert api.get("/clients/alpha/agent/status", **bearer(alpha.owner)).json()["mode"] == "confirmation"


@override_settings(AUTONOMOUS_ENABLED=True)
def test_owner_switches_to_autonomous_when_allowed_and_it_is_audited(api, alpha):
    response = api.post("/clients/alpha/agent/mode", {"mode": "autonomous"}, format="json", **bearer(alpha.owner))
    assert response.status_code == 200
    assert response.json()["mode"] == "autonomous" and response.json()["executing"] is True
    event = audit_events(client_id="alpha", kind="agent.mode_changed")[-1]
    assert event.payload == {"before": "confirmation", "after": "autonomous"}


def test_parameters_are_merged_validated_and_audited_with_before_and_after(api, alpha):
    post = lambda body: api.post("/clients/alpha/agent/parameters", body, format="json", **bearer(alpha.owner))  # noqa: E731
    assert post({"risk_limits": {"max_net_delta": 25}}).status_code == 200
    response = post({"risk_limits": {"max_daily_loss": "750.50"}})
    assert response.status_code == 200
    limits = response.json()["limits"]
    assert limits["max_net_delta"] == 25 and limits["max_daily_loss"] == "750.50"
    event = audit_events(client_id="alpha", kind="agent.parameters_changed")[-1]
    assert event.payload["before"] == {"risk_limits": {"max_net_delta": 25.0}}
    assert event.payload["after"]["risk_limits"]["max_daily_loss"] == "750.50"


def test_the_delta_model_is_a_parameter_and_status_names_it(api, alpha):
    post = lambda body: api.post("/clients/alpha/agent/parameters", body, format="json", **bearer(alpha.owner))  # noqa: E731
    status = lambda: api.get("/clients/alpha/agent/status", **bearer(alpha.owner)).json()  # noqa: E731
    assert status()["usage"]["delta_model"] == "sticky_moneyness"  # the default
    assert post({"delta_model": "sticky_strike"}).status_code == 200
    assert status()["usage"]["delta_model"] == "sticky_strike"
    response = post({"delta_model": "minimum_variance", "minimum_variance": {"a": -0.25}})
    assert response.status_code == 400 and "minimum_variance" in json.dumps(response.json()["errors"])
    assert status()["parameters"] == {"delta_model": "sticky_strike"}


@pytest.mark.parametrize(
    ("body", "error_path"),
    [
        ({"delta_model": "vanna_volga"}, ("delta_model",)),
        ({"risk_limits": {"max_net_delta": -1}}, ("risk_limits", "max_net_delta")),
        ({"risk_limits": {"max_order_contracts": 0}}, ("risk_limits", "max_order_contracts")),
        ({"risk_limits": {"max_delta": 5}}, ("risk_limits", "max_delta")),
        ({"risk_limits": {"max_daily_loss": "lots"}}, ("risk_limits", "max_daily_loss")),
        ({"leverage": 10}, ("leverage",)),
        ({}, ("non_field_errors",)),
    ],
)
def test_invalid_parameters_are_400_with_field_errors_and_change_nothing(api, alpha, body, error_path):
    response = api.post("/clients/alpha/agent/parameters", body, format="json", **bearer(alpha.owner))
    assert response.status_code == 400
    errors = response.json()["errors"]
    for key in error_path:
        errors = errors[key]
    assert errors
    assert api.get("/clients/alpha/agent/status", **bearer(alpha.owner)).json()["parameters"] == {}


@pytest.mark.parametrize("role", ["trader", "viewer"])
def test_only_owners_change_mode_and_parameters(api, alpha, role):
    user = getattr(alpha, role)
    response = api.post("/clients/alpha/agent/mode", {"mode": "confirmation"}, format="json", **bearer(user))
    assert response.status_code == 403
    assert api.post("/clients/alpha/agent/parameters", {"risk_limits": {"max_net_delta": 1}}, format="json",
                    **bearer(user)).status_code == 403


# --- proposals, approve, reject ----------------------------------------------------------------


def _pending_proposal(alpha):
    from agents.tests.books import buy_futures, configure
    from agents.tests.test_services import _cycle

    configure(alpha)
    buy_futures(alpha, 4)
    (proposal,) = _cycle(alpha).proposals
    return proposal


def test_proposals_are_listed_newest_first_and_filtered_by_status(api, alpha):
    proposal = _pending_proposal(alpha)
    body = api.get("/clients/alpha/agent/proposals?status=pending", **bearer(alpha.viewer)).json()
    assert body["count"] == 1
    (listed,) = body["results"]
    assert listed["trade_id"] == str(proposal.pk)
    assert listed["status"] == "pending" and listed["action"] == "hedge"
    assert listed["legs"][0]["side"] == "SELL" and listed["precheck"]["accepted"] is True
    assert listed["rationale"]["net_delta"] == pytest.approx(4.0)
    assert len(listed["content_hash"]) == 64
    assert api.get("/clients/alpha/agent/proposals?status=executed", **bearer(alpha.viewer)).json()["count"] == 0


def test_an_unknown_status_filter_is_a_400(api, alpha):
    response = api.get("/clients/alpha/agent/proposals?status=maybe", **bearer(alpha.viewer))
    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_a_trader_approves_and_a_second_approval_is_a_409(api, alpha):
    proposal = _pending_proposal(alpha)
    response = api.post(f"/clients/alpha/agent/approve/{proposal.pk}", **bearer(alpha.trader))
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "executed" and response.json()["decided_by"] == "alpha-trader"
    again = api.post(f"/clients/alpha/agent/approve/{proposal.pk}", **bearer(alpha.trader))
    assert again.status_code == 409
    assert again.json()["code"] == "not_pending" and "executed" in again.json()["detail"]


def test_viewers_may_not_approve_or_reject(api, alpha):
    proposal = _pending_proposal(alpha)
    assert api.post(f"/clients/alpha/agent/approve/{proposal.pk}", **bearer(alpha.viewer)).status_code == 403
    assert api.post(f"/clients/alpha/agent/reject/{proposal.pk}", **bearer(alpha.viewer)).status_code == 403


def test_reject_records_who_and_why_and_approval_after_it_is_a_409(api, alpha):
    proposal = _pending_proposal(alpha)
    response = api.post(f"/clients/alpha/agent/reject/{proposal.pk}", {"reason": "we roll tomorrow"},
                        format="json", **bearer(alpha.trader))
    assert response.status_code == 200
    assert response.json()["status"] == "rejected" and response.json()["decision_reason"] == "we roll tomorrow"
    event = audit_events(client_id="alpha", kind="proposal.rejected")[-1]
    assert event.actor_id == "alpha-trader" and event.payload["reason"] == "we roll tomorrow"
    assert api.post(f"/clients/alpha/agent/approve/{proposal.pk}", **bearer(alpha.trader)).status_code == 409


def test_an_expired_proposal_is_a_410(api, alpha):
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from agents.models import Proposal

    proposal = _pending_proposal(alpha)
    with tenant_context(alpha.client):
        Proposal.objects.filter(pk=proposal.pk).update(expires_at=timezone.now())
    response = api.post(f"/clients/alpha/agent/approve/{proposal.pk}", **bearer(alpha.trader))
    assert response.status_code == 410 and response.json()["code"] == "expired"


def test_approval_during_an_emergency_halt_is_a_423_with_the_reason(api, alpha):
    from risk.services import Actor, emergency_halt_set

    proposal = _pending_proposal(alpha)
    emergency_halt_set(halted=True, reason="exchange outage", actor=Actor("operator", "ops"))
    try:
        response = api.post(f"/clients/alpha/agent/approve/{proposal.pk}", **bearer(alpha.trader))
    finally:
        emergency_halt_set(halted=False, reason="over", actor=Actor("operator", "ops"))
    assert response.status_code == 423
    assert response.json()["code"] == "halted" and "exchange outage" in response.json()["detail"]


def test_a_governor_refusal_at_approval_is_a_422_with_every_violation(api, alpha):
    proposal = _pending_proposal(alpha)
    api.post("/clients/alpha/agent/parameters", {"risk_limits": {"max_leg_contracts": 1}}, format="json",
             **bearer(alpha.owner))
    response = api.post(f"/clients/alpha/agent/approve/{proposal.pk}", **bearer(alpha.trader))
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "risk_rejected" and "max_leg_size" in {v["code"] for v in body["violations"]}


@pytest.mark.parametrize("trade_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_an_unknown_proposal_is_a_404(api, alpha, trade_id):
    response = api.post(f"/clients/alpha/agent/approve/{trade_id}", **bearer(alpha.trader))
    assert response.status_code == 404


def test_a_reject_reason_that_is_too_long_is_a_400_and_changes_nothing(api, alpha):
    proposal = _pending_proposal(alpha)
    response = api.post(f"/clients/alpha/agent/reject/{proposal.pk}", {"reason": "x" * 1001}, format="json",
                        **bearer(alpha.trader))
    assert response.status_code == 400 and "reason" in response.json()["errors"]
    assert api.get("/clients/alpha/agent/proposals?status=pending", **bearer(alpha.viewer)).json()["count"] == 1


def test_status_reports_the_last_and_next_cycle_and_pending_proposals(api, alpha):
    _pending_proposal(alpha)
    body = api.get("/clients/alpha/agent/status", **bearer(alpha.viewer)).json()
    assert body["last_cycle"] is not None and body["next_cycle"] > body["last_cycle"]
    assert body["last_cycle_status"] == "completed" and body["pending_proposals"] == 1
    assert "outside" in body["last_cycle_reason"]
    usage = body["usage"]
    assert usage["net_delta"] == pytest.approx(4.0) and usage["max_net_delta"] == 50
    assert usage["orders_last_minute"] == 1 and usage["max_orders_per_minute"] == 10
    assert usage["daily_pnl"]["realized"] is not None and usage["max_daily_loss"] == "2000.00"


def test_every_parameter_error_is_reported_at_once_and_nothing_changes(api, alpha):
    response = api.post("/clients/alpha/agent/parameters",
                        {"structure": {"kind": "butterfly", "dte_min": -1}, "band": {"method": "x", "spread": 1},
                         "bogus": 1, "risk_limits": {"max_net_delta": -1, "max_delta": 2}},
                        format="json", **bearer(alpha.owner))
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["bogus"] == ["Unknown parameter."]
    assert set(errors["structure"]) == {"kind", "dte_min"}
    assert set(errors["band"]) == {"method", "spread"}
    assert set(errors["risk_limits"]) == {"max_net_delta", "max_delta"}
    assert api.get("/clients/alpha/agent/status", **bearer(alpha.owner)).json()["parameters"] == {}


def test_a_hedge_future_that_has_expired_is_refused(api, alpha):
    response = api.post("/clients/alpha/agent/parameters", {"hedge_future_expiry": "2000-01-01"}, format="json",
                        **bearer(alpha.owner))
    assert response.status_code == 400 and "hedge_future_expiry" in response.json()["errors"]


def test_a_pending_proposal_past_its_ttl_reads_as_expired_before_any_cycle(api, alpha):
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from agents.models import Proposal

    proposal = _pending_proposal(alpha)
    with tenant_context(alpha.client):
        Proposal.objects.filter(pk=proposal.pk).update(expires_at=timezone.now())
    assert api.get("/clients/alpha/agent/proposals?status=pending", **bearer(alpha.viewer)).json()["count"] == 0
    (listed,) = api.get("/clients/alpha/agent/proposals?status=expired", **bearer(alpha.viewer)).json()["results"]
    assert listed["trade_id"] == str(proposal.pk) and listed["status"] == "expired"
    assert api.get("/clients/alpha/agent/status", **bearer(alpha.viewer)).json()["pending_proposals"] == 0


def test_everyone_reads_the_parameters_with_defaults_bounds_and_units_and_only_owners_change_them(alpha, as_user):
    body = as_user(alpha.viewer).get("/clients/alpha/agent/parameters").json()
    fields = {field["path"]: field for field in body["parameters"] + body["risk_limits"]}
    assert fields["band.width"]["unit"] == "contracts" and fields["band.width"]["max"] == 1000.0
    assert fields["structure.kind"]["choices"][0] == "none"
    assert fields["risk_limits.max_net_delta"]["max"] is not None  # the operator's ceiling
    assert fields["exits.roll_dte"]["nullable"] is True and fields["exits.roll_dte"]["default"] == 5
    assert as_user(alpha.viewer).post("/clients/alpha/agent/parameters", {"target_delta": 1},
                                      format="json").status_code == 403


def test_the_scenario_shows_the_risk_graph_numbers_and_a_proposal_overlay(alpha, as_user):
    from django_tenants.utils import tenant_context

    from agents import services
    from agents.tests.books import buy_futures, configure

    configure(alpha)
    buy_futures(alpha, 2)
    api = as_user(alpha.viewer)
    body = api.get("/clients/alpha/scenario").json()
    assert len(body["shifts"]) == 21 and body["now"][10] == 0.0 and body["now"][20] > 0 > body["now"][0]
    with tenant_context(alpha.client):
        (proposal,) = services.cycle_run(client=alpha.client, key="scenario", trigger="manual").proposals
    overlaid = api.get(f"/clients/alpha/scenario?proposal={proposal.pk}&vol_shift=0.05&days=1").json()
    assert abs(overlaid["after_proposal"][20]) < abs(overlaid["now"][20])  # the hedge flattens the line
    assert api.get("/clients/alpha/scenario?vol_shift=9").status_code == 400
    assert api.get("/clients/alpha/scenario?proposal=00000000-0000-0000-0000-000000000000").status_code == 404


def test_the_chat_history_survives_and_the_user_clients_list_names_the_roles(alpha, as_user):
    trader = as_user(alpha.trader)
    assert trader.post("/clients/alpha/agent/chat", {"message": "status"}, format="json").status_code == 200
    history = as_user(alpha.viewer).get("/clients/alpha/agent/chat?limit=10").json()
    assert [m["role"] for m in history][-2:] == ["user", "agent"] and history[-2]["text"] == "status"
    assert as_user(alpha.viewer).get("/clients/alpha/agent/chat?limit=0").status_code == 400
    assert as_user(alpha.viewer).post("/clients/alpha/agent/chat", {"message": "hi"}, format="json").status_code == 403
    mine = as_user(alpha.trader).get("/me/clients").json()
    assert mine == [{"client_id": "alpha", "name": "Alpha Capital", "role": "trader"}]
