"""Helpers the tests import by name: the shared password, the client fixture's shape, how a
client with its members is made, a user's bearer header, and audit rows read as the platform
reads them.

They live here rather than in the root conftest.py so that a test module imports them from a
real module (`from conftest import ...` only works while pytest has put the root on sys.path,
and it ties helpers to fixtures); conftest.py keeps the fixtures and builds them with these.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connections
from rest_framework_simplejwt.tokens import RefreshToken

from tenants.models import Client, Membership
from tenants.services import client_onboard, membership_set

PASSWORD = "correct-horse-battery-staple"


@contextlib.contextmanager
def advisory_lock_held_elsewhere(name: str) -> Iterator[threading.Event]:
    """The advisory lock `name` (tradingplatform.locks) held by another thread on its own database
    connection, as another worker would hold it, for the duration of the block; setting the
    yielded event lets it go earlier (a holder that finishes while the test waits on it)."""
    from tradingplatform.locks import advisory_lock_attempt

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with advisory_lock_attempt(name) as taken:
                assert taken
                held.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(30)
        yield release
    finally:
        release.set()
        thread.join(30)


@dataclass(frozen=True)
class ClientFixture:
    client: Client
    owner: object
    trader: object
    viewer: object

    @property
    def client_id(self) -> str:
        return self.client.client_id


def client_fixture_create(client_id: str) -> ClientFixture:
    """A client onboarded with an owner, and a trader and a viewer, all with PASSWORD."""
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


def bearer(user) -> dict[str, str]:
    """Request headers carrying a fresh access token of `user`."""
    return {"HTTP_AUTHORIZATION": f"Bearer {RefreshToken.for_user(user).access_token}"}


def ibkr_connect(api, fixture: ClientFixture, *, port: int, client_id: int = 7, underlying_expiry: str = "202712",
                 **credentials):
    """The client's owner connects Interactive Brokers at a loopback (fake) TWS on `port`, through
    the API (`POST connect-broker`); returns the response."""
    body = {"broker": "ibkr", "credentials": {"host": "127.0.0.1", "port": port, "client_id": client_id,
                                              "underlying_instrument": "ES",
                                              "underlying_expiry": underlying_expiry, **credentials}}
    return api.post(f"/clients/{fixture.client_id}/connect-broker", body, format="json", **bearer(fixture.owner))


def audit_events(**filters) -> list:
    """Audit rows matching the filters, read the way the platform reads them (RLS applies)."""
    from audit.models import AuditEvent
    from audit.rls import audit_read

    with audit_read(client_id=None, is_admin=True):
        return list(AuditEvent.objects.filter(**filters).order_by("client_id", "sequence"))


def publish_fanned_out(**kwargs):
    """`publish_event` inside a test's transaction (never committed), with its fan-out run as it
    runs on commit: what the stream's consumers see of an event published and committed."""
    from django.test import TestCase

    from tradingplatform.events import publish_event

    with TestCase.captureOnCommitCallbacks(execute=True):
        return publish_event(**kwargs)


def fernet_keys_use(settings, keys: list[str], *models) -> None:
    """Make FERNET_KEYS `keys` (the pytest-django `settings` fixture) for the encrypted fields of
    `models`, which keep their Fernet once built: a key rotation as a test sees it."""
    from fernet_fields import EncryptedField

    settings.FERNET_KEYS = keys
    for model in models:
        for field in model._meta.get_fields():
            if isinstance(field, EncryptedField):
                for cached in ("keys", "fernet_keys", "fernet"):
                    field.__dict__.pop(cached, None)
