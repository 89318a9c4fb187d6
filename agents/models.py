"""The client's trading agent: configuration, proposals, cycles and memory. In the client's schema."""
from __future__ import annotations

import uuid

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


class AgentCycle(models.Model):
    """One run of the agent's cycle. `key` names the scheduled slot (or the trigger), so that a
    redelivered task finds the run it belongs to and resumes it instead of deciding again."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        SKIPPED = "skipped"  # the client was busy (a lock not granted in time): nothing decided

    key = models.CharField(max_length=80, unique=True)
    trigger = models.CharField(max_length=16)  # "schedule", "chat", "partial_fill", "manual"
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    error = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]


class AgentDecision(models.Model):
    """The decision journal: every policy decision, "no action" included, with its numbers."""

    class Outcome(models.TextChoices):
        NO_ACTION = "no_action"
        PROPOSED = "proposed"
        EXECUTED = "executed"
        HELD = "held"  # trades decided but not proposed or executed (halted, broker down...)

    cycle = models.ForeignKey(AgentCycle, null=True, blank=True, on_delete=models.PROTECT, related_name="decisions")
    trigger = models.CharField(max_length=16)
    policy_version = models.CharField(max_length=32)
    inputs_digest = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.TextField()
    metrics = models.JSONField(default=dict)
    trades = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class Proposal(models.Model):
    """One order the agent wants: pending a trader's approval (confirmation mode), or executing
    straight away (autonomous). Its id is the API's `trade_id`; the order's client order id is
    derived from it, so an execution can only ever send one order."""

    class Status(models.TextChoices):
        PENDING = "pending"
        EXECUTING = "executing"  # claimed; the broker call may be in flight or its outcome unknown
        EXECUTED = "executed"  # the broker accepted the order (see order_state for fills)
        BLOCKED = "blocked"  # the governor refused it at execution time
        FAILED = "failed"  # the broker refused it
        REJECTED = "rejected"
        EXPIRED = "expired"
        SUPERSEDED = "superseded"  # a newer proposal for the same action replaced it

    class Source(models.TextChoices):
        CYCLE = "cycle"
        CHAT = "chat"
        API = "api"  # a trader's explicit legs, POSTed

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    decision = models.ForeignKey(AgentDecision, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="proposals")
    source = models.CharField(max_length=8, choices=Source.choices)
    mode = models.CharField(max_length=16, choices=AgentConfig.Mode.choices)
    action = models.CharField(max_length=24)  # "hedge", "open_structure", "close_structure"
    legs = models.JSONField()  # [{"instrument": {...}, "instrument_key": ..., "side": ..., "quantity": ...}]
    order_type = models.CharField(max_length=8, default="LMT")
    limit_price = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    summary = models.TextField()
    rationale = models.JSONField(default=dict)
    precheck = models.JSONField(default=dict)  # the governor's decision when the proposal was made
    policy_version = models.CharField(max_length=32)
    content_hash = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    client_order_id = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    execution = models.JSONField(null=True, blank=True)  # governor decision, order state, fills, error
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]


class AgentRuntime(models.Model):
    """One row per client: what the scheduler and the policy need to remember between cycles."""

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    last_cycle_at = models.DateTimeField(null=True, blank=True)
    last_cycle_status = models.CharField(max_length=16, blank=True)
    last_cycle_reason = models.TextField(blank=True)
    # The option structure the agent opened and still holds (policy.OpenStructure as JSON).
    open_structure = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)


class ChatMessage(models.Model):
    """The conversation with the agent. An agent reply records how it was produced."""

    class Role(models.TextChoices):
        USER = "user"
        AGENT = "agent"

    message_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    role = models.CharField(max_length=8, choices=Role.choices)
    author = models.CharField(max_length=150)  # the user's name, or "agent"
    text = models.TextField()
    intent = models.CharField(max_length=32, blank=True)
    engine = models.CharField(max_length=16, blank=True)  # "intents" or "llm"
    prompt_version = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=100, blank=True)
    tool_calls = models.JSONField(default=list, blank=True)
    proposal_ids = models.JSONField(default=list, blank=True)
    fallback_reason = models.TextField(blank=True)  # why the model's answer was not used
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]


class AgentNote(models.Model):
    """A note in the agent's memory (a trader's instruction or context), used to answer "why"."""

    author = models.CharField(max_length=150)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
