"""Reads about the agent, in the current client's schema."""
from __future__ import annotations

import dataclasses
import uuid
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from agents import schedule
from agents.models import AgentConfig, AgentDecision, AgentNote, AgentRuntime, ChatMessage, Proposal
from agents.parameters import (
    RISK_LIMITS_KEY,
    AgentParameters,
    ParameterError,
    parameters_describe,
    parameters_from_json,
)
from risk.delta_models import DeltaModel
from tenants.models import Client


def agent_config_get() -> AgentConfig:
    """The client's agent configuration; the defaults when none was ever saved."""
    return AgentConfig.objects.first() or AgentConfig()


def agent_parameters_get() -> AgentParameters:
    """The strategy parameters in force (the risk limits are read by risk.selectors). What the
    owner never set comes from the broker connection's product when it names one (IBKR's
    `underlying_instrument` and the future its `underlying_expiry` resolved to at connect), then
    from the built-in defaults."""
    stored = agent_config_get().parameters
    return parameters_from_json({**_connection_defaults(stored), **stored})


def _connection_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    import json

    from brokers.products import PRODUCTS, roll_date
    from brokers.services import broker_connection_get

    credentials = json.loads(broker_connection_get().credentials or "{}")
    symbol = credentials.get("underlying_instrument")
    if symbol not in PRODUCTS:  # none named, or a product the agent cannot trade
        return {}
    defaults: dict[str, Any] = {"underlying": symbol}
    expiry = str(credentials.get("underlying_expiry", ""))
    if len(expiry) == 8 and stored.get("underlying", symbol) == symbol:  # resolved at connect
        # The connection's future hedges until its roll date; after it the agent picks the next
        # one by the roll rule (a pinned future that expired would stop every cycle).
        day = date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:]))
        if timezone.now().date() < roll_date(PRODUCTS[symbol], day):
            defaults["hedge_future_expiry"] = day.isoformat()
    return defaults


def agent_delta_models() -> dict[str, DeltaModel]:
    """The delta model of the agent's underlying (registered with risk.selectors at start-up, as
    the limits are). Parameters stored before a bound tightened: the platform's default."""
    try:
        return agent_parameters_get().delta_models
    except ParameterError:
        return {}


def agent_risk_limits_stored() -> dict[str, Any]:
    """The risk limits as stored in the agent's parameters document, unparsed. Registered with
    risk.selectors at start-up (AgentsConfig.ready): risk reads the limits through it without
    importing this app."""
    return dict(agent_config_get().parameters.get(RISK_LIMITS_KEY, {}))


def _json_limits(limits) -> dict[str, Any]:
    return {name: (str(value) if not isinstance(value, (int, float)) else value)
            for name, value in dataclasses.asdict(limits).items()}


def agent_status_get(*, client: Client) -> dict[str, Any]:
    from brokers.registry import routed_broker
    from brokers.selectors import broker_session_state
    from brokers.services import broker_connection_get
    from risk.selectors import (
        daily_pnl_read,
        orders_last_minute,
        platform_control_get,
        risk_limits_get,
        risk_state_get,
        trading_state_effective,
    )
    from tradingplatform.events import live_state_get

    config = agent_config_get()
    state = risk_state_get()
    control = platform_control_get()
    limits = risk_limits_get()
    connection = broker_connection_get()
    greeks = live_state_get(client_id=client.client_id, name="greeks")
    working = (greeks or {}).get("working_orders") or {}
    runtime = agent_runtime_get()
    try:
        parameters = parameters_from_json(config.parameters)
        interval, delta_model = parameters.cycle_interval_seconds, parameters.delta_model
    except ParameterError:
        interval, delta_model = None, None
    next_cycle = None
    if interval is not None and client.status == Client.Status.ACTIVE:
        next_cycle = schedule.next_cycle_at(client_id=client.client_id, interval=interval, now=timezone.now())
    effective = trading_state_effective(limits=limits)
    halted = effective["halted"]
    tripped = effective["state"] == "BREAKER"
    return {
        "client_id": client.client_id,
        "mode": config.mode,
        "autonomous_enabled": settings.AUTONOMOUS_ENABLED,
        "executing": config.mode == AgentConfig.Mode.AUTONOMOUS and settings.AUTONOMOUS_ENABLED and not halted,
        # Every view agrees: a halt of any kind reads HALTED here, with its reason; `effective_state`
        # says which halt, who set it and since when.
        "trading_state": "HALTED" if halted else state.trading_state,
        "trading_state_reason": effective["reason"] if halted else state.reason,
        "effective_state": effective,
        "trading_state_until": state.state_until,
        "halt": {
            "emergency": {"halted": control.emergency_halted, "reason": control.reason,
                          "set_by": control.changed_by or None, "at": control.changed_at},
            "client": {"halted": state.operator_halted, "reason": state.operator_halt_reason,
                       "set_by": state.operator_halt_by or None, "at": state.operator_halt_at},
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
            "delta_model": delta_model,  # the agent's underlying's; net_greeks names each underlying's
            # The remaining quantities of working orders, apart: the governor counts them too.
            "working_delta": working.get("net_delta"),
            "working_orders": working.get("orders"),
            "max_net_delta": limits.max_net_delta,
            "open_legs": greeks.get("open_legs") if greeks else None,
            "max_open_legs": limits.max_open_legs,
            "daily_pnl": {name: str(value) if value is not None else None for name, value in
                          daily_pnl_read(unrealized=greeks.get("unrealized_pnl") if greeks else None).items()},
            "max_daily_loss": str(limits.max_daily_loss),
            "orders_last_minute": orders_last_minute(),
            "max_orders_per_minute": limits.max_orders_per_minute,
            "as_of": greeks.get("as_of") if greeks else None,
        },
        "broker": {
            "broker": connection.broker,
            "routed_to": routed_broker(connection.broker),
            "status": connection.status,
            "last_checked_at": connection.last_checked_at,
            "last_error": connection.last_error,
            "session": broker_session_state(connection=connection),
        },
        "net_greeks": greeks,
        "last_cycle": runtime.last_cycle_at,
        "last_cycle_status": runtime.last_cycle_status,
        "last_cycle_reason": runtime.last_cycle_reason,
        "next_cycle": next_cycle,
        "pending_proposals": proposals_list(status=Proposal.Status.PENDING).count(),
        "parameters": config.parameters,
        "updated_at": config.updated_at,
    }


def agent_runtime_get() -> AgentRuntime:
    return AgentRuntime.objects.first() or AgentRuntime()


def proposal_effective_status(proposal: Proposal, now: datetime) -> str:
    """The status a proposal reads as, everywhere (API, chat, status counts): a pending proposal
    past its time to live is expired even before a cycle (or an approval) marks it so, since it
    can no longer be approved. proposals_list applies the same rule as a query."""
    if proposal.status == Proposal.Status.PENDING and proposal.expires_at <= now:
        return Proposal.Status.EXPIRED.value
    return proposal.status


def proposals_list(*, status: str | None = None):
    """Newest first, filtered by effective status (see proposal_effective_status)."""
    proposals = Proposal.objects.order_by("-created_at")
    now = timezone.now()
    if status == Proposal.Status.PENDING:
        return proposals.filter(status=status, expires_at__gt=now)
    if status == Proposal.Status.EXPIRED:
        return proposals.filter(Q(status=status) | Q(status=Proposal.Status.PENDING, expires_at__lte=now))
    return proposals.filter(status=status) if status else proposals


def proposal_get(*, proposal_id: str) -> Proposal | None:
    """The proposal, or None (also for an id that is not a UUID)."""
    try:
        return Proposal.objects.filter(pk=uuid.UUID(str(proposal_id))).first()
    except ValueError:
        return None


def decisions_recent(*, limit: int = 20) -> list[AgentDecision]:
    return list(AgentDecision.objects.order_by("-created_at", "-id")[:limit])


def decision_latest() -> AgentDecision | None:
    return AgentDecision.objects.order_by("-created_at", "-id").first()


def chat_history(*, limit: int = 20) -> list[ChatMessage]:
    """The latest messages of the conversation, oldest first."""
    return list(reversed(ChatMessage.objects.order_by("-created_at", "-id")[:limit]))


def notes_recent(*, limit: int = 20) -> list[AgentNote]:
    return list(AgentNote.objects.order_by("-created_at", "-id")[:limit])


def book_get(*, client: Client) -> dict[str, Any]:
    """The book as last synced: stored positions and the live net greeks (no broker call)."""
    from brokers.models import Position
    from tradingplatform.events import live_state_get

    positions = [
        {"instrument_key": row.instrument_key, "quantity": row.quantity, "average_price": float(row.average_price),
         "synced_at": row.synced_at.isoformat()}
        for row in Position.objects.exclude(quantity=0).order_by("instrument_key")
    ]
    return {"positions": positions, "greeks": live_state_get(client_id=client.client_id, name="greeks")}


def agent_parameters_described() -> dict[str, Any]:
    """The parameters and risk limits in force, each with its default, bounds and unit (what an
    owner may set, and what the others read)."""
    from risk.selectors import risk_limits_describe

    config = agent_config_get()
    try:
        parameters = parameters_from_json(config.parameters)
    except ParameterError:  # stored before a bound tightened: describe the defaults, say so
        parameters = AgentParameters()
    return {"parameters": parameters_describe(parameters), "risk_limits": risk_limits_describe(),
            "mode": config.mode, "updated_at": config.updated_at}


def book_scenario(*, valuation, broker, now: datetime, vol_shift: float = 0.0, days: float = 0.0,
                  proposal_id: str | None = None) -> dict[str, Any]:
    """The risk graph's numbers: the book's P&L (USD) over moves of the underlying of -10 % to
    +10 %, now (or `days` later, with implied vols shifted by `vol_shift`) and at the nearest
    option expiry; with `proposal_id`, also the book after that proposal's legs (valued at their
    own quotes, as the book's are). A proposal that does not exist is None in the answer."""
    from brokers.services import quotes_for
    from risk.book import instruments_risk
    from risk.scenario import pnl_curve, scenario_leg, scenario_legs

    legs = scenario_legs(valuation.legs)
    rate = settings.RISK_FREE_RATE
    today = pnl_curve(legs, now=now, rate=rate, vol_shift=vol_shift, days=days)
    expiry = pnl_curve(legs, now=now, rate=rate, vol_shift=vol_shift, days=days, at_expiry=True)
    result: dict[str, Any] = {"shifts": list(today.shifts), "now": list(today.pnl), "at_expiry": list(expiry.pnl),
                              "after_proposal": None, "proposal": None, "unpriced": list(today.unpriced),
                              "vol_shift": vol_shift, "days": days}
    proposal = Proposal.objects.filter(pk=_uuid_or_none(proposal_id)).first() if proposal_id else None
    if proposal is not None:
        from agents.services import proposal_order

        instruments = [leg.instrument for leg in proposal_order(proposal).legs]
        quotes = quotes_for(broker=broker, instruments=instruments)
        risks = instruments_risk(instruments, quotes, now=now, rate=rate)
        extra = [scenario_leg(risk, (1 if leg["side"] == "BUY" else -1) * int(leg["quantity"]))
                 for risk, leg in zip(risks, proposal.legs, strict=True)]
        after = pnl_curve([*legs, *extra], now=now, rate=rate, vol_shift=vol_shift, days=days)
        result.update(after_proposal=list(after.pnl), proposal=proposal)
    return result


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def agent_band_history(*, start: datetime, end: datetime) -> list[tuple[datetime, float, float]]:
    """The hedge band the agent's decisions used from `start` to `end`: (from when, target delta,
    half-width) oldest first, the last decision before `start` included (it held at `start`).
    Decisions without a band (no quote, unknown gamma) do not change it."""
    decisions = AgentDecision.objects.filter(metrics__band_half_width__isnull=False)
    before = decisions.filter(created_at__lt=start).order_by("-created_at", "-id").first()
    rows = [*([before] if before else []),
            *decisions.filter(created_at__gte=start, created_at__lt=end).order_by("created_at", "id")]
    band = []
    for row in rows:
        try:
            target, half = float(row.metrics["target_delta"]), float(row.metrics["band_half_width"])
        except (KeyError, TypeError, ValueError):
            continue
        if band and (band[-1][1], band[-1][2]) == (target, half):
            continue  # unchanged: one span
        band.append((max(row.created_at, start), target, half))
    return band
