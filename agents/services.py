"""Writes about the agent: its configuration, its cycle, its proposals and their execution.

The cycle: expire stale proposals, resume any execution left in flight, sync the book and quote
the market, let the pure policy decide (agents/policy.py), pre-check each trade with the governor,
then propose (confirmation mode) or execute (autonomous mode). Every decision, "no action"
included, goes to the decision journal and the audit trail.

Exactly once: a proposal is claimed (PENDING -> EXECUTING) under its row lock before anything is
sent, and its order's client order id is derived from the proposal's id, so a second approval, a
redelivered task or a resumed cycle can only ever ask the broker about the one order.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents import policy
from agents.models import AgentConfig, AgentCycle, AgentDecision, AgentNote, AgentRuntime, Proposal
from agents.parameters import RISK_LIMITS_KEY, AgentParameters, Band, ParameterError, parameters_from_json
from agents.selectors import agent_config_get, agent_parameters_get, agent_runtime_get
from audit import kinds
from audit import services as audit
from brokers import contracts
from brokers import services as broker_services
from brokers.codec import instrument_from_json, instrument_to_json
from brokers.domain import Broker, BrokerError, Instrument, OrderLeg, OrderRequest
from brokers.models import Order as OrderRow
from brokers.products import PRODUCTS
from risk import selectors as risk_selectors
from risk import services as risk
from risk.book import instruments_risk
from tenants.models import Client
from tradingplatform.events import publish_event
from tradingplatform.locks import advisory_lock_attempt

logger = logging.getLogger(__name__)

AGENT = risk.Actor("agent", "agent")
# The agent's limit price is the far touch when it decides, widened by this many ticks per leg so
# that a proposal approved a few seconds later still fills while protecting against a jump.
LIMIT_PROTECTION_TICKS = 4
# An execution still in flight after this long was interrupted (a worker died): ask the broker.
IN_FLIGHT_RESOLVE_AFTER = timedelta(seconds=60)


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


# ---------------------------------------------------------------------------------------------
# Errors the API maps to status codes
# ---------------------------------------------------------------------------------------------

class ProposalNotFound(Exception):
    pass


class ProposalConflict(Exception):
    """Not pending any more (HTTP 409)."""


class ProposalExpired(Exception):
    """Its time to live has passed (HTTP 410)."""


class RiskRejected(Exception):
    """The governor refused the proposal's order at execution time (HTTP 422, or 423 for a halt)."""

    HALT_CODES = frozenset({"emergency_halt", "trading_halted", "circuit_breaker"})

    def __init__(self, decision: dict[str, Any]) -> None:
        self.decision = decision
        self.violations = decision.get("violations", [])
        super().__init__("; ".join(v["message"] for v in self.violations) or "refused by the risk governor")

    @property
    def is_halt(self) -> bool:
        return any(v["code"] in self.HALT_CODES for v in self.violations)


@dataclass(frozen=True, slots=True)
class DraftOutcome:
    decision: AgentDecision
    proposals: list[Proposal]


@dataclass(frozen=True, slots=True)
class CycleOutcome:
    cycle: AgentCycle | None
    skipped: str  # why no cycle ran ("" when one did)
    decision: AgentDecision | None
    proposals: list[Proposal]


# ---------------------------------------------------------------------------------------------
# Proposals: JSON, hashing, the order they stand for
# ---------------------------------------------------------------------------------------------

def _publish_proposal(*, client: Client, proposal: Proposal, event: str) -> None:
    from agents.serializers import ProposalSerializer

    publish_event(client_id=client.client_id, type="proposal",
                  data={"event": event, "proposal": ProposalSerializer(proposal).data})


def _legs_json(legs: tuple[OrderLeg, ...]) -> list[dict[str, Any]]:
    return [{"instrument_key": leg.instrument.key, "instrument": instrument_to_json(leg.instrument),
             "side": leg.side, "quantity": leg.quantity} for leg in legs]


def _legs_identity(legs: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return sorted((leg["instrument_key"], leg["side"], int(leg["quantity"])) for leg in legs)


def proposal_content_hash(*, action: str, legs: list[dict[str, Any]], order_type: str,
                          limit_price: Decimal | None, policy_version: str) -> str:
    """What a trader approves: the action, the legs, the price. Checked again at approval."""
    content = {
        "action": action,
        "legs": _legs_identity(legs),
        "order_type": order_type,
        "limit_price": f"{Decimal(limit_price):.6f}" if limit_price is not None else None,
        "policy_version": policy_version,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _stored_hash(proposal: Proposal) -> str:
    return proposal_content_hash(action=proposal.action, legs=proposal.legs, order_type=proposal.order_type,
                                 limit_price=proposal.limit_price, policy_version=proposal.policy_version)


def proposal_order(proposal: Proposal) -> OrderRequest:
    legs = tuple(OrderLeg(instrument=instrument_from_json(leg["instrument"]), side=leg["side"],
                          quantity=int(leg["quantity"])) for leg in proposal.legs)
    return OrderRequest(
        client_order_id=proposal.client_order_id, legs=legs, order_type=proposal.order_type,
        limit_price=float(proposal.limit_price) if proposal.limit_price is not None else None,
    )


def _tick(instrument: Instrument) -> float:
    product = PRODUCTS[instrument.symbol]
    return product.option_tick if instrument.is_option else product.future_tick


def protected_limit_price(trade: policy.ProposedTrade) -> Decimal:
    """The policy's far-touch price widened by LIMIT_PROTECTION_TICKS per leg against us: higher
    for what we pay, lower for what we receive; on the tick grid of the product."""
    if len(trade.legs) == 1:
        leg = trade.legs[0]
        tick = _tick(leg.instrument)
        step = LIMIT_PROTECTION_TICKS * tick * (1 if leg.side == "BUY" else -1)
        price = max(trade.limit_price + step, tick)
        return Decimal(str(round(round(price / tick) * tick, 10)))
    widening = sum(LIMIT_PROTECTION_TICKS * _tick(leg.instrument) for leg in trade.legs)
    tick = min(_tick(leg.instrument) for leg in trade.legs)
    return Decimal(str(round(round((trade.limit_price + widening) / tick) * tick, 10)))


# ---------------------------------------------------------------------------------------------
# The policy's inputs, from the broker
# ---------------------------------------------------------------------------------------------

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


def _quoted(instruments: list[Instrument], quotes: dict, now: datetime) -> tuple[policy.QuotedInstrument, ...]:
    risks = instruments_risk(instruments, quotes, now=now, rate=settings.RISK_FREE_RATE)
    return tuple(
        policy.QuotedInstrument(risk=risk, bid=quotes[i.key].bid if i.key in quotes else None,
                                ask=quotes[i.key].ask if i.key in quotes else None)
        for i, risk in zip(instruments, risks, strict=True)
    )


def _needs_chain(parameters: AgentParameters, structure: policy.OpenStructure | None, now: datetime) -> bool:
    """The chain is quoted only when the policy may open a structure: none is held, or a roll is due."""
    if parameters.structure.kind == "none":
        return False
    if structure is None:
        return True
    roll_dte = parameters.exits.roll_dte
    return roll_dte is not None and (structure.expiry - now.date()).days <= roll_dte


def _policy_inputs(*, broker: Broker, snapshot, parameters: AgentParameters, structure, now: datetime):
    """(PolicyInputs, quotes by instrument key, a note for the journal) for the current book and
    market. The contracts are chosen by `brokers.contracts`: the hedge future by its roll date, the
    options from every future the structure's days-to-expiry window reaches."""
    today = now.astimezone(UTC).date()
    futures = broker.listed_futures(parameters.underlying)
    try:
        choice = contracts.hedge_future_select(futures, today=today, chosen_expiry=parameters.hedge_future_expiry)
    except ValueError as exc:
        raise BrokerError(operation="listed_futures", broker=broker.name, code="instrument_not_found",
                          retryable=False, message=str(exc)) from exc
    hedge_future = choice.future
    expiring = [leg.risk.instrument for leg in snapshot.valuation.legs
                if leg.quantity and not leg.risk.instrument.is_option
                and leg.risk.instrument.symbol == parameters.underlying
                and leg.risk.instrument.expiry < hedge_future.expiry]
    quotes = dict(snapshot.quotes)
    quotes.update(broker_services.quotes_for(broker=broker, instruments=[hedge_future, *expiring]))
    options: dict[str, Instrument] = {}
    if structure is not None:
        # A held structure's legs are always quoted: its exits are priced from their bid and ask.
        held = {key for key, _ in structure.legs}
        options.update({leg.risk.instrument.key: leg.risk.instrument for leg in snapshot.valuation.legs
                        if leg.risk.instrument.key in held})
    if _needs_chain(parameters, structure, now):
        rules = parameters.structure
        for underlying in contracts.option_underlyings(futures, hedge=hedge_future, today=today,
                                                      dte_max=rules.dte_max):
            options.update({option.key: option for option in broker.option_chain(underlying)
                            if rules.dte_min <= (option.expiry - today).days <= rules.dte_max})
    chain: tuple[policy.QuotedInstrument, ...] = ()
    if options:
        quotes.update(broker_services.quotes_for(broker=broker, instruments=list(options.values())))
        chain = _quoted(list(options.values()), quotes, now)
    (hedge,) = _quoted([hedge_future], quotes, now)
    inputs = policy.PolicyInputs(
        now=now, parameters=parameters, limits=risk_selectors.risk_limits_get(), book=snapshot.valuation,
        hedge=hedge if hedge.bid is not None or hedge.ask is not None else None,
        chain=chain, structure=structure, rate=settings.RISK_FREE_RATE,
        expiring_futures=_quoted(expiring, quotes, now) if expiring else (),
    )
    return inputs, quotes, choice.note


# ---------------------------------------------------------------------------------------------
# Deciding: the journal, the pre-check, the proposals
# ---------------------------------------------------------------------------------------------

def _trade_json(trade: policy.ProposedTrade) -> dict[str, Any]:
    return {"action": trade.action, "legs": _legs_json(trade.legs), "limit_price": trade.limit_price,
            "summary": trade.summary, "rationale": trade.rationale}


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _decision_record(*, client: Client, cycle: AgentCycle | None, trigger: str, outcome: str,
                     decided: policy.PolicyDecision, notes: list[str]) -> AgentDecision:
    full_reason = " ".join(_sentence(text) for text in [decided.reason, *notes] if text)
    row = AgentDecision.objects.create(
        cycle=cycle, trigger=trigger, policy_version=decided.policy_version, inputs_digest=decided.inputs_digest,
        outcome=outcome, reason=full_reason,
        metrics=decided.metrics, trades=[_trade_json(trade) for trade in decided.trades],
    )
    audit.audit_record(
        client_id=client.client_id, actor_type="agent", actor_id="agent", kind=kinds.AGENT_DECISION,
        payload={"decision_id": row.pk, "trigger": trigger, "outcome": outcome, "reason": row.reason,
                 "policy_version": row.policy_version, "inputs_digest": row.inputs_digest,
                 "metrics": row.metrics, "trades": [t["summary"] for t in row.trades]},
    )
    return row


def _proposal_new(*, trade: policy.ProposedTrade, decided: policy.PolicyDecision, mode: str, source: str,
                  status: str, precheck: dict[str, Any], ttl_seconds: int, now: datetime) -> Proposal:
    legs = _legs_json(trade.legs)
    limit_price = protected_limit_price(trade)
    proposal_id = uuid.uuid4()
    return Proposal(
        id=proposal_id, source=source, mode=mode, action=trade.action, legs=legs, order_type="LMT",
        limit_price=limit_price, summary=trade.summary,
        rationale={**trade.rationale, "policy_limit_price": trade.limit_price,
                   "protection_ticks_per_leg": LIMIT_PROTECTION_TICKS},
        precheck=precheck, policy_version=decided.policy_version,
        content_hash=proposal_content_hash(action=trade.action, legs=legs, order_type="LMT",
                                           limit_price=limit_price, policy_version=decided.policy_version),
        status=status, client_order_id=f"agt-{proposal_id.hex}", expires_at=now + timedelta(seconds=ttl_seconds),
    )


def _pending_same_action(action: str) -> list[Proposal]:
    return list(Proposal.objects.select_for_update().filter(status=Proposal.Status.PENDING, action=action))


def _propose(*, client: Client, trades: tuple[policy.ProposedTrade, ...], decided: policy.PolicyDecision,
             snapshot, quotes: dict, parameters: AgentParameters, mode: str, source: str, status: str,
             now: datetime) -> tuple[list[Proposal], list[str]]:
    """Proposals (pending, or claimed for execution) for the trades the governor would accept now.
    A pending proposal with the same legs is kept rather than repeated (its price may have drifted,
    not what it does); any other pending one for the same action is superseded. Returns the
    proposals that now stand for these trades, and notes for the journal."""
    proposals, notes, changed = [], [], []
    for trade in trades:
        order = OrderRequest(client_order_id="precheck", legs=trade.legs, order_type="LMT",
                             limit_price=float(protected_limit_price(trade)))
        precheck = risk.pretrade_preview(order=order, snapshot=snapshot, quotes=quotes)
        if not precheck.accepted:
            notes.append(f"Not proposed ({trade.action}): the governor would refuse it: "
                         + "; ".join(v.message for v in precheck.violations) + ".")
            continue
        legs = _legs_json(trade.legs)
        with transaction.atomic():
            kept = None
            for pending in _pending_same_action(trade.action):
                same = pending.expires_at > now and _legs_identity(pending.legs) == _legs_identity(legs)
                if same and kept is None and status == Proposal.Status.PENDING:
                    kept = pending
                    continue
                pending.status = Proposal.Status.SUPERSEDED
                pending.decision_reason = "a newer proposal replaced it"
                pending.save(update_fields=["status", "decision_reason", "updated_at"])
                audit.audit_record(client_id=client.client_id, actor_type="agent", actor_id="agent",
                                   kind=kinds.PROPOSAL_SUPERSEDED, payload={"proposal_id": str(pending.pk)})
                changed.append((pending, "updated"))
            if kept is not None:
                notes.append(f"Proposal {kept.pk} for the same trade is still pending.")
                proposals.append(kept)
                continue
            proposal = _proposal_new(trade=trade, decided=decided, mode=mode, source=source,
                                     status=status, precheck=precheck.as_dict(),
                                     ttl_seconds=parameters.proposal_ttl_seconds, now=now)
            proposal.save()
            audit.audit_record(client_id=client.client_id, actor_type="agent", actor_id="agent",
                               kind=kinds.PROPOSAL_CREATED,
                               payload={"proposal_id": str(proposal.pk), "summary": proposal.summary,
                                        "content_hash": proposal.content_hash, "source": source,
                                        "expires_at": proposal.expires_at.isoformat()})
            changed.append((proposal, "created"))
        proposals.append(proposal)
    for proposal, event in changed:
        _publish_proposal(client=client, proposal=proposal, event=event)
    return proposals, notes


def _trading_blocked_reason(client: Client) -> str | None:
    """Why nothing may be sent now: an operator's halt, or a HALTED trading state (the breaker)."""
    reason = risk_selectors.halt_reason(client=client)
    if reason:
        return reason
    state = risk_selectors.risk_state_get()
    if state.trading_state == "HALTED":
        return f"trading is halted: {state.reason}"
    return None


# ---------------------------------------------------------------------------------------------
# Executing a claimed proposal
# ---------------------------------------------------------------------------------------------

def _structure_after_fill(*, proposal: Proposal, filled_units: int, average_price: float | None,
                          parameters: AgentParameters, now: datetime) -> None:
    """Remember the structure the agent now holds (or no longer holds) for the policy's exits."""
    if proposal.action not in ("open_structure", "close_structure") or filled_units <= 0:
        return
    runtime = _runtime_for_update()
    if proposal.action == "close_structure":
        runtime.open_structure = _structure_left(runtime.open_structure, closed_units=filled_units)
    else:
        units = math.gcd(*[int(leg["quantity"]) for leg in proposal.legs])
        runtime.open_structure = {
            "kind": proposal.rationale.get("kind", parameters.structure.kind),
            "legs": [[leg["instrument_key"], (int(leg["quantity"]) // units) * filled_units
                      * (1 if leg["side"] == "BUY" else -1)] for leg in proposal.legs],
            "entry_price": average_price if average_price is not None else float(proposal.limit_price),
            "quantity": filled_units,
            "expiry": min(leg["instrument"]["expiry"] for leg in proposal.legs),
            "opened_at": now.isoformat(),
        }
    runtime.save(update_fields=["open_structure", "updated_at"])


def _structure_left(held: dict[str, Any] | None, *, closed_units: int) -> dict[str, Any] | None:
    """What remains of a held structure after `closed_units` of it were closed (a partial close
    leaves the rest to manage, not to forget)."""
    if held is None or closed_units >= held["quantity"]:
        return None
    remaining = held["quantity"] - closed_units
    return {**held, "quantity": remaining,
            "legs": [[key, quantity // held["quantity"] * remaining] for key, quantity in held["legs"]]}


def _proposal_settle(*, client: Client, proposal: Proposal, status: str, kind: str, execution: dict[str, Any],
                     payload: dict[str, Any], also: Callable[[Proposal], None] | None = None) -> Proposal:
    """Move a proposal to where its execution left it, audited and published, in one transaction."""
    with transaction.atomic():
        proposal = Proposal.objects.select_for_update().get(pk=proposal.pk)
        proposal.status = status
        proposal.execution = execution
        proposal.save(update_fields=["status", "execution", "updated_at"])
        if also is not None:
            also(proposal)
        audit.audit_record(client_id=client.client_id, actor_type="agent", actor_id="agent", kind=kind,
                           payload={"proposal_id": str(proposal.pk), "client_order_id": proposal.client_order_id,
                                    "status": status, **payload})
    _publish_proposal(client=client, proposal=proposal, event="updated")
    return proposal


def _execution_finish(*, client: Client, proposal: Proposal, result: risk.SubmissionResult) -> Proposal:
    """Record what the execution came to: the governor's verdict, the order's state, any error."""
    execution: dict[str, Any] = {"decision": result.decision.as_dict() if result.decision else None}
    if result.status is not None:
        execution.update(order_state=result.status.state, filled_quantity=result.status.filled_quantity,
                         average_fill_price=result.status.average_fill_price, message=result.status.message)
    if result.error is not None:
        execution["error"] = result.error.payload()
    if not result.accepted:
        status, kind = Proposal.Status.BLOCKED, kinds.PROPOSAL_BLOCKED
    elif result.error is not None and result.error.retryable:
        status, kind = Proposal.Status.EXECUTING, kinds.PROPOSAL_FAILED  # outcome unknown: asked again later
        execution["order_state"] = "unknown"
    elif result.error is not None or (result.status is not None and result.status.state == "rejected"):
        status, kind = Proposal.Status.FAILED, kinds.PROPOSAL_FAILED
    else:
        status, kind = Proposal.Status.EXECUTED, kinds.PROPOSAL_EXECUTED

    def remember_structure(settled: Proposal) -> None:
        if status == Proposal.Status.EXECUTED and result.status is not None:
            _structure_after_fill(proposal=settled, filled_units=result.status.filled_quantity,
                                  average_price=result.status.average_fill_price,
                                  parameters=agent_parameters_get(), now=timezone.now())

    payload = {k: v for k, v in execution.items() if k != "decision"}
    payload["violations"] = (execution["decision"] or {}).get("violations", [])
    return _proposal_settle(client=client, proposal=proposal, status=status, kind=kind, execution=execution,
                            payload=payload, also=remember_structure)


def _partly_filled(proposal: Proposal) -> bool:
    return (proposal.execution or {}).get("order_state") == "partially_filled"


def _proposal_execute(*, client: Client, proposal: Proposal, actor: risk.Actor, purpose: str) -> Proposal:
    """Send a claimed (EXECUTING) proposal's order through the governor. The order's client order id
    is the proposal's, so calling this again for the same proposal asks the broker, never resends."""
    try:
        result = risk.order_submit(client=client, order=proposal_order(proposal), actor=actor, purpose=purpose)
    except risk.ExecutionHalted as exc:
        return _execution_blocked(client=client, proposal=proposal, message=exc.reason)
    proposal = _execution_finish(client=client, proposal=proposal, result=result)
    if _partly_filled(proposal):
        # A partly filled structure leaves the book's delta where nobody decided it: hedge it now.
        cycle_run(client=client, key=f"partial:{proposal.pk}", trigger="partial_fill")
    return proposal


def _execution_blocked(*, client: Client, proposal: Proposal, message: str) -> Proposal:
    return _proposal_settle(client=client, proposal=proposal, status=Proposal.Status.BLOCKED,
                            kind=kinds.PROPOSAL_BLOCKED, execution={"decision": None, "blocked": message},
                            payload={"reason": message})


# ---------------------------------------------------------------------------------------------
# A trader's approval and rejection; expiry
# ---------------------------------------------------------------------------------------------

def _claim(*, client: Client, proposal_id: str, user: str, to_status: str,
           on_claimed: Callable[[Proposal], None]) -> Proposal:
    """Lock a pending proposal and move it on (`on_claimed` runs in the same transaction). Raises
    ProposalNotFound / ProposalExpired (marking it expired) / ProposalConflict; approvals also
    ExecutionHalted while trading is halted."""
    now = timezone.now()
    expired = None
    with transaction.atomic():
        proposal = Proposal.objects.select_for_update().filter(pk=_uuid_or_none(proposal_id)).first()
        if proposal is None:
            raise ProposalNotFound(proposal_id)
        if proposal.status == Proposal.Status.PENDING and proposal.expires_at <= now:
            expired = _expire(client=client, proposal=proposal)
        elif proposal.status == Proposal.Status.EXPIRED:
            expired = proposal
        elif proposal.status != Proposal.Status.PENDING:
            raise ProposalConflict(f"proposal {proposal.pk} is {proposal.status}, not pending")
        else:
            if to_status == Proposal.Status.EXECUTING:
                if (reason := _trading_blocked_reason(client)) is not None:
                    raise risk.ExecutionHalted(reason)
                if _stored_hash(proposal) != proposal.content_hash:
                    raise ProposalConflict(f"proposal {proposal.pk} does not match its content hash")
            proposal.status = to_status
            proposal.decided_by = user
            proposal.decided_at = now
            proposal.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
            on_claimed(proposal)
    if expired is not None:
        _publish_proposal(client=client, proposal=expired, event="updated")
        raise ProposalExpired(f"proposal {expired.pk} expired at {expired.expires_at.isoformat()}")
    return proposal


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _expire(*, client: Client, proposal: Proposal) -> Proposal:
    proposal.status = Proposal.Status.EXPIRED
    proposal.save(update_fields=["status", "updated_at"])
    audit.audit_record(client_id=client.client_id, actor_type="system", actor_id="agent", kind=kinds.PROPOSAL_EXPIRED,
                       payload={"proposal_id": str(proposal.pk), "expires_at": proposal.expires_at.isoformat()})
    return proposal


def proposal_approve(*, client: Client, proposal_id: str, user: str) -> Proposal:
    """A trader's approval: claimed exactly once, re-checked by the governor against the current book
    and market, then sent. Raises RiskRejected when the governor refuses it now."""
    def approved(proposal: Proposal) -> None:
        audit.audit_record(client_id=client.client_id, actor_type="user", actor_id=user, kind=kinds.PROPOSAL_APPROVED,
                           payload={"proposal_id": str(proposal.pk), "content_hash": proposal.content_hash})

    proposal = _claim(client=client, proposal_id=proposal_id, user=user, to_status=Proposal.Status.EXECUTING,
                      on_claimed=approved)
    _publish_proposal(client=client, proposal=proposal, event="updated")
    try:
        proposal = _proposal_execute(client=client, proposal=proposal, actor=risk.Actor("user", user),
                                     purpose="approval")
    except BrokerError:
        # The broker could not be reached. Before the order was recorded nothing was sent: the
        # proposal goes back to pending and may be approved again. After, it stays executing and
        # the next cycle asks the broker what became of it.
        if not OrderRow.objects.filter(client_order_id=proposal.client_order_id).exists():
            Proposal.objects.filter(pk=proposal.pk, status=Proposal.Status.EXECUTING).update(
                status=Proposal.Status.PENDING, decided_by="", decided_at=None)
        raise
    if proposal.status == Proposal.Status.BLOCKED:
        raise RiskRejected((proposal.execution or {}).get("decision") or {
            "violations": [{"code": "trading_halted", "message": (proposal.execution or {}).get("blocked", "")}]})
    return proposal


def proposal_reject(*, client: Client, proposal_id: str, user: str, reason: str) -> Proposal:
    def rejected(proposal: Proposal) -> None:
        proposal.decision_reason = reason
        proposal.save(update_fields=["decision_reason", "updated_at"])
        audit.audit_record(client_id=client.client_id, actor_type="user", actor_id=user, kind=kinds.PROPOSAL_REJECTED,
                           payload={"proposal_id": str(proposal.pk), "reason": reason})

    proposal = _claim(client=client, proposal_id=proposal_id, user=user, to_status=Proposal.Status.REJECTED,
                      on_claimed=rejected)
    _publish_proposal(client=client, proposal=proposal, event="updated")
    return proposal


def proposals_expire(*, client: Client) -> int:
    """Mark every pending proposal past its time to live expired; returns how many."""
    with transaction.atomic():
        expired = [_expire(client=client, proposal=proposal)
                   for proposal in Proposal.objects.select_for_update(skip_locked=True).filter(
                       status=Proposal.Status.PENDING, expires_at__lte=timezone.now())]
    for proposal in expired:
        _publish_proposal(client=client, proposal=proposal, event="updated")
    return len(expired)


def _executions_resume(*, client: Client, cycle: AgentCycle | None) -> list[Proposal]:
    """Executions left in flight (a worker died, an outcome was unknown): the cycle's own at once,
    others once IN_FLIGHT_RESOLVE_AFTER has passed. Each is resolved by asking the broker about its
    client order id, never by sending again; one the broker never received fails, and the policy
    decides afresh on the current book."""
    stale = timezone.now() - IN_FLIGHT_RESOLVE_AFTER
    resumed = []
    for proposal in Proposal.objects.filter(status=Proposal.Status.EXECUTING).select_related("decision"):
        own = cycle is not None and proposal.decision is not None and proposal.decision.cycle_id == cycle.pk
        if not (own or proposal.updated_at <= stale):
            continue
        outcome = risk.order_outcome_resolve(client=client, client_order_id=proposal.client_order_id)
        if outcome is None:
            outcome = risk.SubmissionResult(
                decision=None, order=None, status=None,
                error=BrokerError(operation="order_status", broker="", code="never_sent", retryable=False,
                                  message="the order never reached the broker; it was not sent again"),
            )
            resumed.append(_execution_failed(client=client, proposal=proposal, error=outcome.error))
            continue
        resumed.append(_execution_finish(client=client, proposal=proposal, result=outcome))
    return resumed


STRUCTURE_ACTIONS = ("open_structure", "close_structure")
WORKING_ORDER_STATES = ("submitted", "partially_filled")


def _working_structure_orders():
    return Proposal.objects.filter(status=Proposal.Status.EXECUTED, action__in=STRUCTURE_ACTIONS,
                                   execution__order_state__in=WORKING_ORDER_STATES)


def _structure_orders_refresh(*, client: Client) -> bool:
    """Bring the agent's structure orders still working up to date from the broker (fills that came
    after the send change the structure it holds). Returns whether one is still working."""
    still_working = False
    for proposal in _working_structure_orders():
        outcome = risk.order_outcome_resolve(client=client, client_order_id=proposal.client_order_id)
        if outcome is None:
            continue
        proposal = _execution_finish(client=client, proposal=proposal, result=outcome)
        still_working = still_working or proposal.execution.get("order_state") in WORKING_ORDER_STATES
    return still_working


def _execution_failed(*, client: Client, proposal: Proposal, error: BrokerError) -> Proposal:
    return _proposal_settle(client=client, proposal=proposal, status=Proposal.Status.FAILED,
                            kind=kinds.PROPOSAL_FAILED, execution={**(proposal.execution or {}), "error": error.payload()},
                            payload={"error": error.payload()})


# ---------------------------------------------------------------------------------------------
# The cycle
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Decided:
    decision: AgentDecision
    proposals: list[Proposal]
    execute: bool  # the proposals were claimed for execution (autonomous mode)


def _decide(*, client: Client, cycle: AgentCycle | None, trigger: str, parameters: AgentParameters,
            source: str, may_execute: bool, manage_structure: bool = True) -> _Decided:
    """Sync the book, let the policy decide, pre-check its trades and record the decision: pending
    proposals, or proposals claimed for execution when `may_execute` and the agent is autonomous
    with the kill switch allowing it. Under the client's risk lock, so the pre-check sees the book
    the policy saw."""
    config = agent_config_get()
    execute = may_execute and config.mode == AgentConfig.Mode.AUTONOMOUS and settings.AUTONOMOUS_ENABLED
    notes = []
    if may_execute and config.mode == AgentConfig.Mode.AUTONOMOUS and not execute:
        notes.append("Autonomous execution is disabled platform-wide (AUTONOMOUS_ENABLED=false): proposing instead.")
    now = timezone.now()
    with risk.client_risk_lock(client), broker_services.broker_session() as broker:
        snapshot = risk.book_sync(client=client, broker=broker)
        structure = _open_structure(agent_runtime_get())
        if not manage_structure:  # hedges only: no structure opened, rolled or closed
            parameters = replace(parameters, structure=replace(parameters.structure, kind="none"))
            structure = None
        inputs, quotes, contract_note = _policy_inputs(broker=broker, snapshot=snapshot, parameters=parameters,
                                                       structure=structure, now=now)
        decided = policy.decide(inputs)
        if contract_note:
            notes.insert(0, contract_note)
        proposals: list[Proposal] = []
        blocked = _trading_blocked_reason(client) if decided.trades else None
        if not decided.trades:
            outcome = AgentDecision.Outcome.NO_ACTION
        elif blocked:
            outcome = AgentDecision.Outcome.HELD
            notes.append(f"Nothing proposed or executed: {blocked}.")
        else:
            trades = decided.trades
            if not execute and any(t.action == "close_structure" for t in trades):
                # Approved apart, the open of a roll could execute without its close: it is
                # proposed by the first cycle after the close has filled.
                trades = tuple(t for t in trades if t.action != "open_structure")
                if len(trades) < len(decided.trades):
                    notes.append("The new structure is proposed once the close has filled.")
            proposals, more = _propose(
                client=client, trades=trades, decided=decided, snapshot=snapshot, quotes=quotes,
                parameters=parameters, mode=config.mode, source=source,
                status=Proposal.Status.EXECUTING if execute else Proposal.Status.PENDING, now=now,
            )
            notes.extend(more)
            if not proposals:
                outcome = AgentDecision.Outcome.HELD
            else:
                outcome = AgentDecision.Outcome.EXECUTED if execute else AgentDecision.Outcome.PROPOSED
        with transaction.atomic():
            decision = _decision_record(client=client, cycle=cycle, trigger=trigger, outcome=outcome,
                                        decided=decided, notes=notes)
            Proposal.objects.filter(pk__in=[p.pk for p in proposals], decision__isnull=True).update(decision=decision)
    return _Decided(decision=decision, proposals=proposals, execute=execute)


def _execute_all(*, client: Client, proposals: list[Proposal]) -> list[Proposal]:
    """Autonomous execution, in the policy's order. A structure trade that does not fill entirely
    stops the structure trades after it (a roll never opens a new structure while any of the old
    one stays)."""
    done, structure_failed = [], False
    for proposal in proposals:
        if proposal.status != Proposal.Status.EXECUTING:
            done.append(proposal)
            continue
        if structure_failed and proposal.action in STRUCTURE_ACTIONS:
            done.append(_execution_blocked(client=client, proposal=proposal,
                                           message="not sent: the structure trade before it did not execute"))
            continue
        proposal = _proposal_execute(client=client, proposal=proposal, actor=AGENT, purpose="autonomous")
        filled = proposal.status == Proposal.Status.EXECUTED and (proposal.execution or {}).get("order_state") == "filled"
        structure_failed = structure_failed or (proposal.action in STRUCTURE_ACTIONS and not filled)
        done.append(proposal)
    return done


def _runtime_record(*, client: Client, status: str, reason: str, parameters: AgentParameters | None) -> None:
    now = timezone.now()
    with transaction.atomic():
        runtime = _runtime_for_update()
        runtime.last_cycle_at = now
        runtime.last_cycle_status = status
        runtime.last_cycle_reason = reason[:2000]
        runtime.save(update_fields=["last_cycle_at", "last_cycle_status", "last_cycle_reason", "updated_at"])
    next_cycle = now + timedelta(seconds=parameters.cycle_interval_seconds) if parameters else None
    publish_event(client_id=client.client_id, type="agent_status",
                  data={"last_cycle": now.isoformat(), "next_cycle": next_cycle.isoformat() if next_cycle else None,
                        "cycle_status": status, "reason": reason})


def _journal_executions(*, decision: AgentDecision, proposals: list[Proposal]) -> None:
    """The journal says what the executions came to: a decision none of whose trades executed was
    held, not executed (each proposal's audit rows say why)."""
    if any(proposal.status == Proposal.Status.EXECUTED for proposal in proposals):
        return
    outcomes = ", ".join(f"{proposal.action} {proposal.status}" for proposal in proposals)
    decision.outcome = AgentDecision.Outcome.HELD
    decision.reason = f"{decision.reason} Not executed: {outcomes}."
    decision.save(update_fields=["outcome", "reason"])


def cycle_run(*, client: Client, key: str, trigger: str) -> CycleOutcome:
    """One cycle of the client's agent (the current schema must be the client's).

    Never runs twice at once for a client (a second caller skips), and never twice for one key: a
    redelivered task resumes its cycle's executions by asking the broker instead of deciding again.
    """
    with advisory_lock_attempt(f"agent-cycle:{client.client_id}") as taken:
        if not taken:
            return CycleOutcome(cycle=None, skipped="a cycle is already running for this client",
                                decision=None, proposals=[])
        cycle, created = AgentCycle.objects.get_or_create(key=key, defaults={"trigger": trigger})
        if cycle.status != AgentCycle.Status.RUNNING:
            return CycleOutcome(cycle=cycle, skipped=f"cycle {key} already {cycle.status}", decision=None, proposals=[])
        parameters = None
        try:
            proposals_expire(client=client)
            _executions_resume(client=client, cycle=cycle)
            decision = None if created else cycle.decisions.order_by("-id").first()
            proposals: list[Proposal] = []
            if decision is None:
                parameters = agent_parameters_get()
                # While a structure order still works, only hedges: the structure it will leave is not known yet.
                structure_settled = not _structure_orders_refresh(client=client)
                decided = _decide(client=client, cycle=cycle, trigger=trigger, parameters=parameters,
                                  source=Proposal.Source.CYCLE, may_execute=True, manage_structure=structure_settled)
                decision, proposals = decided.decision, decided.proposals
                if decided.execute:
                    proposals = _execute_all(client=client, proposals=proposals)
                    _journal_executions(decision=decision, proposals=proposals)
        except BrokerError as exc:
            _cycle_failed(client=client, cycle=cycle, error=exc.payload(), parameters=parameters)
            return CycleOutcome(cycle=cycle, skipped="", decision=None, proposals=[])
        except Exception as exc:
            logger.exception("agent cycle failed", extra={"cycle": key})
            _cycle_failed(client=client, cycle=cycle, error={"type": type(exc).__name__, "message": str(exc)[:500]},
                          parameters=parameters)
            raise
        cycle.status = AgentCycle.Status.COMPLETED
        cycle.finished_at = timezone.now()
        cycle.save(update_fields=["status", "finished_at"])
        _runtime_record(client=client, status="completed", reason=decision.reason, parameters=parameters)
        return CycleOutcome(cycle=cycle, skipped="", decision=decision, proposals=proposals)


def _cycle_failed(*, client: Client, cycle: AgentCycle, error: dict[str, Any],
                  parameters: AgentParameters | None) -> None:
    """A failed cycle is recorded on the cycle and in status; audited when it starts a run of
    failures or fails differently, so an outage is one audit row, not one per interval."""
    cycle.status = AgentCycle.Status.FAILED
    cycle.error = error
    cycle.finished_at = timezone.now()
    cycle.save(update_fields=["status", "error", "finished_at"])
    reason = f"cycle failed: {error.get('message', error)}"
    runtime = agent_runtime_get()
    if not (runtime.last_cycle_status == "failed" and runtime.last_cycle_reason == reason[:2000]):
        audit.audit_record(client_id=client.client_id, actor_type="agent", actor_id="agent",
                           kind=kinds.AGENT_CYCLE_FAILED, payload={"cycle": cycle.key, "error": error})
    _runtime_record(client=client, status="failed", reason=reason, parameters=parameters)


def hedge_proposal_draft(*, client: Client, actor: str) -> DraftOutcome:
    """A pending hedge-to-target proposal, asked for by a trader (chat): the same policy and
    governor as the cycle, with no band (any whole contract of drift is hedged) and no structure
    trades. Never executes, whatever the mode."""
    parameters = agent_parameters_get()
    parameters = replace(parameters, band=Band(method="fixed", width=0.0, min_width=0.0,
                                               max_width=parameters.band.max_width))
    decided = _decide(client=client, cycle=None, trigger="chat", parameters=parameters,
                      source=Proposal.Source.CHAT, may_execute=False, manage_structure=False)
    return DraftOutcome(decision=decided.decision, proposals=decided.proposals)


def cycles_schedule(*, now: datetime | None = None) -> list[str]:
    """Queue a cycle for every active client whose interval has passed since its last one; each
    task is sent from the client's schema (so it runs there) and queued once per interval slot.
    Returns the client ids queued. Reads only: a slow broker never delays this fan-out."""
    from django_tenants.utils import tenant_context

    from agents.tasks import agent_cycle_task
    from tradingplatform.events import flag_set_once

    now = now or timezone.now()
    queued = []
    for client in Client.objects.filter(status=Client.Status.ACTIVE).order_by("client_id"):
        with tenant_context(client):
            try:
                interval = agent_parameters_get().cycle_interval_seconds
            except ParameterError:
                logger.error("agent parameters invalid; cycle not scheduled", extra={"client_id": client.client_id})
                continue
            last = agent_runtime_get().last_cycle_at
            if last is not None and last + timedelta(seconds=interval) > now:
                continue
            key = f"schedule:{interval}:{int(now.timestamp() // interval)}"
            if flag_set_once(client_id=client.client_id, name=f"cycle-queued:{key}", ttl_seconds=2 * interval):
                agent_cycle_task.delay(client.client_id, key)
                queued.append(client.client_id)
    return queued
