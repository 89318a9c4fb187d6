"""No published secret: every process but the test suite refuses to start without its secrets,
whatever ENVIRONMENT says; the check runs in a fresh interpreter, as at start-up."""
import os
import subprocess
import sys
import time

import jwt
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from tradingplatform.testing import bearer

SECRETS = {"SECRET_KEY", "JWT_SECRET", "FERNET_KEYS", "ENCRYPTION_KEY", "ADMIN_API_KEY"}
STRONG = {
    "SECRET_KEY": "s" * 50, "JWT_SECRET": "j" * 40,
    "FERNET_KEYS": "a-real-key-material-0123456789-abcdef,an-older-key-material-0123456789-xyz",
    "ADMIN_API_KEY": "k" * 40, "ALLOWED_HOSTS": "desk.example.com",
}
# The development defaults this repository once published (they must never work again).
PUBLISHED_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789"
PUBLISHED = {
    "SECRET_KEY": "dev-only-django-secret-key-change-me",
    "JWT_SECRET": PUBLISHED_JWT_SECRET,
    "FERNET_KEYS": "ZGV2LW9ubHktZmVybmV0LWtleS1jaGFuZ2UtbWUtMDA=",
}


def _load_settings(**environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in SECRETS | {"DEBUG"}}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", "import tradingplatform.settings as s; print(s.FERNET_KEYS[0], s.AUTO_CREATE_TABLES)"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("environment", ["development", "production"])
def test_a_process_that_is_not_a_test_refuses_to_start_without_its_secrets(environment):
    result = _load_settings(ENVIRONMENT=environment)
    assert result.returncode != 0
    assert "Refusing to start without its secrets" in result.stderr
    for name in ("SECRET_KEY", "JWT_SECRET", "FERNET_KEYS", "ADMIN_API_KEY"):
        assert f"{name} is not set" in result.stderr


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_a_once_published_default_is_refused_in_any_environment(name):
    result = _load_settings(ENVIRONMENT="development", **{**STRONG, name: PUBLISHED[name]})
    assert result.returncode != 0
    assert f"{name} is a value once published" in result.stderr
    assert PUBLISHED[name] not in result.stderr


def test_short_secrets_are_refused():
    result = _load_settings(ENVIRONMENT="development", **{**STRONG, "JWT_SECRET": "short"})
    assert result.returncode != 0 and "JWT_SECRET is shorter than 32" in result.stderr


def test_production_starts_with_real_secrets_and_without_auto_migration():
    result = _load_settings(ENVIRONMENT="production", **STRONG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["a-real-key-material-0123456789-abcdef", "False"]


def test_fernet_keys_supersede_encryption_key():
    single = "a-single-key-material-0123456789-abc"
    result = _load_settings(ENVIRONMENT="development", **{**STRONG, "ENCRYPTION_KEY": single})
    assert result.stdout.split()[0] == "a-real-key-material-0123456789-abcdef"
    without_list = {**STRONG, "ENCRYPTION_KEY": single}
    del without_list["FERNET_KEYS"]
    assert _load_settings(ENVIRONMENT="development", **without_list).stdout.split()[0] == single


def test_production_refuses_debug():
    result = _load_settings(ENVIRONMENT="production", DEBUG="true", **STRONG)
    assert result.returncode != 0 and "DEBUG" in result.stderr


def test_the_test_suite_runs_on_secrets_of_its_own():
    assert settings.JWT_SECRET != PUBLISHED_JWT_SECRET and len(settings.JWT_SECRET) >= 32
    assert os.environ["JWT_SECRET"] == settings.JWT_SECRET  # shared with the servers the tests start


def _forged(user_id, secret: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"token_type": "access", "exp": now + 600, "iat": now, "jti": "f" * 32, "user_id": str(user_id)}
    return {"HTTP_AUTHORIZATION": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


def test_a_token_forged_with_the_published_jwt_default_is_rejected(api, alpha):
    superuser = get_user_model().objects.create_superuser(username="root", password="x" * 20)
    assert api.get("/clients/alpha/agent/status", **_forged(alpha.owner.pk, PUBLISHED_JWT_SECRET)).status_code == 401
    onboard = api.post("/clients/onboard", {}, format="json", **_forged(superuser.pk, PUBLISHED_JWT_SECRET))
    assert onboard.status_code == 401
    # a real token of the same user works (the forgery is refused for its signature alone)
    assert api.get("/clients/alpha/agent/status", **bearer(alpha.owner)).status_code == 200


def test_production_sends_hsts_and_secure_cookies_and_the_schema_needs_a_login():
    probe = ("import tradingplatform.settings as s; "
             "print(s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
             "s.SPECTACULAR_SETTINGS['SERVE_PERMISSIONS'])")
    env = {key: value for key, value in os.environ.items() if key not in SECRETS | {"DEBUG"}}
    env.update(ENVIRONMENT="production", **STRONG)
    result = subprocess.run([sys.executable, "-c", probe], cwd=settings.BASE_DIR, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["31536000", "True", "True", "['rest_framework.permissions.IsAuthenticated']"]
