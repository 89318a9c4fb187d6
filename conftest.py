"""Test fixtures shared by every app.

The database is real PostgreSQL and the cache real Redis (`make test` provides them). Client
schemas are expensive, so the suite creates two clients once per session — `alpha` and `beta`,
each with an owner, a trader and a viewer — and every test runs in a transaction rolled back at
its end.
"""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from tenants.services import template_schema_migrate

# The helpers live in tradingplatform.testing; imported here for the fixtures and for the test
# modules that still import them from conftest.
from tradingplatform.testing import (  # noqa: F401
    PASSWORD,
    ClientFixture,
    audit_events,
    bearer,
    client_fixture_create,
)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        # pytest-django creates the test database only when a collected test asks for `db` (or
        # `transactional_db`, or the django_db marker); a module run alone whose tests only use
        # django_db_setup would otherwise write the session's clients into the real database.
        if not connection.settings_dict["NAME"].startswith("test_"):
            pytest.fail(f"refusing to set up test clients in {connection.settings_dict['NAME']!r}: no collected "
                        "test asks for the `db` fixture, so no test database was created", pytrace=False)
        template_schema_migrate()
        clients = {client_id: client_fixture_create(client_id) for client_id in ("alpha", "beta", "race")}
        get_user_model().objects.create_user(username="operator", password=PASSWORD, is_staff=True)
    return clients


@pytest.fixture
def alpha(django_db_setup, db) -> ClientFixture:
    return django_db_setup["alpha"]


@pytest.fixture
def beta(django_db_setup, db) -> ClientFixture:
    return django_db_setup["beta"]


@pytest.fixture
def operator(db):
    return get_user_model().objects.get(username="operator")


@pytest.fixture(autouse=True)
def _ibkr_direct_by_default(settings) -> None:
    """An IBKR connection made through the platform (connect-broker, a book sync, a cycle)
    connects directly in tests, as with IBKR_SESSION_PROCESS=false; the session process's own
    tests (brokers/tests/test_ibkr_session.py) turn it back on and run the process."""
    settings.IBKR_SESSION_PROCESS = False


@pytest.fixture(autouse=True)
def _public_schema_and_clean_cache():
    yield
    connection.set_schema_to_public()
    cache.clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def as_user(api):
    """`as_user(user)` -> an APIClient sending that user's access token."""

    def authenticate(user) -> APIClient:
        api.credentials(**bearer(user))
        return api

    return authenticate


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the calling process, as `apply()` / `delay()` return."""
    from tradingplatform.celery import app

    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False
