"""Writes to the agent's configuration: its mode, its parameters, its notes, its runtime row."""
from __future__ import annotations

import copy
import logging
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from agents import policy
from agents.models import AgentConfig, AgentNote, AgentRuntime
from agents.parameters import RISK_LIMITS_KEY, ParameterError, parameters_from_json
from audit import kinds
from audit import services as audit
from risk import selectors as risk_selectors
from risk import services as risk
from tenants.models import Client
from tradingplatform.events import publish_event

logger = logging.getLogger(__name__)

AGENT = risk.Actor("agent", "agent")


class AutonomousDisabled(Exception):
    """Autonomous mode asked for while the platform-wide kill switch is off."""


def _config_for_update() -> AgentConfig:
    config, _ = AgentConfig.objects.select_for_update().get_or_create(singleton=True)
    return config


def agent_mode_set(*, client: Client, mode: str, actor: str) -> AgentConfig:
    if mode == AgentConfig.Mode.AUTONOMOUS and not settings.AUTONOMOUS_ENABLED:
        audit.audit_record(client_id=client.client_id, actor_type="user", actor_id=actor,
                           kind=kinds.AGENT_MODE_REFUSED,
                           payload={"requested": mode, "reason": "AUTONOMOUS_ENABLED=false"})
        raise AutonomousDisabled("Autonomous mode is disabled platform-wide (AUTONOMOUS_ENABLED=false).")
    with transaction.atomic():
        config = _config_for_update()
        before = config.mode
        config.mode = mode
        config.save()
        audit.audit_record(client_id=client.client_id, actor_type="user", actor_id=actor,
                           kind=kinds.AGENT_MODE_CHANGED, payload={"before": before, "after": mode})
        publish_event(client_id=client.client_id, type="agent_status", data={"mode": mode})
    return config


def _merged(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(current)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def agent_parameters_update(*, client: Client, changes: dict[str, Any], actor: str) -> AgentConfig:
    """Partial update: `changes` (already validated field by field) is merged into the stored
    parameters; the merged result must still be valid as a whole. Raises ParameterError (field
    errors) when it is not, and nothing changes."""
    with transaction.atomic():
        config = _config_for_update()
        before = copy.deepcopy(config.parameters)
        after = _merged(before, changes)
        parameters_from_json(after)
        try:
            risk_selectors.risk_limits_validate(stored=after.get(RISK_LIMITS_KEY, {}))
        except (TypeError, ValueError) as exc:
            raise ParameterError({"risk_limits": [str(exc)]}) from exc
        config.parameters = after
        config.save()
        audit.audit_record(client_id=client.client_id, actor_type="user", actor_id=actor,
                           kind=kinds.AGENT_PARAMETERS_CHANGED, payload={"before": before, "after": after})
        publish_event(client_id=client.client_id, type="agent_status", data={"parameters": after})
    return config


def agent_note_add(*, client: Client, author: str, text: str) -> AgentNote:
    """A note in the agent's memory; audited so the record of what the agent was told is complete."""
    with transaction.atomic():
        note = AgentNote.objects.create(author=author, text=text)
        audit.audit_record(client_id=client.client_id, actor_type="user", actor_id=author,
                           kind=kinds.AGENT_NOTE_ADDED, payload={"note_id": note.pk, "text": text[:2000]})
    return note


def _runtime_for_update() -> AgentRuntime:
    runtime, _ = AgentRuntime.objects.select_for_update().get_or_create(singleton=True)
    return runtime


def _open_structure(runtime: AgentRuntime) -> policy.OpenStructure | None:
    data = runtime.open_structure
    if not data:
        return None
    return policy.OpenStructure(
        kind=data["kind"], legs=tuple((key, int(quantity)) for key, quantity in data["legs"]),
        entry_price=float(data["entry_price"]), quantity=int(data["quantity"]),
        expiry=date.fromisoformat(data["expiry"]), opened_at=datetime.fromisoformat(data["opened_at"]),
    )
