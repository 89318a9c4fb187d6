"""Two-factor authentication: TOTP devices and recovery codes (django-otp), the signed token that
carries a login from its password to its code, and the policies that make a second factor
mandatory (a client's, set by its owner; staff's, by MFA_REQUIRED_FOR_STAFF).

Writes are `<entity>_<action>` services (keyword-only, transactional, audited as user-level
events: client_id "", like auth.login); `mfa_*` reads never write. A user has at most one TOTP
device ("default") and one set of recovery codes ("recovery"). The TOTP seed is shown once (at
enrolment) and stored Fernet-encrypted (EncryptedTOTPDevice, FERNET_KEYS); recovery codes are
shown once and stored hashed: a database reader learns nothing usable from either.
"""
from __future__ import annotations

import hashlib
import secrets
from base64 import b32encode
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import transaction
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from audit import kinds
from audit.services import audit_record
from tenants.models import Client, EncryptedTOTPDevice

TOTP_DEVICE_NAME = "default"
RECOVERY_DEVICE_NAME = "recovery"
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_BYTES = 10  # 80 bits: 16 base32 characters, shown as four groups of four
LOGIN_TOKEN_SALT = "tenants.mfa.login"
# RFC 8176 authentication method references, carried by access and refresh tokens ("amr").
AMR_CLAIM = "amr"
AMR_PASSWORD = "pwd"
AMR_OTP = "otp"


class MfaError(Exception):
    """A refused two-factor step; `code` is the API's stable code."""

    code = "mfa_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MfaAlreadyEnabled(MfaError):
    code = "mfa_already_enabled"


class MfaNotEnrolled(MfaError):
    code = "mfa_not_enrolled"


class MfaInvalidCode(MfaError):
    code = "invalid_code"


class MfaLoginTokenInvalid(MfaError):
    code = "invalid_mfa_token"


class MfaPolicyError(MfaError):
    code = "mfa_required"


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32, what an authenticator app is given
    otpauth_uri: str


@dataclass(frozen=True)
class Verification:
    device: Device
    recovery: bool  # a recovery code (consumed), not the authenticator's code


# --- reads ---------------------------------------------------------------------------------------


def mfa_device_get(*, user: Any, confirmed: bool | None = True) -> EncryptedTOTPDevice | None:
    """The user's TOTP device (confirmed, unconfirmed, or either with None)."""
    devices = EncryptedTOTPDevice.objects.filter(user=user, name=TOTP_DEVICE_NAME)
    if confirmed is not None:
        devices = devices.filter(confirmed=confirmed)
    return devices.first()


def mfa_enabled(*, user: Any) -> bool:
    """Whether logging in as this user takes a second factor (a confirmed TOTP device)."""
    return bool(user and user.is_authenticated) and mfa_device_get(user=user) is not None


def mfa_recovery_codes_left(*, user: Any) -> int:
    return StaticToken.objects.filter(device__user=user, device__name=RECOVERY_DEVICE_NAME,
                                      device__confirmed=True).count()


def token_used_second_factor(validated_token: Any) -> bool:
    """Whether an access token (or its refresh token) was issued to a login with a second factor."""
    if validated_token is None:
        return False
    try:
        methods = validated_token.get(AMR_CLAIM) or []
    except AttributeError:
        return False
    return isinstance(methods, list) and AMR_OTP in methods


def session_used_second_factor(session: Any, user: Any) -> bool:
    """Whether a desk or console session was verified with a second factor (django-otp's session
    key names a confirmed device of this user)."""
    from django_otp import DEVICE_ID_SESSION_KEY

    persistent_id = session.get(DEVICE_ID_SESSION_KEY) if session is not None else None
    if not persistent_id or not user or not user.is_authenticated:
        return False
    device = Device.from_persistent_id(persistent_id)
    return device is not None and device.user_id == user.pk and device.confirmed


def mfa_missing_reason(*, user: Any, verified: bool, client: Client | None = None) -> str | None:
    """Why this user, authenticated with (`verified`) or without a second factor, may not go on:
    None when nothing requires one or it was used."""
    if verified:
        return None
    if getattr(user, "is_staff", False) and settings.MFA_REQUIRED_FOR_STAFF:
        return "Operators must log in with two-factor authentication."
    if client is not None and client.mfa_required:
        return ("This client requires two-factor authentication: enrol (POST /auth/2fa/enrol), then log in "
                "again with your code.")
    return None


# --- enrolment, confirmation, disabling ----------------------------------------------------------


def _audit(*, user: Any, kind: str, actor: str | None = None, **payload: Any) -> None:
    actor = actor or user.get_username()
    audit_record(client_id="", actor_type="user" if actor == user.get_username() else "operator",
                 actor_id=actor[:150], kind=kind, payload={"user": user.get_username(), **payload})


def mfa_device_enrol(*, user: Any) -> Enrolment:
    """Issue a new TOTP secret to `user`, unconfirmed until a code from it is presented
    (mfa_device_confirm). Replaces an earlier unconfirmed one; refused while a confirmed device
    exists (disable it first)."""
    with transaction.atomic():
        if EncryptedTOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).exists():
            raise MfaAlreadyEnabled("Two-factor authentication is already on; disable it before enrolling again.")
        EncryptedTOTPDevice.objects.filter(user=user, confirmed=False).delete()
        device = EncryptedTOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
        _audit(user=user, kind=kinds.AUTH_MFA_ENROLLED)
    return Enrolment(secret=b32encode(device.bin_key).decode(), otpauth_uri=device.config_url)


def _recovery_hash(code: str) -> str:
    """What is stored of a recovery code (StaticToken.token holds 16 characters): the first 16 hex
    digits of its SHA-256. The code has 80 random bits, so the stored value gives nothing away."""
    normalized = "".join(code.split()).replace("-", "").lower()
    return hashlib.sha256(normalized.encode()).hexdigest()[:16]


def _recovery_codes_issue(*, user: Any) -> list[str]:
    StaticDevice.objects.filter(user=user, name=RECOVERY_DEVICE_NAME).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode().lower()
        codes.append("-".join(raw[i:i + 4] for i in range(0, len(raw), 4)))
    StaticToken.objects.bulk_create([StaticToken(device=device, token=_recovery_hash(code)) for code in codes])
    return codes


def mfa_device_confirm(*, user: Any, code: str) -> list[str]:
    """Confirm the enrolled device with a code from it: from now on logins take a second factor.
    Returns RECOVERY_CODE_COUNT single-use recovery codes, shown this once."""
    with transaction.atomic():
        device = EncryptedTOTPDevice.objects.select_for_update().filter(user=user, name=TOTP_DEVICE_NAME,
                                                                        confirmed=False).first()
        if device is None:
            raise MfaNotEnrolled("Nothing to confirm: enrol first (POST /auth/2fa/enrol).")
        # A wrong code's throttling must commit: the refusal is raised after the transaction.
        verified = device.verify_token(_digits(code))
        if verified:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = _recovery_codes_issue(user=user)
            _audit(user=user, kind=kinds.AUTH_MFA_CONFIRMED, recovery_codes=len(codes))
    if not verified:
        raise MfaInvalidCode("The code is not right (or was already used).")
    return codes


def _digits(code: str) -> str:
    return "".join(str(code).split())


def mfa_code_verify(*, user: Any, code: str) -> Verification | None:
    """Check a second factor: a code from the user's authenticator, or one of their recovery codes
    (consumed, audited). None when neither matches; each device also slows down after failures."""
    code = str(code or "").strip()
    if not code or len(code) > 64:
        return None
    with transaction.atomic():
        device = EncryptedTOTPDevice.objects.select_for_update().filter(user=user, name=TOTP_DEVICE_NAME,
                                                                        confirmed=True).first()
        if device is None:
            return None
        digits = _digits(code)
        if digits.isdigit() and len(digits) == device.digits:
            # An authenticator code; not tried against the recovery codes (which never are digits only).
            return Verification(device=device, recovery=False) if device.verify_token(digits) else None
        recovery = StaticDevice.objects.select_for_update().filter(user=user, name=RECOVERY_DEVICE_NAME,
                                                                   confirmed=True).first()
        if recovery is None or not recovery.verify_token(_recovery_hash(code)):
            return None
        left = StaticToken.objects.filter(device=recovery).count()
        _audit(user=user, kind=kinds.AUTH_MFA_RECOVERY_USED, recovery_codes_left=left)
        return Verification(device=recovery, recovery=True)


def mfa_disable(*, user: Any, code: str) -> None:
    """The user turns two-factor authentication off, proving it with a current code or a recovery
    code. Refused for staff while MFA_REQUIRED_FOR_STAFF (an operator resets it instead)."""
    if user.is_staff and settings.MFA_REQUIRED_FOR_STAFF:
        raise MfaPolicyError("Operators cannot turn two-factor authentication off; ask another operator to reset it.")
    if mfa_device_get(user=user) is None:
        raise MfaNotEnrolled("Two-factor authentication is not on.")
    verification = mfa_code_verify(user=user, code=code)  # commits its own throttling
    if verification is None:
        raise MfaInvalidCode("The code is not right (or was already used).")
    with transaction.atomic():
        _devices_delete(user=user)
        _audit(user=user, kind=kinds.AUTH_MFA_DISABLED, with_recovery_code=verification.recovery)


def _devices_delete(*, user: Any) -> None:
    EncryptedTOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()


def mfa_reset(*, user: Any, actor: str, reason: str) -> None:
    """An operator takes a user's second factor away (a lost phone), after checking who asks;
    the user may then log in with their password alone and enrol again. Every token of the user
    is revoked, so a session begun by whoever held the device ends too."""
    from tenants.services import user_tokens_revoke

    with transaction.atomic():
        _devices_delete(user=user)
        _audit(user=user, kind=kinds.AUTH_MFA_RESET, actor=actor, reason=reason[:500])
        user_tokens_revoke(user=user, reason="mfa_reset", actor=actor)


def mfa_secrets_reencrypt() -> int:
    """Re-encrypt every TOTP seed under the newest key (the first of FERNET_KEYS), one device at a
    time (locked: a verification at the same moment is not lost). Run after putting a new key
    first, before the old one is dropped (manage.py rotate_broker_credentials does). Returns how
    many devices were re-encrypted."""
    rotated = 0
    for pk in EncryptedTOTPDevice.objects.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            device = EncryptedTOTPDevice.objects.select_for_update().filter(pk=pk).first()
            if device is not None:  # not deleted meanwhile
                device.save(update_fields=["key"])  # read with any key, written with the first
                rotated += 1
    return rotated


def mfa_staff_enrol(*, user: Any, actor: str) -> tuple[Enrolment, list[str]]:
    """Enrol and confirm at once (the operator's management command: the first operator of a
    production platform cannot log in to enrol). Replaces any device the user had; audited as a
    reset (when there was one), an enrolment and a confirmation."""
    with transaction.atomic():
        if EncryptedTOTPDevice.objects.filter(user=user).exists() or StaticDevice.objects.filter(user=user).exists():
            _devices_delete(user=user)
            _audit(user=user, kind=kinds.AUTH_MFA_RESET, actor=actor, reason="re-enrolled by an operator")
        device = EncryptedTOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=True)
        _audit(user=user, kind=kinds.AUTH_MFA_ENROLLED, actor=actor)
        codes = _recovery_codes_issue(user=user)
        _audit(user=user, kind=kinds.AUTH_MFA_CONFIRMED, actor=actor, recovery_codes=len(codes))
    return Enrolment(secret=b32encode(device.bin_key).decode(), otpauth_uri=device.config_url), codes


# --- the login's second step -----------------------------------------------------------------------


def mfa_login_token_issue(*, user: Any) -> str:
    """A short-lived signed token saying "this user gave the right password": bound to the user and
    to their password hash (a password change voids it); it grants nothing but the second step."""
    return signing.dumps({"u": user.pk, "p": get_md5_hash_password(user.password)}, salt=LOGIN_TOKEN_SALT,
                         compress=True)


def mfa_login_token_user(*, token: str) -> Any:
    """The user a login token stands for (active, password unchanged), or MfaLoginTokenInvalid."""
    from django.contrib.auth import get_user_model

    try:
        data = signing.loads(str(token), salt=LOGIN_TOKEN_SALT, max_age=settings.MFA_LOGIN_TOKEN_SECONDS)
    except (signing.BadSignature, ValueError, TypeError) as exc:  # SignatureExpired is a BadSignature
        raise MfaLoginTokenInvalid("The login has expired or is not valid; log in again.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("u"), int):
        raise MfaLoginTokenInvalid("The login has expired or is not valid; log in again.")
    user = get_user_model().objects.filter(pk=data["u"], is_active=True).first()
    if user is None or data.get("p") != get_md5_hash_password(user.password):
        raise MfaLoginTokenInvalid("The login has expired or is not valid; log in again.")
    return user


# --- the client's policy -------------------------------------------------------------------------


def client_mfa_policy_set(*, client: Client, required: bool, actor: Any, actor_verified: bool) -> Client:
    """An owner makes a second factor mandatory (or optional) for everyone on their client,
    audited in the client's chain. Turning it on needs the owner's own login to have used one, so
    that nobody locks the team (themselves first) out by mistake."""
    if required and not actor_verified:
        raise MfaPolicyError("Log in with two-factor authentication before making it mandatory for the team.")
    with transaction.atomic():
        client = Client.objects.select_for_update().get(pk=client.pk)
        before = client.mfa_required
        if before != required:
            client.mfa_required = required
            client.save(update_fields=["mfa_required"])
            audit_record(client_id=client.client_id, actor_type="user", actor_id=actor.get_username()[:150],
                         kind=kinds.CLIENT_MFA_POLICY_CHANGED, payload={"required": required, "before": before})
    return client
