"""Mode, parameters and status of the agent, through HTTP."""
import pytest
from django.test import override_settings

from conftest import audit_events, bearer


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


@pytest.mark.parametrize(
    ("body", "error_path"),
    [
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
    assert api.post("/clients/alpha/agent/mode", {"mode": "confirmation"}, format="json", **bearer(user)).status_code == 403
    assert api.post("/clients/alpha/agent/parameters", {"risk_limits": {"max_net_delta": 1}}, format="json",
                    **bearer(user)).status_code == 403
