import base64
import json
from datetime import timedelta

import pytest
from django.test import override_settings
from django_tenants.utils import schema_context
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from audit.models import AuditEvent
from audit.rls import audit_read
from brokers.models import BrokerConnection
from tenants.models import Client, Membership
from tradingplatform.testing import PASSWORD, bearer

ADMIN_KEY = "k" * 40


def _login(api, username, password=PASSWORD, ip="10.0.0.1"):
    return api.post("/auth/login", {"username": username, "password": password}, format="json", REMOTE_ADDR=ip)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- login, refresh, logout -------------------------------------------------------------------


def test_login_returns_a_token_pair(api, alpha):
    response = _login(api, "alpha-trader")
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    assert AccessToken(body["access"])["user_id"] == str(alpha.trader.pk)


def test_bad_password_is_401_without_saying_which_part_was_wrong(api, alpha):
    response = _login(api, "alpha-trader", "wrong")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid username or password."
    assert _login(api, "nobody", "wrong").json()["detail"] == "Invalid username or password."


def test_logins_and_failed_logins_are_audited_without_the_password(api, alpha):
    _login(api, "alpha-trader", "wrong-password-123")
    _login(api, "alpha-trader")
    with audit_read(client_id=None, is_admin=True):
        events = list(AuditEvent.objects.filter(actor_id="alpha-trader").order_by("sequence"))
    assert [event.kind for event in events] == ["auth.login_failed", "auth.login"]
    assert "wrong-password-123" not in json.dumps([event.payload for event in events])


def test_missing_fields_are_400_with_field_errors(api, db):
    response = api.post("/auth/login", {"username": "x"}, format="json")
    assert response.status_code == 400
    assert "password" in response.json()["errors"]


def test_refresh_rotates_and_the_old_refresh_token_is_dead(api, alpha):
    first = _login(api, "alpha-trader").json()
    rotated = api.post("/auth/refresh", {"refresh": first["refresh"]}, format="json")
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != first["refresh"]
    reused = api.post("/auth/refresh", {"refresh": first["refresh"]}, format="json")
    assert reused.status_code == 401
    assert api.post("/auth/refresh", {"refresh": rotated.json()["refresh"]}, format="json").status_code == 200


def test_logout_blacklists_the_refresh_token(api, alpha):
    tokens = _login(api, "alpha-trader").json()
    assert api.post("/auth/logout", {"refresh": tokens["refresh"]}, format="json").status_code == 204
    assert api.post("/auth/refresh", {"refresh": tokens["refresh"]}, format="json").status_code == 401


# --- tokens that must never work ----------------------------------------------------------------


def _status_with(api, client_id, header):
    return api.get(f"/clients/{client_id}/agent/status", HTTP_AUTHORIZATION=header)


def test_a_valid_access_token_reads_its_own_client(api, alpha):
    assert api.get("/clients/alpha/agent/status", **bearer(alpha.viewer)).status_code == 200


def test_expired_access_token_is_401(api, alpha):
    token = AccessToken.for_user(alpha.viewer)
    token.set_exp(lifetime=-timedelta(seconds=1))
    assert _status_with(api, "alpha", f"Bearer {token}").status_code == 401


def test_tampered_signature_is_401(api, alpha):
    header, payload, signature = str(AccessToken.for_user(alpha.viewer)).split(".")
    forged = ".".join([header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")])
    assert _status_with(api, "alpha", f"Bearer {forged}").status_code == 401


def test_tampered_payload_is_401(api, alpha, beta):
    header, payload, signature = str(AccessToken.for_user(alpha.viewer)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["user_id"] = str(beta.owner.pk)
    assert _status_with(api, "beta", f"Bearer {header}.{_b64(claims)}.{signature}").status_code == 401


def test_alg_none_is_401(api, alpha):
    claims = dict(AccessToken.for_user(alpha.viewer).payload)
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert _status_with(api, "alpha", f"Bearer {unsigned}").status_code == 401


def test_refresh_token_used_as_access_token_is_401(api, alpha):
    assert _status_with(api, "alpha", f"Bearer {RefreshToken.for_user(alpha.viewer)}").status_code == 401


def test_token_of_a_deactivated_user_is_401(api, alpha):
    header = bearer(alpha.viewer)
    alpha.viewer.is_active = False
    alpha.viewer.save()
    assert api.get("/clients/alpha/agent/status", **header).status_code == 401


# --- onboarding ----------------------------------------------------------------------------------

ONBOARD = {
    "client_id": "acme",
    "name": "Acme Capital",
    "owner": {"username": "acme-owner", "password": "a-long-and-unusual-passphrase", "email": "o@acme.example"},
    "broker": {"broker": "mock", "credentials": {}},
}


@override_settings(ADMIN_API_KEY=ADMIN_KEY)
def test_onboarding_with_the_admin_key_creates_the_client_and_its_broker_link(api, db):
    response = api.post("/clients/onboard", ONBOARD, format="json", HTTP_X_ADMIN_KEY=ADMIN_KEY)
    assert response.status_code == 201, response.content
    assert response.json()["client_id"] == "acme"
    assert Membership.objects.get(client__client_id="acme").role == "owner"
    assert "password" not in json.dumps(response.json())
    with schema_context("client_acme"):
        assert BrokerConnection.objects.get().broker == "mock"


@override_settings(ADMIN_API_KEY=ADMIN_KEY)
def test_every_onboarding_error_is_reported_at_once(api, alpha):
    body = {"client_id": "Bad Id", "name": "", "owner": {"username": "alpha-owner", "password": "123", "email": "no"}}
    errors = api.post("/clients/onboard", body, format="json", HTTP_X_ADMIN_KEY=ADMIN_KEY).json()["errors"]
    assert set(errors) == {"client_id", "name", "owner"}
    assert "email" in errors["owner"]


@override_settings(ADMIN_API_KEY=ADMIN_KEY)
def test_onboarding_with_invalid_broker_credentials_creates_nothing(api, db):
    body = {**ONBOARD, "broker": {"broker": "ibkr", "credentials": {"host": "127.0.0.1", "port": 0}}}
    response = api.post("/clients/onboard", body, format="json", HTTP_X_ADMIN_KEY=ADMIN_KEY)
    assert response.status_code == 400
    assert "port" in response.json()["errors"]["broker"]["credentials"]
    assert not Client.objects.filter(client_id="acme").exists()


def test_onboarding_with_a_staff_token(api, operator):
    response = api.post("/clients/onboard", ONBOARD, format="json", **bearer(operator))
    assert response.status_code == 201


@override_settings(ADMIN_API_KEY=ADMIN_KEY)
@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"HTTP_X_ADMIN_KEY": "wrong"}, 403)],
)
def test_onboarding_refuses_callers_without_operator_rights(api, db, headers, status):
    assert api.post("/clients/onboard", ONBOARD, format="json", **headers).status_code == status
    assert not Client.objects.filter(client_id="acme").exists()


def test_onboarding_refuses_a_non_staff_token(api, alpha):
    response = api.post("/clients/onboard", ONBOARD, format="json", **bearer(alpha.owner))
    assert response.status_code == 403


@override_settings(ADMIN_API_KEY="")
def test_an_unset_admin_key_matches_nothing(api, db):
    assert api.post("/clients/onboard", ONBOARD, format="json", HTTP_X_ADMIN_KEY="").status_code == 401


@override_settings(ADMIN_API_KEY=ADMIN_KEY)
@pytest.mark.parametrize(
    ("change", "error_path"),
    [
        ({"client_id": "alpha"}, ("client_id",)),
        ({"client_id": "Not A Slug"}, ("client_id",)),
        ({"owner": {**ONBOARD["owner"], "password": "12345678"}}, ("owner", "password")),
        ({"owner": {**ONBOARD["owner"], "email": "not-an-email"}}, ("owner", "email")),
        ({"name": ""}, ("name",)),
        ({"broker": {"broker": "etrade"}}, ("broker", "broker")),
    ],
)
def test_invalid_onboarding_is_400_with_field_errors(api, alpha, change, error_path):
    clients_before = Client.objects.count()
    response = api.post("/clients/onboard", {**ONBOARD, **change}, format="json", HTTP_X_ADMIN_KEY=ADMIN_KEY)
    assert response.status_code == 400
    errors = response.json()["errors"]
    for key in error_path:
        errors = errors[key]
    assert errors
    assert Client.objects.count() == clients_before


@override_settings(ADMIN_API_KEY=ADMIN_KEY)
def test_onboarding_opens_the_client_audit_chain_without_secrets(api, db):
    body = {**ONBOARD, "broker": {"broker": "phillip", "credentials": {
        "client_id": "acme-desk", "client_secret": "never-in-audit", "request_retries": 1,
        "request_backoff_seconds": 0.1, "exchange": "CME", "currency": "USD"}}}
    assert api.post("/clients/onboard", body, format="json", HTTP_X_ADMIN_KEY=ADMIN_KEY).status_code == 201
    with audit_read(client_id=None, is_admin=True):
        (event,) = AuditEvent.objects.filter(client_id="acme")
    assert (event.sequence, event.kind, event.actor_id) == (1, "client.onboarded", "admin-api-key")
    assert event.payload == {"name": "Acme Capital", "owner": "acme-owner", "broker": "phillip"}
    assert "never-in-audit" not in json.dumps(event.payload)
