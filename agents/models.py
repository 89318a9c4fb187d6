"""The client's trading agent. Lives in the client's schema."""
from __future__ import annotations

from django.db import models


class AgentConfig(models.Model):
    """One row per client schema: how the agent runs."""

    class Mode(models.TextChoices):
        CONFIRMATION = "confirmation", "Confirmation (a trader approves each order)"
        AUTONOMOUS = "autonomous", "Autonomous (orders execute through the risk governor)"

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.CONFIRMATION)
    parameters = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"agent ({self.mode})"
