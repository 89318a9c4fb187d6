"""The client's broker link and book. Every model here lives in the client's schema."""
from __future__ import annotations

from django.db import models
from fernet_fields import EncryptedTextField


def broker_choices() -> list[tuple[str, str]]:
    """The broker kinds of brokers.registry. Imported when first called, not with this module: the
    registry imports the adapters, and they import these models."""
    from brokers.registry import broker_choices as registered

    return registered()


class BrokerConnection(models.Model):
    """The one broker a client trades through, with its credentials encrypted at rest."""

    class Status(models.TextChoices):
        UNTESTED = "untested", "Not tested yet"
        CONNECTED = "connected", "Connected"
        FAILED = "failed", "Failed"

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    broker = models.CharField(max_length=16, choices=broker_choices)
    # JSON text, Fernet-encrypted (FERNET_KEYS: the first key encrypts, every key decrypts).
    credentials = EncryptedTextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNTESTED)
    # The structured broker_error of the last failed check; never holds a secret.
    last_error = models.JSONField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.broker} ({self.status})"


class Order(models.Model):
    """An order as we sent it. The row exists before the broker is called, so that after an
    unknown outcome the retry asks the broker by `client_order_id` instead of sending again."""

    class State(models.TextChoices):
        PENDING_SUBMIT = "pending_submit"
        SUBMITTED = "submitted"
        PARTIALLY_FILLED = "partially_filled"
        FILLED = "filled"
        CANCELLED = "cancelled"
        REJECTED = "rejected"
        UNKNOWN = "unknown"

    client_order_id = models.CharField(max_length=64, unique=True)
    broker = models.CharField(max_length=16)
    broker_order_id = models.CharField(max_length=64, blank=True)
    # IB's permId: unlike the order id it survives client ids, sessions and restarts
    broker_perm_id = models.CharField(max_length=32, blank=True, default="")
    legs = models.JSONField()  # [{"instrument": {...}, "side": "BUY", "quantity": 1}, ...]
    order_type = models.CharField(max_length=8)
    limit_price = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING_SUBMIT)
    filled_quantity = models.IntegerField(default=0)
    average_fill_price = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]


class Fill(models.Model):
    fill_id = models.CharField(max_length=128, unique=True)  # the broker's execution id
    client_order_id = models.CharField(max_length=64, db_index=True)
    instrument_key = models.CharField(max_length=64, db_index=True)
    instrument = models.JSONField()
    side = models.CharField(max_length=4)
    quantity = models.IntegerField()
    price = models.DecimalField(max_digits=18, decimal_places=6)
    commission = models.DecimalField(max_digits=14, decimal_places=2)
    realized_pnl = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    executed_at = models.DateTimeField(db_index=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-executed_at", "-id"]


class Position(models.Model):
    """The book as the broker last reported it."""

    instrument_key = models.CharField(max_length=64, unique=True)
    instrument = models.JSONField()
    quantity = models.IntegerField()  # signed
    average_price = models.DecimalField(max_digits=18, decimal_places=6)
    synced_at = models.DateTimeField()

    class Meta:
        ordering = ["instrument_key"]


class SimulatorState(models.Model):
    """The simulated market's account for this client, so that it survives restarts."""

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    state = models.JSONField()
    updated_at = models.DateTimeField(auto_now=True)
