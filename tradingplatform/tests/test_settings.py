"""Production refuses development secrets; the check runs in a fresh interpreter, as at start-up."""
import os
import subprocess
import sys

from django.conf import settings

STRONG = {
    "SECRET_KEY": "s" * 50, "JWT_SECRET": "j" * 40, "FERNET_KEYS": "a-real-key-material-0123456789,older-key",
    "ADMIN_API_KEY": "k" * 40, "ALLOWED_HOSTS": "desk.example.com",
}


def _load_settings(**environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in {"SECRET_KEY", "JWT_SECRET", "FERNET_KEYS", "ENCRYPTION_KEY", "ADMIN_API_KEY", "DEBUG"}}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", "import tradingplatform.settings as s; print(s.FERNET_KEYS[0], s.AUTO_CREATE_TABLES)"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )


def test_production_refuses_to_start_with_development_secrets():
    result = _load_settings(ENVIRONMENT="production")
    assert result.returncode != 0
    assert "refuses development or weak secrets" in result.stderr
    for name in ("SECRET_KEY", "JWT_SECRET", "FERNET_KEYS", "ADMIN_API_KEY"):
        assert name in result.stderr


def test_production_starts_with_real_secrets_and_without_auto_migration():
    result = _load_settings(ENVIRONMENT="production", **STRONG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["a-real-key-material-0123456789", "False"]


def test_fernet_keys_supersede_encryption_key():
    result = _load_settings(ENVIRONMENT="development", ENCRYPTION_KEY="single", FERNET_KEYS="new,old")
    assert result.stdout.split()[0] == "new"
    assert _load_settings(ENVIRONMENT="development", ENCRYPTION_KEY="single").stdout.split()[0] == "single"


def test_production_refuses_debug():
    result = _load_settings(ENVIRONMENT="production", DEBUG="true", **STRONG)
    assert result.returncode != 0 and "DEBUG" in result.stderr
