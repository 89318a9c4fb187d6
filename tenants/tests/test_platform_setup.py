"""`manage.py platform_setup`, compose's one-shot `migrate` service: migrations, then the first
operator, once; a generated password goes to a file only its owner reads, never to the log."""
from __future__ import annotations

import io
import json
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tenants.services import operator_first_create
from tradingplatform.testing import audit_events

User = get_user_model()


@pytest.fixture
def no_operator(db):
    User.objects.filter(is_staff=True).update(is_staff=False)  # rolled back with the test


def _setup(monkeypatch, **env: str) -> str:
    for name in ("OPERATOR_USERNAME", "OPERATOR_PASSWORD", "OPERATOR_EMAIL", "OPERATOR_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    call_command("platform_setup", verbosity=0, stdout=out)
    return out.getvalue()


def test_the_first_operator_gets_a_generated_password_in_a_private_file_and_only_once(no_operator, monkeypatch,
                                                                                     tmp_path):
    path = tmp_path / "state" / "first-operator.json"
    said = _setup(monkeypatch, OPERATOR_USERNAME="first-op", OPERATOR_CREDENTIALS_FILE=str(path))
    credentials = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in said and credentials["password"] not in said
    operator = User.objects.get(username="first-op")
    assert operator.is_staff and operator.is_superuser and operator.check_password(credentials["password"])

    again = _setup(monkeypatch, OPERATOR_USERNAME="second-op", OPERATOR_CREDENTIALS_FILE=str(path))
    assert "exists already" in again and not User.objects.filter(username="second-op").exists()
    assert json.loads(path.read_text()) == credentials


def test_the_first_operators_password_may_come_from_the_environment(no_operator, monkeypatch, tmp_path):
    path = tmp_path / "first-operator.json"
    said = _setup(monkeypatch, OPERATOR_USERNAME="env-op", OPERATOR_PASSWORD="a-long-operator-passphrase-42",
                  OPERATOR_CREDENTIALS_FILE=str(path))
    assert "a-long-operator-passphrase-42" not in said and not path.exists()
    assert User.objects.get(username="env-op").check_password("a-long-operator-passphrase-42")


def test_a_weak_operator_password_is_refused_and_nothing_is_created(no_operator, monkeypatch):
    with pytest.raises(CommandError, match="OPERATOR_PASSWORD is refused"):
        _setup(monkeypatch, OPERATOR_USERNAME="weak-op", OPERATOR_PASSWORD="123")
    assert not User.objects.filter(username="weak-op").exists()


def test_operator_first_create_leaves_an_existing_operator_alone(operator):
    audited = len(audit_events(kind="operator.created"))
    existing, created = operator_first_create(username="another", password="a-long-operator-passphrase-42")
    assert created is False and existing.is_staff and not User.objects.filter(username="another").exists()
    assert len(audit_events(kind="operator.created")) == audited


def test_the_first_operators_creation_is_audited_once_without_its_password(no_operator, monkeypatch, tmp_path):
    path = tmp_path / "first-operator.json"
    before = len(audit_events(kind="operator.created"))
    _setup(monkeypatch, OPERATOR_USERNAME="audited-op", OPERATOR_EMAIL="ops@example.com",
           OPERATOR_CREDENTIALS_FILE=str(path))
    password = json.loads(path.read_text())["password"]
    (event,) = audit_events(kind="operator.created")[before:]
    assert (event.client_id, event.actor_type, event.actor_id) == ("", "system", "platform_setup")
    assert event.payload == {"username": "audited-op", "email": "ops@example.com"}
    assert password not in json.dumps(event.payload)

    _setup(monkeypatch, OPERATOR_USERNAME="second-op", OPERATOR_PASSWORD="a-long-operator-passphrase-42",
           OPERATOR_CREDENTIALS_FILE=str(path))  # an operator exists: nothing created, nothing audited
    assert audit_events(kind="operator.created")[before:] == [event]


def test_two_setups_at_once_make_one_operator_the_second_waits_for_the_first(no_operator):
    """The first setup holds the lock until its operator is committed; the second waits for it
    (here: until its lock bound, as the first never finishes) instead of reading "no operator
    yet" and creating another."""
    from django.db import DatabaseError

    from tenants.services import OPERATOR_FIRST_LOCK
    from tradingplatform.tasking import database_busy, database_waits_bounded
    from tradingplatform.testing import advisory_lock_held_elsewhere

    with advisory_lock_held_elsewhere(OPERATOR_FIRST_LOCK):
        with database_waits_bounded(lock_timeout=0.2), pytest.raises(DatabaseError) as raised:
            operator_first_create(username="second-op", password="a-long-enough-passphrase-1")
    assert database_busy(raised.value)
    assert not User.objects.filter(username="second-op").exists()
    assert not audit_events(kind="operator.created")
    operator, created = operator_first_create(username="second-op", password="a-long-enough-passphrase-1")
    assert created and operator.is_staff
