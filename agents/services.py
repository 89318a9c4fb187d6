"""Writes about the agent: its mode and its parameters, each change audited with before/after."""
from __future__ import annotations

import copy
from typing import Any

from django.conf import settings
from django.db import transaction

from agents.models import AgentConfig
from audit import kinds
from audit import services as audit
from tenants.models import Client
from tradingplatform.events import publish_event


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
    parameters; the merged result must still make a valid set of limits."""
    from risk.services import risk_limits_from_parameters

    with transaction.atomic():
        config = _config_for_update()
        before = copy.deepcopy(config.parameters)
        after = _merged(before, changes)
        risk_limits_from_parameters(after)  # raises ValueError when the merged limits are invalid
        config.parameters = after
        config.save()
        audit.audit_record(client_id=client.client_id, actor_type="user", actor_id=actor,
                           kind=kinds.AGENT_PARAMETERS_CHANGED, payload={"before": before, "after": after})
    publish_event(client_id=client.client_id, type="agent_status", data={"parameters": after})
    return config
