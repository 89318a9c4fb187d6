"""Move every TOTP device from django-otp's table (otp_totp_totpdevice, seed in plaintext hex) to
tenants_encryptedtotpdevice (seed Fernet-encrypted under the first of FERNET_KEYS), with its
state (confirmed, drift, last_t, throttling, timestamps), and delete the plaintext rows.

Reverse writes the seeds back, in plaintext, into django-otp's table and empties ours: only for
rolling back to code that reads TOTPDevice, and it needs FERNET_KEYS that decrypt them. Either
way a session verified with a moved device is no longer verified (its device id names the other
table): the user gives a code again at their next login; tokens (their `amr` claim) are not
affected. last_t moves with each device, so a code used before the move is not accepted again.
"""
from django.db import migrations

# Every field of both models but the id (the user gets a new id in the other table).
DEVICE_FIELDS = ("user_id", "name", "confirmed", "throttling_failure_timestamp", "throttling_failure_count",
                 "created_at", "last_used_at", "key", "step", "t0", "digits", "tolerance", "drift", "last_t")


def _move(source, target, alias: str) -> None:
    for device in source.objects.using(alias).select_for_update().order_by("pk"):
        moved = target.objects.using(alias).create(**{name: getattr(device, name) for name in DEVICE_FIELDS})
        # created_at is auto_now_add: create() stamps now, the device keeps its own date.
        target.objects.using(alias).filter(pk=moved.pk).update(created_at=device.created_at)
    source.objects.using(alias).all().delete()


def seeds_encrypt(apps, schema_editor) -> None:
    _move(apps.get_model("otp_totp", "TOTPDevice"), apps.get_model("tenants", "EncryptedTOTPDevice"),
          schema_editor.connection.alias)


def seeds_decrypt(apps, schema_editor) -> None:
    _move(apps.get_model("tenants", "EncryptedTOTPDevice"), apps.get_model("otp_totp", "TOTPDevice"),
          schema_editor.connection.alias)


class Migration(migrations.Migration):

    dependencies = [
        ("tenants", "0005_encrypted_totp_device"),
        ("otp_totp", "0003_add_timestamps"),
    ]

    operations = [
        migrations.RunPython(seeds_encrypt, seeds_decrypt),
    ]
