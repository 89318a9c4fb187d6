"""Writes about clients and identities: the template schema, onboarding, memberships, logins and
refresh tokens."""
from __future__ import annotations

import hashlib
import json
import logging
import math
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
from tenants import throttle_store
from tenants.models import RESERVED_CLIENT_IDS, Client, Membership, client_id_validator, schema_name_for
from tradingplatform.locks import advisory_lock

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


def membership_set(*, client: Client, user, role: str, actor: str = "system") -> Membership:
    """Give `user` `role` on `client` (adding them, or changing their role), in the client's
    audit trail with who did it and the role before."""
    with transaction.atomic():
        before = Membership.objects.select_for_update().filter(client=client, user=user).first()
        membership, _ = Membership.objects.update_or_create(client=client, user=user, defaults={"role": role})
        if before is None or before.role != role:
            kind = kinds.TEAM_MEMBER_ADDED if before is None else kinds.TEAM_ROLE_CHANGED
            audit_record(client_id=client.client_id, actor_type="user" if actor != "system" else "system",
                         actor_id=actor[:150], kind=kind,
                         payload={"username": user.get_username(), "role": role,
                                  "role_before": before.role if before is not None else None})
    return membership


def membership_remove(*, membership: Membership, actor: str) -> None:
    """Take a member off a client (their open websockets close within seconds: see
    tenants.resolution.stream_access_verdict), in the client's audit trail."""
    with transaction.atomic():
        client, username, role = membership.client, membership.user.get_username(), membership.role
        membership.delete()
        audit_record(client_id=client.client_id, actor_type="user", actor_id=actor[:150],
                     kind=kinds.TEAM_MEMBER_REMOVED, payload={"username": username, "role_before": role})


# --- login throttle (API and console share it) -------------------------------------------------
# Counts in Redis, or in PostgreSQL while Redis is down (tenants.throttle_store).


def _throttle_keys(*, username: str, ip_address: str) -> dict[str, str]:
    name = hashlib.sha256(username.lower().encode()).hexdigest()[:32]  # any text, a bounded key
    return {
        "pair": f"login-throttle:pair:{name}:{ip_address}",  # failures of this username at this address
        "pair_until": f"login-throttle:pair-until:{name}:{ip_address}",  # its delay ends at (epoch)
        "address": f"login-throttle:address:{ip_address}",  # failures at this address, any username
        "address_until": f"login-throttle:address-until:{ip_address}",
    }


def login_retry_after(*, username: str, ip_address: str) -> int:
    """Seconds this username must wait before trying again from this address (0: go ahead).

    Only two things make a caller wait: its own failures for this username at this address, and a
    flood of failures from its address. Failures elsewhere never do."""
    keys = _throttle_keys(username=username, ip_address=ip_address)
    until = throttle_store.get_many([keys["pair_until"], keys["address_until"]])
    now = time.time()
    return max((math.ceil(value - now) for value in until.values() if value and value > now), default=0)


def _incr(key: str, *, timeout: int) -> int:
    throttle_store.add(key, 0, timeout=timeout)
    try:
        count = throttle_store.incr(key)
    except ValueError:
        throttle_store.set(key, 1, timeout=timeout)
        count = 1
    throttle_store.touch(key, timeout)  # remembered for the window after the last failure
    return count


def _lockout_record(*, username: str, ip_address: str, scope: str, failures: int, seconds: int, channel: str) -> None:
    logger.warning("login throttled", extra={"username": username, "ip_address": ip_address, "scope": scope,
                                             "failures": failures, "retry_after": seconds})
    audit_record(client_id="", actor_type="user", actor_id=username[:150], kind=kinds.AUTH_LOCKOUT,
                 payload={"ip_address": ip_address, "scope": scope, "failures": failures,
                          "retry_after_seconds": seconds, "channel": channel})


def login_failure_record(*, username: str, ip_address: str, channel: str = "api") -> None:
    """A wrong password: counted for this username at this address and for the address; past the
    limits, a growing delay (audited as a lockout)."""
    from django.conf import settings

    keys = _throttle_keys(username=username, ip_address=ip_address)
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    pair = _incr(keys["pair"], timeout=window)
    address = _incr(keys["address"], timeout=window)
    logger.warning("login failed", extra={"username": username, "ip_address": ip_address, "channel": channel})
    audit_record(client_id="", actor_type="user", actor_id=username[:150], kind=kinds.AUTH_LOGIN_FAILED,
                 payload={"ip_address": ip_address, "channel": channel})
    now = time.time()
    if pair >= settings.LOGIN_FAILURE_LIMIT:
        seconds = min(settings.LOGIN_DELAY_BASE_SECONDS * 2 ** (pair - settings.LOGIN_FAILURE_LIMIT),
                      settings.LOGIN_DELAY_MAX_SECONDS)
        throttle_store.set(keys["pair_until"], now + seconds, timeout=seconds + 1)
        _lockout_record(username=username, ip_address=ip_address, scope="user_at_address", failures=pair,
                        seconds=seconds, channel=channel)
    if address >= settings.LOGIN_ADDRESS_FAILURE_LIMIT:
        throttle_store.set(keys["address_until"], now + window, timeout=window + 1)
        if address == settings.LOGIN_ADDRESS_FAILURE_LIMIT:
            _lockout_record(username=username, ip_address=ip_address, scope="address", failures=address,
                            seconds=window, channel=channel)


def login_success_record(*, user, ip_address: str, channel: str = "api", second_factor: bool = False) -> None:
    """A login completed (the right password, and the right code when the user has a second
    factor): this username's failures at this address are forgotten; `last_login` moves; the
    login is audited. A right password awaiting its code is not a success: the failures (wrong
    codes count) stay."""
    from django.contrib.auth.models import update_last_login

    username = user.get_username()
    keys = _throttle_keys(username=username, ip_address=ip_address)
    throttle_store.delete_many([keys["pair"], keys["pair_until"]])
    update_last_login(None, user)
    audit_record(client_id="", actor_type="user", actor_id=username, kind=kinds.AUTH_LOGIN,
                 payload={"ip_address": ip_address, "channel": channel, "second_factor": second_factor})


class TokenRefused(Exception):
    """A refresh token that cannot be used (invalid, expired, already used, its session over, its
    user inactive or its password changed since)."""


SESSION_START_CLAIM = "auth_time"  # when the login that began this chain of refresh tokens happened


def token_pair_issue(*, user, session_start: int | None = None, second_factor: bool = False) -> RefreshToken:
    """A refresh token (and through it an access token) for `user`, in the session that began at
    `session_start` (epoch seconds; now for a login). Never valid past the session's end. Both
    tokens say how the login was made (`amr`: ["pwd"], or ["pwd", "otp"] with a second factor)."""
    from django.conf import settings

    from tenants.mfa import AMR_CLAIM, AMR_OTP, AMR_PASSWORD

    refresh = RefreshToken.for_user(user)  # carries the password digest (CHECK_REVOKE_TOKEN)
    start = session_start if session_start is not None else int(refresh.current_time.timestamp())
    refresh[SESSION_START_CLAIM] = start
    refresh[AMR_CLAIM] = [AMR_PASSWORD, AMR_OTP] if second_factor else [AMR_PASSWORD]
    session_end = start + settings.JWT_SESSION_MAX_HOURS * 3600
    if refresh["exp"] > session_end:
        refresh["exp"] = session_end
    return refresh


def refresh_token_rotate(*, refresh: str) -> RefreshToken:
    """Rotation: the presented refresh token is blacklisted and a new one issued for its user, in
    the same session (its absolute end does not move).

    Not one transaction on purpose: once presented, the token stays blacklisted even when the
    refresh is then refused (its user deactivated), so it can never be tried again."""
    from django.conf import settings
    from rest_framework_simplejwt.utils import get_md5_hash_password

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
    if presented.payload.get(jwt_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
        raise TokenRefused("The user's password has changed since this token was issued.")
    # A token issued before sessions were recorded starts its session at its own issue time.
    start = presented.payload.get(SESSION_START_CLAIM, presented.payload.get("iat"))
    if not isinstance(start, int) or time.time() >= start + settings.JWT_SESSION_MAX_HOURS * 3600:
        raise TokenRefused("The session of this token has ended; log in again.")
    from tenants.mfa import token_used_second_factor

    return token_pair_issue(user=user, session_start=start, second_factor=token_used_second_factor(presented))


def user_tokens_revoke(*, user, reason: str, actor: str) -> int:
    """Blacklist every outstanding refresh token of `user` (a password change, a deactivation, an
    operator's revocation); audited. Returns how many were revoked."""
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    outstanding = OutstandingToken.objects.filter(user=user, blacklistedtoken__isnull=True)
    revoked = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in outstanding], ignore_conflicts=True)
    audit_record(client_id="", actor_type="operator" if actor != user.get_username() else "user", actor_id=actor,
                 kind=kinds.AUTH_TOKENS_REVOKED,
                 payload={"user": user.get_username(), "reason": reason, "refresh_tokens": len(revoked)})
    return len(revoked)


def user_password_change(*, user, current_password: str, new_password: str) -> None:
    """A user changes their own password: the current one must be right and the new one pass the
    validators (ValidationError with field errors otherwise). Saving it revokes every token of
    theirs (tenants.signals)."""
    errors: dict[str, list[str]] = {}
    if not user.check_password(current_password):
        errors["current_password"] = ["The current password is not right."]
    try:
        validate_password(new_password, user=user)
    except ValidationError as exc:
        errors["new_password"] = list(exc.messages)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        user.set_password(new_password)
        user.save()


def refresh_token_revoke(*, refresh: str) -> None:
    """Logout: the refresh token is blacklisted (the short-lived access token simply expires)."""
    try:
        RefreshToken(refresh).blacklist()
    except TokenError as exc:
        raise TokenRefused(str(exc)) from exc


OPERATOR_FIRST_LOCK = "operator-first-create"


def operator_first_create(
    *, username: str, password: str, email: str = "", actor: str = "system"
) -> tuple[object, bool]:
    """The platform's first operator (staff and console superuser), once: when any staff user
    exists already, nothing is created or audited and (that user, False) is returned. The password
    must pass the platform's password validators. The creation is audited in the platform chain
    (`operator.created`, a system actor: `actor` names what ran it), never with the password.
    Two setups at once (two deploys' one-shot jobs) make one operator: the second waits for the
    first to commit (a lock held past the commit), then finds it."""
    with advisory_lock(OPERATOR_FIRST_LOCK), transaction.atomic():
        existing = User.objects.filter(is_staff=True).order_by("pk").first()
        if existing is not None:
            return existing, False
        validate_password(password, user=User(username=username, email=email))
        operator = User.objects.create_user(username=username, email=email, password=password,
                                            is_staff=True, is_superuser=True)
        audit_record(client_id="", actor_type="system", actor_id=actor, kind=kinds.OPERATOR_CREATED,
                     payload={"username": operator.get_username(), "email": operator.email})
    return operator, True
