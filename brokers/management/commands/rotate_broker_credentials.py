from django.core.management.base import BaseCommand
from django_tenants.utils import tenant_context

from brokers.models import BrokerConnection
from tenants.mfa import mfa_secrets_reencrypt
from tenants.models import Client


class Command(BaseCommand):
    help = (
        "Re-encrypt every client's broker credentials, and every user's TOTP seed, under the newest "
        "key (the first of FERNET_KEYS). Run it after putting a new key first; then the old key can "
        "be removed."
    )

    def handle(self, *args, **options) -> None:
        rotated = 0
        for client in Client.objects.order_by("client_id"):
            with tenant_context(client):
                for connection in BrokerConnection.objects.all():
                    # Reading decrypts with any key; saving encrypts with the first.
                    connection.save(update_fields=["credentials"])
                    rotated += 1
        devices = mfa_secrets_reencrypt()
        self.stdout.write(self.style.SUCCESS(f"re-encrypted {rotated} broker connection(s) "
                                             f"and {devices} TOTP device(s)"))
