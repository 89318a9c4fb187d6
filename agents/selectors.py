"""Reads about the agent, in the current client's schema."""
from __future__ import annotations

import dataclasses
from typing import Any

from django.conf import settings

from agents.models import AgentConfig
from tenants.models import Client


def agent_config_get() -> AgentConfig:
    """The client's agent configuration; the defaults when none was ever saved."""
    return AgentConfig.objects.first() or AgentConfig()


def _json_limits(limits) -> dict[str, Any]:
    return {name: (str(value) if not isinstance(value, (int, float)) else value)
            for name, value in dataclasses.asdict(limits).items()}


def agent_status_get(*, client: Client) -> dict[str, Any]:
    from brokers.registry import routed_broker
    from brokers.services import broker_connection_get
    from risk.services import platform_control_get, risk_limits_get, risk_state_get
    from tradingplatform.events import live_state_get

    config = agent_config_get()
    state = risk_state_get()
    control = platform_control_get()
    limits = risk_limits_get()
    connection = broker_connection_get()
    greeks = live_state_get(client_id=client.client_id, name="greeks")
    halted = control.emergency_halted or state.operator_halted or state.trading_state == "HALTED"
    tripped = state.loss_streak >= limits.breaker_loss_count or state.reason == "circuit_breaker"
    return {
        "client_id": client.client_id,
        "mode": config.mode,
        "autonomous_enabled": settings.AUTONOMOUS_ENABLED,
        "executing": config.mode == AgentConfig.Mode.AUTONOMOUS and settings.AUTONOMOUS_ENABLED and not halted,
        "trading_state": state.trading_state,
        "trading_state_reason": state.reason,
        "trading_state_until": state.state_until,
        "halt": {
            "emergency": {"halted": control.emergency_halted, "reason": control.reason},
            "client": {"halted": state.operator_halted, "reason": state.operator_halt_reason},
        },
        "circuit_breaker": {
            "tripped": tripped,
            "consecutive_losses": state.loss_streak,
            "trips_at": limits.breaker_loss_count,
            "loss_threshold": str(limits.breaker_loss_threshold),
        },
        "limits": _json_limits(limits),
        "usage": {
            "net_delta": greeks.get("net_delta") if greeks else None,
            "max_net_delta": limits.max_net_delta,
            "open_legs": greeks.get("open_legs") if greeks else None,
            "max_open_legs": limits.max_open_legs,
            "as_of": greeks.get("as_of") if greeks else None,
        },
        "broker": {
            "broker": connection.broker,
            "routed_to": routed_broker(connection.broker),
            "status": connection.status,
            "last_checked_at": connection.last_checked_at,
            "last_error": connection.last_error,
        },
        "net_greeks": greeks,
        "last_cycle": None,
        "parameters": config.parameters,
        "updated_at": config.updated_at,
    }
