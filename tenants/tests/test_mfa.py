"""Two-factor authentication (TOTP, django-otp): enrolment, confirmation with recovery codes, the
two-step login (API, desk, console), the throttle on wrong codes, disabling, an operator's reset,
a client's mandatory policy, and staff needing a second factor in production settings. Every
event audited. Codes are computed as an authenticator app would (RFC 6238), nothing is mocked."""
from __future__ import annotations

import io
import time

import jwt
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import Client as Browser
from django.test import override_settings
from django_otp.oath import hotp

from tenants import mfa
from tenants.models import EncryptedTOTPDevice
from tenants.resolution import WS_CLOSE_FORBIDDEN, stream_access_verdict
from tenants.services import token_pair_issue
from tradingplatform.testing import PASSWORD, audit_events


def totp_code(device: EncryptedTOTPDevice) -> str:
    """The code an authenticator shows now, or the next one if this one was already used (the
    device accepts one step either side of now, each step once)."""
    device.refresh_from_db()
    now_step = int((time.time() - device.t0) // device.step) + device.drift
    return str(hotp(device.bin_key, max(now_step, device.last_t + 1), device.digits)).zfill(device.digits)


def _login(api, username, password=PASSWORD, ip="10.1.0.1"):
    return api.post("/auth/login", {"username": username, "password": password}, format="json", REMOTE_ADDR=ip)


def _login_2fa(api, mfa_token, code, ip="10.1.0.1"):
    return api.post("/auth/login/2fa", {"mfa_token": mfa_token, "code": code}, format="json", REMOTE_ADDR=ip)


def _bearer(response) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {response.json()['access']}"}


def _claims(access: str) -> dict:
    return jwt.decode(access, options={"verify_signature": False})


def _enrolled(user) -> tuple[EncryptedTOTPDevice, list[str]]:
    """`user` with a confirmed device, through the service every path uses."""
    mfa.mfa_device_enrol(user=user)
    device = mfa.mfa_device_get(user=user, confirmed=False)
    codes = mfa.mfa_device_confirm(user=user, code=totp_code(device))
    device.refresh_from_db()
    return device, codes


def _otp_header(user) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token_pair_issue(user=user, second_factor=True).access_token}"}


def _pwd_header(user) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token_pair_issue(user=user).access_token}"}


# --- enrolment and confirmation ------------------------------------------------------------------


def test_enrol_returns_the_secret_and_uri_unconfirmed_and_is_audited(api, alpha):
    headers = _pwd_header(alpha.trader)
    response = api.post("/auth/2fa/enrol", **headers)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["confirmed"] is False and len(body["secret"]) == 32
    assert body["otpauth_uri"].startswith("otpauth://totp/") and f"secret={body['secret']}" in body["otpauth_uri"]
    # not confirmed: the login is still one step
    assert "access" in _login(api, "alpha-trader").json()
    assert api.get("/auth/2fa", **headers).json() == {
        "enabled": False, "enrolment_pending": True, "recovery_codes_left": 0, "this_login_used_second_factor": False}
    (event,) = audit_events(kind="auth.mfa_enrolled", actor_id="alpha-trader")
    assert event.client_id == "" and event.payload == {"user": "alpha-trader"}
    assert body["secret"] not in str(event.payload)


@override_settings(OTP_TOTP_THROTTLE_FACTOR=0)
def test_confirm_with_a_code_gives_ten_recovery_codes_once_and_login_takes_two_steps(api, alpha):
    headers = _pwd_header(alpha.trader)
    assert api.post("/auth/2fa/confirm", {"code": "123456"}, format="json", **headers).status_code == 409  # nothing
    api.post("/auth/2fa/enrol", **headers)
    device = mfa.mfa_device_get(user=alpha.trader, confirmed=False)
    wrong = api.post("/auth/2fa/confirm", {"code": "000000" if totp_code(device) != "000000" else "111111"},
                     format="json", **headers)
    assert wrong.status_code == 400 and wrong.json()["errors"]["code"]
    confirmed = api.post("/auth/2fa/confirm", {"code": totp_code(device)}, format="json", **headers)
    assert confirmed.status_code == 200, confirmed.content
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert audit_events(kind="auth.mfa_confirmed", actor_id="alpha-trader")[0].payload["recovery_codes"] == 10
    # recovery codes are stored hashed
    from django_otp.plugins.otp_static.models import StaticToken

    stored = set(StaticToken.objects.filter(device__user=alpha.trader).values_list("token", flat=True))
    assert not stored & {code.replace("-", "") for code in codes} and not stored & set(codes)

    first = _login(api, "alpha-trader")
    assert first.status_code == 200
    assert first.json()["mfa_required"] is True and "access" not in first.json()
    assert not audit_events(kind="auth.login", actor_id="alpha-trader")  # not logged in yet
    second = _login_2fa(api, first.json()["mfa_token"], totp_code(device))
    assert second.status_code == 200, second.content
    assert _claims(second.json()["access"])["amr"] == ["pwd", "otp"]
    assert api.get("/auth/2fa", **_bearer(second)).json()["this_login_used_second_factor"] is True
    login = audit_events(kind="auth.login", actor_id="alpha-trader")[-1]
    assert login.client_id == "" and login.payload["second_factor"] is True
    # refresh keeps what the login was made with
    refreshed = api.post("/auth/refresh", {"refresh": second.json()["refresh"]}, format="json")
    assert _claims(refreshed.json()["access"])["amr"] == ["pwd", "otp"]
    # a used code cannot be used again
    again = _login(api, "alpha-trader").json()["mfa_token"]
    device.refresh_from_db()
    used = str(hotp(device.bin_key, device.last_t, device.digits)).zfill(6)
    assert _login_2fa(api, again, used).status_code == 401


def test_a_login_without_a_device_has_only_the_password_claim(api, alpha):
    response = _login(api, "alpha-viewer")
    assert _claims(response.json()["access"])["amr"] == ["pwd"]


# --- the second step: wrong codes, recovery codes, the login token --------------------------------


@override_settings(LOGIN_FAILURE_LIMIT=3, OTP_TOTP_THROTTLE_FACTOR=0)
def test_wrong_codes_are_refused_and_throttled_like_wrong_passwords(api, alpha):
    device, _ = _enrolled(alpha.trader)
    token = _login(api, "alpha-trader", ip="203.0.113.40").json()["mfa_token"]
    right = totp_code(device)
    wrong = "999999" if right != "999999" else "888888"
    for _ in range(3):
        refused = _login_2fa(api, token, wrong, ip="203.0.113.40")
        assert refused.status_code == 401 and refused.json()["code"] == "invalid_code"
    throttled = _login_2fa(api, token, right, ip="203.0.113.40")  # even the right code waits now
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    # the password step at that address waits too, and a right password does not reset the count
    assert _login(api, "alpha-trader", ip="203.0.113.40").status_code == 429
    failures = audit_events(kind="auth.login_failed", actor_id="alpha-trader")
    assert [event.payload["channel"] for event in failures] == ["api-2fa"] * 3
    assert audit_events(kind="auth.lockout", actor_id="alpha-trader")
    # elsewhere the user still logs in (the throttle is per address)
    elsewhere = _login(api, "alpha-trader", ip="198.51.100.40").json()["mfa_token"]
    assert _login_2fa(api, elsewhere, right, ip="198.51.100.40").status_code == 200


def test_a_device_slows_down_after_a_wrong_code(alpha):
    device, _ = _enrolled(alpha.trader)
    right = totp_code(device)
    assert mfa.mfa_code_verify(user=alpha.trader, code="999999" if right != "999999" else "888888") is None
    assert mfa.mfa_code_verify(user=alpha.trader, code=right) is None  # within the 1 s back-off
    time.sleep(1.1)
    assert mfa.mfa_code_verify(user=alpha.trader, code=right) is not None


@override_settings(OTP_TOTP_THROTTLE_FACTOR=0, OTP_STATIC_THROTTLE_FACTOR=0)
def test_a_recovery_code_works_once_and_its_use_is_audited(api, alpha):
    _, codes = _enrolled(alpha.trader)
    token = _login(api, "alpha-trader").json()["mfa_token"]
    response = _login_2fa(api, token, codes[0].upper())  # case and dashes do not matter
    assert response.status_code == 200
    assert _claims(response.json()["access"])["amr"] == ["pwd", "otp"]
    assert api.get("/auth/2fa", **_bearer(response)).json()["recovery_codes_left"] == 9
    token = _login(api, "alpha-trader").json()["mfa_token"]
    assert _login_2fa(api, token, codes[0]).status_code == 401
    (used,) = audit_events(kind="auth.mfa_recovery_used", actor_id="alpha-trader")
    assert used.payload == {"user": "alpha-trader", "recovery_codes_left": 9}
    assert codes[0] not in str(used.payload)


def test_the_login_token_is_short_lived_and_bound_to_the_password(api, alpha):
    device, _ = _enrolled(alpha.trader)
    assert _login_2fa(api, "not-a-token", "123456").json()["code"] == "invalid_mfa_token"
    token = _login(api, "alpha-trader").json()["mfa_token"]
    with override_settings(MFA_LOGIN_TOKEN_SECONDS=-1):
        assert _login_2fa(api, token, totp_code(device)).status_code == 401
    trader = type(alpha.trader).objects.get(pk=alpha.trader.pk)  # the fixture's object is shared: not this one
    trader.set_password("another-long-passphrase")
    trader.save()
    refused = _login_2fa(api, token, totp_code(device))
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_mfa_token"


# --- disabling and resetting -----------------------------------------------------------------------


@override_settings(OTP_TOTP_THROTTLE_FACTOR=0, OTP_STATIC_THROTTLE_FACTOR=0)
def test_disable_needs_a_current_code_or_a_recovery_code_and_is_audited(api, alpha):
    _, codes = _enrolled(alpha.trader)
    headers = _otp_header(alpha.trader)
    assert api.post("/auth/2fa/disable", {"code": "not-a-code"}, format="json", **headers).status_code == 400
    assert api.post("/auth/2fa/disable", {}, format="json", **headers).json()["errors"]["code"]
    assert api.post("/auth/2fa/enrol", **headers).status_code == 409  # on already
    assert api.post("/auth/2fa/disable", {"code": codes[3]}, format="json", **headers).status_code == 204
    assert "access" in _login(api, "alpha-trader").json()  # one step again
    (event,) = audit_events(kind="auth.mfa_disabled", actor_id="alpha-trader")
    assert event.payload == {"user": "alpha-trader", "with_recovery_code": True}
    assert api.post("/auth/2fa/disable", {"code": codes[4]}, format="json", **headers).status_code == 409


def test_an_operator_resets_a_lost_device_and_every_token_dies(api, alpha):
    _enrolled(alpha.trader)
    issued = _login_2fa(api, _login(api, "alpha-trader").json()["mfa_token"],
                        totp_code(mfa.mfa_device_get(user=alpha.trader)))
    out = io.StringIO()
    call_command("mfa_reset", "alpha-trader", reason="ticket 42: lost phone", actor="ops-jane", stdout=out)
    assert "reset" in out.getvalue()
    assert not mfa.mfa_enabled(user=alpha.trader)
    assert api.post("/auth/refresh", {"refresh": issued.json()["refresh"]}, format="json").status_code == 401
    (event,) = audit_events(kind="auth.mfa_reset")
    assert event.actor_type == "operator" and event.actor_id == "ops-jane"
    assert event.payload == {"user": "alpha-trader", "reason": "ticket 42: lost phone"}
    assert "access" in _login(api, "alpha-trader").json()


def test_the_enrol_command_prints_the_uri_and_recovery_codes_for_an_operator(operator):
    out = io.StringIO()
    call_command("mfa_enrol", "operator", actor="ops-root", stdout=out)
    lines = out.getvalue().splitlines()
    assert any(line.startswith("otpauth://totp/") for line in lines)
    assert len([line for line in lines if line.startswith("  ")]) == 10
    assert mfa.mfa_enabled(user=operator)
    kinds = [event.kind for event in audit_events(actor_id="ops-root")]
    assert kinds == ["auth.mfa_enrolled", "auth.mfa_confirmed"]


# --- a client's policy ---------------------------------------------------------------------------


def test_an_owner_makes_2fa_mandatory_for_the_team_and_members_without_it_get_403(api, alpha, beta):
    policy = "/clients/alpha/security/mfa-policy"
    assert api.get(policy, **_pwd_header(alpha.viewer)).json() == {"required": False}
    assert api.post(policy, {"required": True}, format="json", **_otp_header(alpha.trader)).status_code == 403
    assert api.post(policy, {"required": "maybe"}, format="json", **_otp_header(alpha.owner)).status_code == 400
    # the owner's own login must have used a second factor first
    refused = api.post(policy, {"required": True}, format="json", **_pwd_header(alpha.owner))
    assert refused.status_code == 403 and refused.json()["code"] == "mfa_required"
    assert api.post(policy, {"required": True}, format="json", **_otp_header(alpha.owner)).json() == {
        "required": True}
    (event,) = audit_events(client_id="alpha", kind="client.mfa_policy_changed")
    assert event.actor_id == "alpha-owner" and event.payload == {"required": True, "before": False}

    status = "/clients/alpha/agent/status"
    denied = api.get(status, **_pwd_header(alpha.trader))
    assert denied.status_code == 403 and denied.json()["code"] == "mfa_required"
    assert api.get(status, **_otp_header(alpha.trader)).status_code == 200
    assert api.get("/clients/beta/agent/status", **_pwd_header(beta.trader)).status_code == 200  # beta: no policy
    assert api.get(status, **_pwd_header(beta.trader)).status_code == 404  # non-members still see nothing
    # the stream too: refused at once, and an open one closes at its next re-check
    token = str(token_pair_issue(user=alpha.trader).access_token)
    assert stream_access_verdict(raw_token=token, client_id="alpha") == WS_CLOSE_FORBIDDEN
    otp_token = str(token_pair_issue(user=alpha.trader, second_factor=True).access_token)
    assert stream_access_verdict(raw_token=otp_token, client_id="alpha") is None


def test_the_desk_asks_for_the_code_and_enforces_the_clients_policy(alpha, beta):
    from tenants.mfa import client_mfa_policy_set

    client_mfa_policy_set(client=alpha.client, required=True, actor=alpha.owner, actor_verified=True)
    # a member who logged in with the password alone: a clear 403 on the client's pages
    browser = Browser()
    assert browser.post("/login", {"username": "alpha-viewer", "password": PASSWORD}).status_code == 302
    page = browser.get("/desk/alpha/")
    assert page.status_code == 403 and b'data-code="mfa_required"' in page.content
    # nor does the list of their clients show that client's book
    from tenants.services import membership_set

    membership_set(client=beta.client, user=alpha.viewer, role="viewer")
    home = browser.get("/")
    assert home.status_code == 200 and b'data-code="mfa_required"' in home.content
    assert home.content.count(b'data-code="mfa_required"') == 1  # beta's row is whole

    device, _ = _enrolled(alpha.trader)
    browser = Browser()
    step_one = browser.post("/login", {"username": "alpha-trader", "password": PASSWORD, "next": "/desk/alpha/"})
    assert step_one.status_code == 200 and b'name="code"' in step_one.content  # the second form
    assert browser.get("/desk/alpha/").status_code == 302  # not logged in yet
    token = step_one.context["mfa_token"]
    wrong = browser.post("/login", {"mfa_token": token, "code": "not-it", "next": "/desk/alpha/"})
    assert wrong.status_code == 401 and b"not right" in wrong.content
    done = browser.post("/login", {"mfa_token": token, "code": totp_code(device), "next": "/desk/alpha/"})
    assert done.status_code == 302 and done["Location"] == "/desk/alpha/"
    assert browser.get("/desk/alpha/").status_code == 200
    channels = [event.payload["channel"] for event in audit_events(kind__startswith="auth.login",
                                                                   actor_id="alpha-trader")]
    assert channels == ["desk-2fa", "desk"]


# --- staff: required in production ------------------------------------------------------------------


@override_settings(MFA_REQUIRED_FOR_STAFF=True)
def test_staff_without_a_second_factor_are_refused_where_production_requires_it(api, alpha, operator):
    denied = api.post("/clients/onboard", {}, format="json", **_pwd_header(operator))
    assert denied.status_code == 403 and denied.json()["code"] == "mfa_required"
    assert api.get("/clients/alpha/agent/status", **_pwd_header(operator)).json()["code"] == "mfa_required"
    assert api.post("/clients/onboard", {}, format="json", **_otp_header(operator)).status_code == 400  # let in
    assert api.get("/clients/alpha/agent/status", **_otp_header(operator)).status_code == 200
    # the admin key is not a user: unchanged
    key = {"HTTP_X_ADMIN_KEY": django_settings.ADMIN_API_KEY}
    assert api.get("/admin/emergency-halt", **key).status_code == 200
    # an operator is enrolled by another (a password alone must not make a second factor)
    assert api.post("/auth/2fa/enrol", **_pwd_header(operator)).json()["code"] == "mfa_enrol_by_operator"

    # the console: no device, no entry; with one, the code is asked for
    console = Browser()
    refused = console.post("/admin/login/?next=/admin/", {"username": "operator", "password": PASSWORD})
    assert refused.status_code == 200 and b"mfa_enrol" in refused.content
    assert console.get("/admin/").status_code == 302
    _, codes = mfa.mfa_staff_enrol(user=operator, actor="tests")
    device = mfa.mfa_device_get(user=operator)
    missing = console.post("/admin/login/?next=/admin/", {"username": "operator", "password": PASSWORD})
    assert b"Enter the code" in missing.content
    entered = console.post("/admin/login/?next=/admin/",
                           {"username": "operator", "password": PASSWORD, "otp_token": totp_code(device)})
    assert entered.status_code == 302
    assert console.get("/admin/").status_code == 200
    assert audit_events(kind="auth.login", actor_id="operator")[-1].payload["second_factor"] is True
    # a session logged in without the code (development) is not staff once production rules apply
    with override_settings(MFA_REQUIRED_FOR_STAFF=False):
        other = Browser()
        other.force_login(operator)
    assert other.get("/admin/").status_code == 302


def test_production_requires_a_second_factor_of_staff_and_development_does_not():
    import os
    import subprocess
    import sys

    from tradingplatform.tests.test_settings import SECRETS, STRONG

    probe = ("import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tradingplatform.settings'); "
             "django.setup(); from django.conf import settings; from django.contrib import admin; "
             "print(settings.MFA_REQUIRED_FOR_STAFF, admin.site.__class__.__name__)")
    results = {}
    for environment in ("production", "development"):
        env = {key: value for key, value in os.environ.items() if key not in SECRETS | {"DEBUG"}}
        env.update(ENVIRONMENT=environment, **STRONG)
        result = subprocess.run([sys.executable, "-c", probe], cwd=django_settings.BASE_DIR, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        results[environment] = result.stdout.split()
    assert results == {"production": ["True", "OperatorAdminSite"], "development": ["False", "OperatorAdminSite"]}


@pytest.mark.parametrize("path", ["/auth/2fa", "/auth/2fa/enrol", "/auth/2fa/confirm", "/auth/2fa/disable"])
def test_the_2fa_endpoints_need_a_login(api, db, path):
    response = api.post(path, {}, format="json") if path != "/auth/2fa" else api.get(path)
    assert response.status_code == 401
