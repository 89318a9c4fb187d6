"""One login throttle for the API and the console: an attacker at one address slows down (growing
delay), the victim at another address and colleagues at the same address log in; every lockout
is audited; a much higher per-address ceiling stays."""
import re
from datetime import timedelta

import time_machine
from django.test import override_settings
from django.utils import timezone

from tradingplatform.testing import PASSWORD, audit_events


def _login(api, username, password=PASSWORD, ip="10.0.0.1", **headers):
    return api.post("/auth/login", {"username": username, "password": password}, format="json", REMOTE_ADDR=ip,
                    **headers)


def _console_login(client, username, password=PASSWORD, ip="10.0.0.1"):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_failures_at_one_address_never_lock_the_user_out_at_another(api, alpha):
    for _ in range(10):
        _login(api, "alpha-trader", "wrong", ip="203.0.113.66")
    assert _login(api, "alpha-trader", ip="198.51.100.7").status_code == 200


def test_colleagues_at_a_shared_address_are_unaffected_by_one_users_typos(api, alpha):
    for _ in range(10):
        _login(api, "alpha-trader", "wrong", ip="192.0.2.10")
    assert _login(api, "alpha-owner", ip="192.0.2.10").status_code == 200
    assert _login(api, "alpha-viewer", ip="192.0.2.10").status_code == 200


@override_settings(LOGIN_FAILURE_LIMIT=3, LOGIN_DELAY_BASE_SECONDS=30, LOGIN_DELAY_MAX_SECONDS=900)
def test_repeated_failures_slow_the_attacker_down_with_a_growing_delay_and_each_lockout_is_audited(api, alpha):
    for _ in range(2):
        assert _login(api, "alpha-trader", "wrong", ip="203.0.113.9").status_code == 401
    assert _login(api, "alpha-trader", "wrong", ip="203.0.113.9").status_code == 401  # the third: 30 s delay
    throttled = _login(api, "alpha-trader", ip="203.0.113.9")  # even the right password waits
    assert throttled.status_code == 429
    assert 25 <= int(throttled["Retry-After"]) <= 30
    delays = []
    start = timezone.now()
    with time_machine.travel(start, tick=True) as traveller:
        for _ in range(3):
            traveller.shift(timedelta(seconds=int(_login(api, "alpha-trader", ip="203.0.113.9")["Retry-After"]) + 1))
            assert _login(api, "alpha-trader", "wrong", ip="203.0.113.9").status_code == 401
            delays.append(int(_login(api, "alpha-trader", ip="203.0.113.9")["Retry-After"]))
        assert delays[0] > 30 and delays[1] > delays[0] and delays[2] > delays[1]  # 60, 120, 240
        lockouts = audit_events(kind="auth.lockout", actor_id="alpha-trader")
        assert len(lockouts) == 4
        assert {event.payload["scope"] for event in lockouts} == {"user_at_address"}
        assert lockouts[0].payload["ip_address"] == "203.0.113.9"
        # once the delay is over the right password works, and the count starts again
        traveller.shift(timedelta(seconds=delays[-1] + 1))
        assert _login(api, "alpha-trader", ip="203.0.113.9").status_code == 200
        assert _login(api, "alpha-trader", "wrong", ip="203.0.113.9").status_code == 401
        assert _login(api, "alpha-trader", ip="203.0.113.9").status_code == 200


@override_settings(LOGIN_ADDRESS_FAILURE_LIMIT=20)
def test_one_address_spraying_many_usernames_hits_the_much_higher_address_ceiling(api, alpha):
    for n in range(19):
        assert _login(api, f"user{n}", "wrong", ip="198.18.0.1").status_code == 401
    assert _login(api, "alpha-owner", ip="198.18.0.1").status_code == 200  # 19 failures: still fine
    assert _login(api, "user19", "wrong", ip="198.18.0.1").status_code == 401
    assert _login(api, "alpha-owner", ip="198.18.0.1").status_code == 429
    assert _login(api, "alpha-owner", ip="198.18.0.2").status_code == 200
    assert [event.payload["scope"] for event in audit_events(kind="auth.lockout")] == ["address"]


def test_the_console_login_is_throttled_by_the_same_counter(client, operator):
    for _ in range(30):
        response = _console_login(client, "operator", "wrong", ip="203.0.113.50")
        assert response.status_code == 200 and "_auth_user_id" not in client.session
    refused = _console_login(client, "operator", ip="203.0.113.50")
    assert "_auth_user_id" not in client.session
    assert re.search(r"Too many failed login attempts. Try again in \d+ seconds", refused.content.decode())
    failures = audit_events(kind="auth.login_failed", actor_id="operator")
    assert {event.payload["channel"] for event in failures} == {"console"}
    assert audit_events(kind="auth.lockout", actor_id="operator")
    # the API counts the console's failures: the same user at the same address waits there too
    from rest_framework.test import APIClient

    assert _login(APIClient(), "operator", ip="203.0.113.50").status_code == 429
    # and from another address the operator logs in to the console
    assert _console_login(client, "operator", ip="198.51.100.1").status_code == 302
    assert "_auth_user_id" in client.session


def test_api_login_updates_last_login(api, alpha):
    assert alpha.trader.last_login is None
    assert _login(api, "alpha-trader").status_code == 200
    alpha.trader.refresh_from_db()
    assert alpha.trader.last_login is not None


@override_settings(TRUSTED_PROXIES=["10.10.0.0/16"])
def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(api, alpha):
    # through the trusted proxy: the address is the forwarded one, so one user's lockout there
    # does not touch the same user behind the same proxy from elsewhere
    for _ in range(6):
        _login(api, "alpha-trader", "wrong", ip="10.10.0.5", HTTP_X_FORWARDED_FOR="203.0.113.77")
    assert _login(api, "alpha-trader", ip="10.10.0.5", HTTP_X_FORWARDED_FOR="198.51.100.3").status_code == 200
    assert audit_events(kind="auth.login_failed")[-1].payload["ip_address"] == "203.0.113.77"
    # from an untrusted socket the header is ignored: the attacker cannot pick a fresh address
    for n in range(6):
        _login(api, "alpha-owner", "wrong", ip="198.51.100.99", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert _login(api, "alpha-owner", ip="198.51.100.99", HTTP_X_FORWARDED_FOR="192.0.2.200").status_code == 429


def test_while_redis_is_down_logins_work_and_are_still_throttled_by_postgresql(api, alpha):
    """The throttle's counts go to PostgreSQL while Redis cannot be reached: the same policy,
    never failing open."""
    from django.conf import settings
    from django.db import connection

    from tradingplatform.tests.servers import free_port

    unreachable = dict(settings.CACHES["default"], LOCATION=f"redis://127.0.0.1:{free_port()}/0")
    with override_settings(CACHES=dict(settings.CACHES, default=unreachable), LOGIN_FAILURE_LIMIT=3):
        assert _login(api, "alpha-trader", ip="203.0.113.50").status_code == 200
        for _ in range(3):
            assert _login(api, "alpha-trader", "wrong", ip="203.0.113.50").status_code == 401
        throttled = _login(api, "alpha-trader", ip="203.0.113.50")
        assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
        assert _login(api, "alpha-trader", ip="198.51.100.50").status_code == 200  # elsewhere: unaffected
    with connection.cursor() as cursor:  # the counts are rows of the table, not in this process
        cursor.execute("SELECT count(*) FROM login_throttle_cache")
        assert cursor.fetchone()[0] >= 2
    assert [event.payload["scope"] for event in audit_events(kind="auth.lockout", actor_id="alpha-trader")] == [
        "user_at_address"]
