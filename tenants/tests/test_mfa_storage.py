"""TOTP seeds at rest: Fernet-encrypted under FERNET_KEYS (tenants.models.EncryptedTOTPDevice),
never in plaintext in the database, still verifying codes once each; key rotation; and migration
0006, which encrypts the devices django-otp stored in plaintext. The database is read with raw
SQL, as someone holding a dump would."""
from __future__ import annotations

import importlib
import io
import time
from base64 import b32decode, b32encode
from datetime import UTC, datetime

import pytest
from cryptography.fernet import InvalidToken
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tenants import mfa
from tenants.models import EncryptedTOTPDevice
from tenants.tests.test_mfa import _pwd_header
from tradingplatform.testing import fernet_keys_use

# The seed of RFC 6238's test vectors ("12345678901234567890"), in hex as django-otp stores it.
RFC_SEED_HEX = "3132333435363738393031323334353637383930"
MIGRATION = importlib.import_module("tenants.migrations.0006_totp_seeds_encrypt")


def _code(seed: bytes, user) -> str:
    """What an authenticator holding `seed` shows now, or the next code if this one was used."""
    device = mfa.mfa_device_get(user=user, confirmed=None)
    step = max(int((time.time() - device.t0) // device.step) + device.drift, device.last_t + 1)
    return str(hotp(seed, step, device.digits)).zfill(device.digits)


def _stored(table: str) -> list[str]:
    """The `key` column of `table` as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key FROM {table} ORDER BY id")  # our own table names
        return [bytes(key).decode("latin-1") if isinstance(key, memoryview | bytes) else key
                for (key,) in cursor.fetchall()]


def _assert_not_in_plaintext(seed: bytes, stored: str) -> None:
    for form in (seed.hex(), seed.hex().upper(), b32encode(seed).decode(), b32encode(seed).decode().lower()):
        assert form not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token (version byte 0x80, then the time)


@override_settings(OTP_TOTP_THROTTLE_FACTOR=0)
def test_the_seed_is_stored_encrypted_and_a_code_from_it_verifies_once(api, alpha):
    response = api.post("/auth/2fa/enrol", **_pwd_header(alpha.trader))
    assert response.status_code == 201, response.content
    seed = b32decode(response.json()["secret"])
    (stored,) = _stored("tenants_encryptedtotpdevice")
    _assert_not_in_plaintext(seed, stored)
    assert _stored("otp_totp_totpdevice") == []  # django-otp's plaintext table is not used

    mfa.mfa_device_confirm(user=alpha.trader, code=_code(seed, alpha.trader))
    code = _code(seed, alpha.trader)
    assert mfa.mfa_code_verify(user=alpha.trader, code=code) is not None
    assert mfa.mfa_code_verify(user=alpha.trader, code=code) is None  # replayed: refused
    # a verification saves the device (last_t, drift): still encrypted
    _assert_not_in_plaintext(seed, _stored("tenants_encryptedtotpdevice")[0])
    # the console has no page that could show it
    assert not admin.site.is_registered(EncryptedTOTPDevice) and not admin.site.is_registered(TOTPDevice)


@override_settings(OTP_TOTP_THROTTLE_FACTOR=0)
def test_a_new_first_key_keeps_every_device_and_the_rotation_re_encrypts_them(alpha, settings):
    old_keys = list(settings.FERNET_KEYS)
    try:
        seed = b32decode(mfa.mfa_device_enrol(user=alpha.trader).secret)
        mfa.mfa_device_confirm(user=alpha.trader, code=_code(seed, alpha.trader))
        idle = b32decode(mfa.mfa_device_enrol(user=alpha.viewer).secret)  # never used until rotated
        fernet_keys_use(settings, ["the-new-key", *old_keys], EncryptedTOTPDevice)
        assert mfa.mfa_code_verify(user=alpha.trader, code=_code(seed, alpha.trader)) is not None
        out = io.StringIO()
        call_command("rotate_broker_credentials", stdout=out)
        assert "2 TOTP device(s)" in out.getvalue()
        fernet_keys_use(settings, ["the-new-key"], EncryptedTOTPDevice)  # the old key is gone
        assert mfa.mfa_device_get(user=alpha.trader).bin_key == seed
        assert mfa.mfa_device_get(user=alpha.viewer, confirmed=False).bin_key == idle
        fernet_keys_use(settings, old_keys, EncryptedTOTPDevice)  # and the old key alone opens nothing
        with pytest.raises(InvalidToken):
            mfa.mfa_device_get(user=alpha.viewer, confirmed=False)
    finally:
        fernet_keys_use(settings, old_keys, EncryptedTOTPDevice)


@override_settings(OTP_TOTP_THROTTLE_FACTOR=0)
def test_the_migration_encrypts_a_plaintext_device_with_its_state_and_reverse_restores_it(alpha):
    seed = bytes.fromhex(RFC_SEED_HEX)
    created = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO otp_totp_totpdevice (user_id, name, confirmed, key, step, t0, digits, tolerance, drift,"
            " last_t, throttling_failure_count, created_at) VALUES (%s, 'default', true, %s, 30, 0, 6, 1, 0, 42,"
            " 0, %s)", [alpha.trader.pk, RFC_SEED_HEX, created])
    state = MigrationExecutor(connection).loader.project_state(("tenants", "0006_totp_seeds_encrypt"))

    with connection.schema_editor() as editor:
        MIGRATION.seeds_encrypt(state.apps, editor)
    assert _stored("otp_totp_totpdevice") == []
    (stored,) = _stored("tenants_encryptedtotpdevice")
    _assert_not_in_plaintext(seed, stored)
    device = mfa.mfa_device_get(user=alpha.trader)
    assert (device.key, device.last_t, device.created_at) == (RFC_SEED_HEX, 42, created)
    code = _code(seed, alpha.trader)
    assert mfa.mfa_code_verify(user=alpha.trader, code=code) is not None
    assert mfa.mfa_code_verify(user=alpha.trader, code=code) is None  # replayed: refused

    with connection.schema_editor() as editor:
        MIGRATION.seeds_decrypt(state.apps, editor)
    assert _stored("otp_totp_totpdevice") == [RFC_SEED_HEX] and _stored("tenants_encryptedtotpdevice") == []
