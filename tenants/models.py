"""Clients (the tenants), their domains and who may act on them. All in the public schema."""
from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.plugins.otp_totp.models import TOTPDevice, default_key, key_validator
from django_tenants.models import DomainMixin, TenantMixin
from fernet_fields import EncryptedCharField

# Lowercase letters, digits and single hyphens; starts with a letter. Hyphens become underscores
# in the schema name, so underscores are not allowed here (it keeps the mapping one-to-one).
CLIENT_ID_PATTERN = r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$"
CLIENT_ID_MAX_LENGTH = 40
SCHEMA_PREFIX = "client_"
RESERVED_CLIENT_IDS = frozenset({"onboard", "public", "template", "admin", "api", "static", "health"})

client_id_validator = RegexValidator(
    CLIENT_ID_PATTERN,
    "Use lowercase letters, digits and single hyphens, starting with a letter.",
    code="invalid_client_id",
)


def schema_name_for(client_id: str) -> str:
    return SCHEMA_PREFIX + client_id.replace("-", "_")


class Client(TenantMixin):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    client_id = models.CharField(
        max_length=CLIENT_ID_MAX_LENGTH, unique=True, validators=[client_id_validator]
    )
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # The owner's policy: every member (and operator) must have logged in with a second factor to
    # reach this client's endpoints and pages (tenants.mfa; 403 `mfa_required` otherwise).
    mfa_required = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    # Schemas are created explicitly by the onboarding service (cloned from the template), never
    # as a side effect of saving; and never dropped by deleting a row.
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        ordering = ["client_id"]

    def __str__(self) -> str:
        return self.client_id


class Domain(DomainMixin):
    """Host names of a client, for host-based routing; the API resolves clients from the path."""


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        TRADER = "trader", "Trader"
        VIEWER = "viewer", "Viewer"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "client"], name="one_membership_per_client")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.client}: {self.role}"


ROLE_RANK = {Membership.Role.VIEWER: 1, Membership.Role.TRADER: 2, Membership.Role.OWNER: 3}


class PlatformControl(models.Model):
    """Platform-wide operator controls: one row. The emergency halt stops every execution."""

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    emergency_halted = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)
    changed_by = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return "emergency halt ON" if self.emergency_halted else "trading allowed"


class EncryptedTOTPDevice(TimestampMixin, ThrottlingMixin, Device):
    """A user's TOTP device (tenants.mfa) whose seed is Fernet-encrypted at rest, as broker
    credentials are (FERNET_KEYS: the first key encrypts, every key decrypts; a database reader
    cannot compute anyone's codes). Otherwise django-otp's TOTPDevice: the same fields and
    defaults, and its own methods, which read nothing but these fields: the RFC 6238 check
    (django_otp.oath.TOTP) with tolerance, drift, last_t (a code is accepted once) and the
    throttle (OTP_TOTP_THROTTLE_FACTOR), and the otpauth:// URI. Device.from_persistent_id and
    OTPMiddleware find it as any device ("tenants.encryptedtotpdevice/<id>")."""

    # Hex, as django-otp's (20 random bytes); stored as a Fernet token (bytea), never as the hex.
    key = EncryptedCharField(max_length=80, validators=[key_validator], default=default_key,
                             help_text="A hex-encoded secret key of up to 40 bytes, stored encrypted.")
    step = models.PositiveSmallIntegerField(default=30)
    t0 = models.BigIntegerField(default=0)
    digits = models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)], default=6)
    tolerance = models.PositiveSmallIntegerField(default=1)
    drift = models.SmallIntegerField(default=0)
    last_t = models.BigIntegerField(default=-1)

    bin_key = TOTPDevice.bin_key
    verify_token = TOTPDevice.verify_token
    get_throttle_factor = TOTPDevice.get_throttle_factor
    config_url = TOTPDevice.config_url
    _read_str_from_settings = TOTPDevice._read_str_from_settings

    class Meta(Device.Meta):
        verbose_name = "TOTP device"
