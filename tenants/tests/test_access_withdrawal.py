"""Withdrawing access withdraws it everywhere within seconds: a password change (by the user or an
operator) revokes every refresh token and access token; refresh rotation ends with the session;
an open websocket is closed when its token expires, the membership goes, the role no longer
allows it, the user is deactivated or the password changes."""
import struct
import time
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.test import override_settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from tradingplatform.testing import PASSWORD, audit_events
from tradingplatform.tests.servers import Websocket, daphne_server, subprocess_env_for_tests

NEW_PASSWORD = "an-entirely-new-passphrase-42"


def _login(api, username, password=PASSWORD):
    response = api.post("/auth/login", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _refresh(api, refresh):
    return api.post("/auth/refresh", {"refresh": refresh}, format="json")


def test_a_password_change_by_the_user_revokes_every_token(api, alpha):
    first, second = _login(api, "alpha-trader"), _login(api, "alpha-trader")
    response = api.post("/auth/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                        format="json", HTTP_AUTHORIZATION=f"Bearer {first['access']}")
    assert response.status_code == 204, response.content
    for session in (first, second):
        assert _refresh(api, session["refresh"]).status_code == 401
        assert api.get("/clients/alpha/agent/status",
                       HTTP_AUTHORIZATION=f"Bearer {session['access']}").status_code == 401
    assert _login(api, "alpha-trader", NEW_PASSWORD)["access"]
    revoked = audit_events(kind="auth.tokens_revoked")[-1]
    assert revoked.payload == {"user": "alpha-trader", "reason": "password_changed", "refresh_tokens": 2}
    assert revoked.actor_id == "alpha-trader"
    assert audit_events(kind="auth.password_changed")


def test_a_wrong_current_password_or_a_weak_new_one_is_400_and_changes_nothing(api, alpha):
    session = _login(api, "alpha-trader")
    response = api.post("/auth/password", {"current_password": "nope", "new_password": "123"},
                        format="json", HTTP_AUTHORIZATION=f"Bearer {session['access']}")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"current_password", "new_password"}
    assert _refresh(api, session["refresh"]).status_code == 200


def test_a_password_change_by_an_operator_revokes_every_token(api, alpha, client):
    session = _login(api, "alpha-viewer")
    client.force_login(get_user_model().objects.create_superuser(username="root", password=NEW_PASSWORD))
    response = client.post(f"/admin/auth/user/{alpha.viewer.pk}/password/",
                           {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"})
    assert response.status_code == 302, response.content[:2000]
    assert _refresh(api, session["refresh"]).status_code == 401
    assert api.get("/clients/alpha/agent/status", HTTP_AUTHORIZATION=f"Bearer {session['access']}").status_code == 401


@override_settings(JWT_SESSION_MAX_HOURS=2)
def test_refresh_rotation_ends_with_the_session_so_a_stolen_refresh_token_dies(api, alpha):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        refresh = _login(api, "alpha-trader")["refresh"]
        traveller.shift(timedelta(minutes=90))
        rotated = _refresh(api, refresh)
        assert rotated.status_code == 200
        traveller.shift(timedelta(minutes=31))  # 2 h 1 min after the login
        assert _refresh(api, rotated.json()["refresh"]).status_code == 401


# --- open websockets, through a real daphne server -----------------------------------------------
# Daphne sees only committed rows, so each test commits its user and its change on a connection of
# its own (autocommit, outside the test's transaction) and deletes them at the end.


@pytest.fixture(scope="module")
def daphne(django_db_setup, django_db_blocker):
    with daphne_server({**subprocess_env_for_tests(), "WS_REAUTH_SECONDS": "0.3"}) as port:
        yield port


@pytest.fixture
def committed(alpha):
    """(run SQL committed at once, a committed viewer of alpha with PASSWORD)."""
    from django.db import connections

    connection = connections.create_connection("default")
    connection.set_autocommit(True)
    cursor = connection.cursor()
    username = f"ws-{time.monotonic_ns()}"
    cursor.execute("INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, "
                   "is_staff, is_active, date_joined) VALUES (%s, false, %s, '', '', '', false, true, now()) "
                   "RETURNING id", [make_password(PASSWORD), username])
    user_id = cursor.fetchone()[0]
    cursor.execute("INSERT INTO tenants_membership (user_id, client_id, role, created_at) "
                   "VALUES (%s, %s, 'viewer', now())", [user_id, alpha.client.pk])
    try:
        yield cursor.execute, get_user_model().objects.get(pk=user_id)
    finally:
        cursor.execute("DELETE FROM tenants_membership WHERE user_id = %s", [user_id])
        cursor.execute("DELETE FROM auth_user WHERE id = %s", [user_id])
        connection.close()


def _closed_after(port, token, change) -> tuple[int | None, float]:
    """Open the stream with `token`, apply `change`, and return the close code (None if the stream
    stayed open 4 s) and how many seconds after the change it came."""
    ws = Websocket(port, f"/clients/alpha/stream?token={token}")
    try:
        assert ws.status == 101
        time.sleep(0.3)
        change()
        started = time.monotonic()
        ws.sock.settimeout(4)
        try:
            while True:
                opcode, payload = ws.frame()
                if opcode == 8:
                    return struct.unpack("!H", payload[:2])[0], time.monotonic() - started
        except (TimeoutError, OSError):
            return None, time.monotonic() - started
    finally:
        ws.close()


def test_an_open_stream_is_closed_when_the_password_changes(daphne, committed):
    execute, user = committed
    change = lambda: execute("UPDATE auth_user SET password = %s WHERE id = %s",  # noqa: E731
                             [make_password(NEW_PASSWORD), user.pk])
    code, seconds = _closed_after(daphne, AccessToken.for_user(user), change)
    assert code == 4401 and seconds < 3


def test_an_open_stream_is_closed_when_the_membership_is_removed(daphne, committed):
    execute, user = committed
    change = lambda: execute("DELETE FROM tenants_membership WHERE user_id = %s", [user.pk])  # noqa: E731
    assert _closed_after(daphne, AccessToken.for_user(user), change)[0] == 4404


def test_an_open_stream_is_closed_when_the_user_is_deactivated(daphne, committed):
    execute, user = committed
    change = lambda: execute("UPDATE auth_user SET is_active = false WHERE id = %s", [user.pk])  # noqa: E731
    assert _closed_after(daphne, AccessToken.for_user(user), change)[0] == 4401


def test_an_open_stream_is_closed_when_the_role_no_longer_allows_it(daphne, committed):
    execute, user = committed
    # staff without a membership reads every client; no longer staff, no longer allowed
    execute("DELETE FROM tenants_membership WHERE user_id = %s", [user.pk])
    execute("UPDATE auth_user SET is_staff = true WHERE id = %s", [user.pk])
    change = lambda: execute("UPDATE auth_user SET is_staff = false WHERE id = %s", [user.pk])  # noqa: E731
    assert _closed_after(daphne, AccessToken.for_user(user), change)[0] == 4404


def test_an_open_stream_is_closed_when_its_token_expires(daphne, committed):
    _, user = committed
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=1))
    code, seconds = _closed_after(daphne, token, lambda: None)
    assert code == 4401 and seconds < 3


def test_an_open_stream_stays_open_while_access_holds(daphne, committed):
    _, user = committed
    assert _closed_after(daphne, AccessToken.for_user(user), lambda: None)[0] is None
