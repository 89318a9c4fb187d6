"""Writes about clients and identities: the template schema, onboarding, memberships, logins and
refresh tokens."""
from __future__ import annotations

import json
import logging
import time

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django_tenants.utils import get_tenant_base_schema, schema_context, schema_exists
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from audit import kinds
from audit.services import audit_record
from brokers.models import BrokerConnection
from tenants.models import RESERVED_CLIENT_IDS, Client, Membership, client_id_validator, schema_name_for

logger = logging.getLogger(__name__)
User = get_user_model()


class OnboardingError(Exception):
    """Field errors in DRF's shape: {"field": ["message", ...]} (nested for the owner)."""

    def __init__(self, errors: dict) -> None:
        super().__init__(str(errors))
        self.errors = errors


def template_schema_migrate(*, verbosity: int = 0) -> None:
    """Create (once) and migrate the schema every new client is cloned from."""
    template = get_tenant_base_schema()
    if not schema_exists(template):
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{template}"')
    call_command("migrate_schemas", schema_name=template, interactive=False, verbosity=verbosity)


def owner_validate(*, username: str, password: str, email: str) -> dict:
    """Field errors for a new owner account ({} when it is acceptable)."""
    errors: dict[str, list[str]] = {}
    if User.objects.filter(username__iexact=username).exists():
        errors["username"] = ["A user with that username already exists."]
    try:
        validate_password(password, user=User(username=username, email=email))
    except ValidationError as exc:
        errors["password"] = list(exc.messages)
    return errors


def client_id_validate(*, client_id: str) -> list[str]:
    try:
        client_id_validator(client_id)
    except ValidationError as exc:
        return list(exc.messages)
    if client_id in RESERVED_CLIENT_IDS:
        return ["This client id is reserved."]
    if Client.objects.filter(client_id=client_id).exists():
        return ["A client with this client id already exists."]
    return []


def client_onboard(
    *,
    client_id: str,
    name: str,
    owner_username: str,
    owner_password: str,
    owner_email: str,
    actor: str,
    broker: str | None = None,
    broker_credentials: dict | None = None,
) -> Client:
    """Create a client, its schema (cloned from the migrated template), its owner and, when given,
    its broker connection (credentials already validated, stored encrypted), all at once.

    Everything runs in one transaction — PostgreSQL DDL is transactional — so a failure at any
    step leaves no client row, no schema and no user behind.
    """
    errors: dict = {}
    if client_id_errors := client_id_validate(client_id=client_id):
        errors["client_id"] = client_id_errors
    if owner_errors := owner_validate(username=owner_username, password=owner_password, email=owner_email):
        errors["owner"] = owner_errors
    if errors:
        raise OnboardingError(errors)

    started = time.perf_counter()
    try:
        with transaction.atomic():
            client = Client.objects.create(
                client_id=client_id, name=name, schema_name=schema_name_for(client_id)
            )
            client.create_schema(check_if_exists=False, verbosity=0)
            owner = User.objects.create_user(username=owner_username, email=owner_email, password=owner_password)
            Membership.objects.create(user=owner, client=client, role=Membership.Role.OWNER)
            if broker is not None:
                with schema_context(client.schema_name):
                    BrokerConnection.objects.create(broker=broker, credentials=json.dumps(broker_credentials or {}))
            # The first row of the client's audit chain (never the credentials).
            audit_record(client_id=client_id, actor_type="operator", actor_id=actor, kind=kinds.CLIENT_ONBOARDED,
                         payload={"name": name, "owner": owner_username, "broker": broker})
    except IntegrityError as exc:
        # A concurrent onboarding took the id or the username between our checks and the insert.
        errors = {}
        if client_id_errors := client_id_validate(client_id=client_id):
            errors["client_id"] = client_id_errors
        if User.objects.filter(username__iexact=owner_username).exists():
            errors["owner"] = {"username": ["A user with that username already exists."]}
        raise OnboardingError(errors or {"client_id": ["Could not create this client."]}) from exc
    finally:
        connection.set_schema_to_public()
    logger.info(
        "client onboarded",
        extra={"onboarded_client_id": client_id, "seconds": round(time.perf_counter() - started, 3)},
    )
    return client


def membership_set(*, client: Client, user, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(client=client, user=user, defaults={"role": role})
    return membership


def _login_failure_keys(*, username: str, ip_address: str) -> tuple[str, str]:
    return f"login-failures:user:{username.lower()}", f"login-failures:ip:{ip_address}"


def login_retry_after(*, username: str, ip_address: str) -> int:
    """Seconds the caller must wait before trying again (0: go ahead)."""
    from django.conf import settings
    from django.core.cache import cache

    counts = cache.get_many(_login_failure_keys(username=username, ip_address=ip_address))
    if max(counts.values(), default=0) >= settings.LOGIN_FAILURE_LIMIT:
        return settings.LOGIN_FAILURE_WINDOW_SECONDS
    return 0


def login_failure_record(*, username: str, ip_address: str) -> None:
    from django.conf import settings
    from django.core.cache import cache

    for key in _login_failure_keys(username=username, ip_address=ip_address):
        # add() starts the window at the first failure; incr() keeps its expiry.
        cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    logger.warning("login failed", extra={"username": username, "ip_address": ip_address})
    audit_record(client_id="", actor_type="user", actor_id=username[:150], kind=kinds.AUTH_LOGIN_FAILED,
                 payload={"ip_address": ip_address})


def login_success_record(*, username: str, ip_address: str) -> None:
    from django.core.cache import cache

    cache.delete(f"login-failures:user:{username.lower()}")
    audit_record(client_id="", actor_type="user", actor_id=username, kind=kinds.AUTH_LOGIN,
                 payload={"ip_address": ip_address})


class TokenRefused(Exception):
    """A refresh token that cannot be used (invalid, expired, already used, or its user inactive)."""


def refresh_token_rotate(*, refresh: str) -> RefreshToken:
    """Rotation: the presented refresh token is blacklisted and a new one issued for its user.

    Not one transaction on purpose: once presented, the token stays blacklisted even when the
    refresh is then refused (its user deactivated), so it can never be tried again."""
    try:
        presented = RefreshToken(refresh)  # signature, expiry, type, blacklist
        _, newly_blacklisted = presented.blacklist()
    except TokenError as exc:
        raise TokenRefused(str(exc)) from exc
    if not newly_blacklisted:
        # Two refreshes raced with the same token: only the first one rotates.
        raise TokenRefused("Token is blacklisted")
    user_id = presented.payload.get(jwt_settings.USER_ID_CLAIM)
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise TokenRefused("The user of this token is not active.")
    return RefreshToken.for_user(user)


def refresh_token_revoke(*, refresh: str) -> None:
    """Logout: the refresh token is blacklisted (the short-lived access token simply expires)."""
    try:
        RefreshToken(refresh).blacklist()
    except TokenError as exc:
        raise TokenRefused(str(exc)) from exc
