"""Operator halts over HTTP (X-Admin-Key) and the owner's breaker reset."""
import pytest
from django.test import override_settings
from django_tenants.utils import tenant_context

from risk.models import RiskStateRecord
from tradingplatform.testing import audit_events, bearer

KEY = "operator-key-" + "x" * 30


@override_settings(ADMIN_API_KEY=KEY)
@pytest.mark.parametrize(("headers", "status"), [({}, 401), ({"HTTP_X_ADMIN_KEY": "nope"}, 403)])
def test_the_emergency_halt_needs_the_admin_key(api, db, headers, status):
    assert api.get("/admin/emergency-halt", **headers).status_code == status
    response = api.post("/admin/emergency-halt", {"halted": True, "reason": "x"}, format="json", **headers)
    assert response.status_code == status


@override_settings(ADMIN_API_KEY=KEY)
def test_emergency_halt_set_read_and_lift(api, alpha, beta):
    response = api.post("/admin/emergency-halt", {"halted": True, "reason": "feed down"}, format="json",
                        HTTP_X_ADMIN_KEY=KEY)
    assert response.status_code == 200 and response.json()["halted"] is True
    state = api.get("/admin/emergency-halt", HTTP_X_ADMIN_KEY=KEY).json()
    assert (state["halted"], state["reason"]) == (True, "feed down")
    status = api.get("/clients/alpha/agent/status", **bearer(alpha.viewer)).json()
    emergency = status["halt"]["emergency"]
    assert (emergency["halted"], emergency["reason"], emergency["set_by"]) == (True, "feed down", "admin-api-key")
    assert emergency["at"] is not None
    # Every view agrees: the status reads HALTED, and says which halt.
    assert status["trading_state"] == "HALTED" and status["trading_state_reason"] == "feed down"
    assert status["effective_state"]["state"] == "EMERGENCY_HALT"
    assert len(audit_events(kind="halt.emergency", client_id__in=["alpha", "beta", "race"])) == 3
    lifted = api.post("/admin/emergency-halt", {"halted": False, "reason": "feed back"}, format="json",
                      HTTP_X_ADMIN_KEY=KEY)
    assert lifted.json()["halted"] is False


@override_settings(ADMIN_API_KEY=KEY)
@pytest.mark.parametrize("body", [{"halted": True}, {"halted": "maybe", "reason": "x"}, {"reason": "x"}, {}])
def test_a_halt_needs_a_state_and_a_reason(api, db, body):
    response = api.post("/admin/emergency-halt", body, format="json", HTTP_X_ADMIN_KEY=KEY)
    assert response.status_code == 400
    assert response.json()["errors"]


@override_settings(ADMIN_API_KEY=KEY)
def test_per_client_halt(api, alpha):
    response = api.post("/admin/clients/alpha/halt", {"halted": True, "reason": "review"}, format="json",
                        HTTP_X_ADMIN_KEY=KEY)
    assert response.json() == {"halted": True, "reason": "review"}
    assert api.get("/admin/clients/alpha/halt", HTTP_X_ADMIN_KEY=KEY).json()["halted"] is True
    assert api.get("/admin/clients/nobody/halt", HTTP_X_ADMIN_KEY=KEY).status_code == 404
    assert audit_events(client_id="alpha", kind="halt.client")


def test_breaker_reset_needs_a_tripped_breaker_and_an_owner(api, alpha):
    url = "/clients/alpha/risk/reset-breaker"
    assert api.post(url, {"note": "ok"}, format="json", **bearer(alpha.trader)).status_code == 403
    assert api.post(url, {"note": "ok"}, format="json", **bearer(alpha.owner)).status_code == 409
    with tenant_context(alpha.client):
        RiskStateRecord.objects.update_or_create(
            singleton=True, defaults={"trading_state": "HALTED", "reason": "circuit_breaker", "loss_streak": 3}
        )
    response = api.post(url, {"note": "reviewed the losses"}, format="json", **bearer(alpha.owner))
    assert response.status_code == 200
    assert response.json()["trading_state"] == "ACTIVE" and response.json()["loss_streak"] == 0
    assert audit_events(client_id="alpha", kind="risk.state_changed")
