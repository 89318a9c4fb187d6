"""Test fixtures shared by every app.

The database is real PostgreSQL and the cache real Redis (`make test` provides them). Client
schemas are expensive, so the suite creates two clients once per session — `alpha` and `beta`,
each with an owner, a trader and a viewer — and every test runs in a transaction rolled back at
its end.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from tenants.models import Client, Membership
from tenants.services import client_onboard, membership_set, template_schema_migrate

PASSWORD = "correct-horse-battery-staple"


@dataclass(frozen=True)
class ClientFixture:
    client: Client
    owner: object
    trader: object
    viewer: object

    @property
    def client_id(self) -> str:
        return self.client.client_id


def _make_client(client_id: str) -> ClientFixture:
    User = get_user_model()
    client = client_onboard(
        client_id=client_id,
        name=f"{client_id.title()} Capital",
        owner_username=f"{client_id}-owner",
        owner_password=PASSWORD,
        owner_email=f"owner@{client_id}.example",
        actor="tests",
    )
    members = {}
    for role in (Membership.Role.TRADER, Membership.Role.VIEWER):
        user = User.objects.create_user(username=f"{client_id}-{role}", password=PASSWORD)
        membership_set(client=client, user=user, role=role)
        members[role] = user
    owner = User.objects.get(username=f"{client_id}-owner")
    return ClientFixture(client=client, owner=owner, trader=members["trader"], viewer=members["viewer"])


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        template_schema_migrate()
        clients = {client_id: _make_client(client_id) for client_id in ("alpha", "beta", "race")}
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
def _public_schema_and_clean_cache():
    yield
    connection.set_schema_to_public()
    cache.clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def bearer(user) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {RefreshToken.for_user(user).access_token}"}


@pytest.fixture
def as_user(api):
    """`as_user(user)` -> an APIClient sending that user's access token."""

    def authenticate(user) -> APIClient:
        api.credentials(**bearer(user))
        return api

    return authenticate


def audit_events(**filters) -> list:
    """Audit rows matching the filters, read the way the platform reads them (RLS applies)."""
    from audit.models import AuditEvent
    from audit.rls import audit_read

    with audit_read(client_id=None, is_admin=True):
        return list(AuditEvent.objects.filter(**filters).order_by("client_id", "sequence"))


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the calling process, as `apply()` / `delay()` return."""
    from tradingplatform.celery import app

    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False
