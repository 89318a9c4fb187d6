"""docker-compose.yml, the Dockerfile and the database's init script, read as files (no container
engine can run here): the properties an operator relies on. The entry command they name is run
for real in test_entrypoint.py."""
from __future__ import annotations

import json
import re

import pytest
import yaml
from django.conf import settings

from tradingplatform import entrypoint

APP_SERVICES = ("migrate", "web", "worker", "beat", "ibkr-sessions")
LONG_RUNNING = ("postgres", "redis", "web", "worker", "beat", "ibkr-sessions")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((settings.BASE_DIR / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[str]]:
    """Each instruction's arguments, continuation lines joined, by instruction."""
    text = re.sub(r"\\\n", " ", (settings.BASE_DIR / "Dockerfile").read_text())
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, rest = line.strip().partition(" ")
            instructions.setdefault(name.upper(), []).append(rest.strip())
    return instructions


def _exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)  # exec form is a JSON array; shell form fails here
    assert isinstance(parsed, list) and parsed[0] not in {"sh", "/bin/sh", "bash", "/bin/bash"}, parsed
    assert "-c" not in parsed, parsed
    return parsed


def test_the_image_runs_as_a_user_without_privileges(dockerfile):
    assert dockerfile["USER"][-1] not in {"root", "0"}


def test_the_image_execs_its_entry_command_without_a_shell(dockerfile):
    assert _exec_form(dockerfile["ENTRYPOINT"][-1]) == ["python", "-m", "tradingplatform.entrypoint"]
    role = _exec_form(dockerfile["CMD"][-1])
    assert role == ["web"]
    entrypoint.command("web")  # a role the entry command knows


def test_the_images_health_check_reads_PORT(dockerfile):
    healthcheck = dockerfile["HEALTHCHECK"][-1]
    command = _exec_form(healthcheck.split(" CMD ", 1)[1])
    assert command == ["python", "-m", "tradingplatform.entrypoint", "health", "web"]
    assert "8000" not in healthcheck  # the check takes the port from $PORT (test_entrypoint proves it)


def test_every_service_restarts_and_has_a_health_check(compose):
    services = compose["services"]
    assert set(services) >= set(LONG_RUNNING) | {"migrate"}
    for name in LONG_RUNNING:
        assert services[name].get("restart") == "unless-stopped", name
        test = services[name]["healthcheck"]["test"]
        assert test and not services[name]["healthcheck"].get("disable"), name
    for role in ("web", "worker", "beat", "ibkr-sessions"):
        assert services[role]["healthcheck"]["test"] == ["CMD", "python", "-m", "tradingplatform.entrypoint",
                                                        "health", role]
        assert services[role]["command"] == [role]


def test_migrate_is_a_one_shot_that_the_others_wait_for(compose):
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "on-failure"
    assert entrypoint.command("migrate")[1:] == ["manage.py", "platform_setup"]
    assert migrate["healthcheck"] == {"disable": True}  # a one-shot: it completes instead
    for name in ("web", "worker", "beat", "ibkr-sessions"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_dotenv_is_not_overridden(compose):
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["env_file"] == ".env", name
        environment = service.get("environment", {})
        for variable in ("DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"):
            if variable in environment:  # only as a default that a value in .env replaces
                assert environment[variable].startswith("${" + variable + ":-"), (name, variable)


def test_the_app_connects_as_a_role_without_superuser_rights_and_no_password_is_written_down(compose):
    url = compose["services"]["web"]["environment"]["DATABASE_URL"]
    user, password = re.search(r"postgres://([^:@/]+):([^@]+)@", url).groups()
    assert user == "tradingplatform" and password == "${POSTGRES_APP_PASSWORD}"
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or "AUTH" in key:
                assert str(value).startswith("${"), (name, key)
    assert compose["services"]["postgres"]["env_file"] == "postgres.env"  # the superuser's, for it alone
    script = (settings.BASE_DIR / "docker" / "postgres" / "10-app-role.sh").read_text()
    assert "CREATE ROLE tradingplatform LOGIN NOSUPERUSER" in script and "PASSWORD :'app_password'" in script
    assert "GRANT tradingplatform_audit TO tradingplatform" in script  # so migrations need no CREATEROLE
    assert "postgres.env" in (settings.BASE_DIR / ".dockerignore").read_text().split()


def test_redis_has_a_password_and_an_append_only_log(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD")
    url = compose["services"]["worker"]["environment"]["REDIS_URL"]
    assert ":${REDIS_PASSWORD}@redis:" in url


def test_the_web_port_and_proxy_headers(compose):
    assert compose["services"]["web"]["ports"] == ["127.0.0.1:${PORT:-8000}:${PORT:-8000}"]
    from tradingplatform.asgi import application
    from tradingplatform.network import ProxyHeadersMiddleware

    assert isinstance(application, ProxyHeadersMiddleware)  # behaviour: test_entrypoint.py
