"""Proposals: the errors the API maps to status codes, what a proposal stands for (its legs,
content hash, order and protected limit price), and how a decision becomes pending proposals and
a journal row."""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction

from agents import policy
from agents.models import AgentCycle, AgentDecision, Proposal
from agents.parameters import AgentParameters
from audit import kinds
from audit import services as audit
from brokers.codec import instrument_from_json, instrument_to_json
from brokers.domain import Instrument, OrderLeg, OrderRequest
from brokers.products import PRODUCTS, price_add_ticks, price_kind, price_round
from risk import selectors as risk_selectors
from risk import services as risk
from tenants.models import Client
from tradingplatform.events import publish_event

logger = logging.getLogger(__name__)

# The agent's limit price is the far touch when it decides, widened by this many ticks per leg so
# that a proposal approved a few seconds later still fills while protecting against a jump.
LIMIT_PROTECTION_TICKS = 4


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
    """The smallest tick of a leg (the grid of a combo's net price)."""
    product = PRODUCTS[instrument.symbol]
    return product.option_tick if instrument.is_option else product.future_tick


def protected_limit_price(trade: policy.ProposedTrade) -> Decimal:
    """The policy's far-touch price widened by LIMIT_PROTECTION_TICKS per leg against us: higher
    for what we pay, lower for what we receive. A single leg moves along its product's real grid
    (`brokers.products.price_add_ticks`: ES options 4.95 + 4 ticks = 5.75, past the 5.00 tier)
    and is rounded away from the touch so it stays marketable; a combo's net price is on the
    smallest tick of its legs."""
    if len(trade.legs) == 1:
        leg = trade.legs[0]
        product = PRODUCTS[leg.instrument.symbol]
        kind = price_kind(leg.instrument.is_option)
        marketable = price_round(product, trade.limit_price, kind=kind, side=leg.side)
        moved = price_add_ticks(product, marketable, LIMIT_PROTECTION_TICKS * (1 if leg.side == "BUY" else -1),
                                kind=kind)
        return Decimal(repr(price_round(product, moved, kind=kind, side=leg.side)))
    widening = sum(LIMIT_PROTECTION_TICKS * _tick(leg.instrument) for leg in trade.legs)
    tick = min(_tick(leg.instrument) for leg in trade.legs)
    return Decimal(str(round(round((trade.limit_price + widening) / tick) * tick, 10)))


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
             now: datetime, supersede: bool = True, actor: str = "") -> tuple[list[Proposal], list[str]]:
    """Proposals (pending, or claimed for execution) for the trades the governor would accept now.
    A pending proposal with the same legs is kept rather than repeated (its price may have drifted,
    not what it does); any other pending one for the same action is superseded (unless not
    `supersede`: a trader's own drafts stand side by side). Returns the proposals that now stand
    for these trades, and notes for the journal. `actor`: the user who asked, audited as such."""
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
                if not supersede:
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
            audit.audit_record(client_id=client.client_id, actor_type="user" if actor else "agent",
                               actor_id=actor or "agent", kind=kinds.PROPOSAL_CREATED,
                               payload={"proposal_id": str(proposal.pk), "summary": proposal.summary,
                                        "content_hash": proposal.content_hash, "source": source,
                                        "expires_at": proposal.expires_at.isoformat()})
            changed.append((proposal, "created"))
        proposals.append(proposal)
    for proposal, event in changed:
        _publish_proposal(client=client, proposal=proposal, event=event)
    return proposals, notes


def _stale_hedges_supersede(*, client: Client, decided: policy.PolicyDecision) -> list[str]:
    """A decision that wants no hedge (the net delta, working orders included, is where it should
    be) leaves no pending hedge standing: approving one later would hedge what is already hedged,
    by a working order for instance. Not when the policy could not look (it failed closed before
    the band). Returns notes for the journal."""
    if decided.metrics.get("band_half_width") is None or any(t.action == "hedge" for t in decided.trades):
        return []
    with transaction.atomic():
        stale = list(Proposal.objects.select_for_update().filter(status=Proposal.Status.PENDING, action="hedge"))
        for pending in stale:
            pending.status = Proposal.Status.SUPERSEDED
            pending.decision_reason = "a newer decision wants no hedge"
            pending.save(update_fields=["status", "decision_reason", "updated_at"])
            audit.audit_record(client_id=client.client_id, actor_type="agent", actor_id="agent",
                               kind=kinds.PROPOSAL_SUPERSEDED,
                               payload={"proposal_id": str(pending.pk), "reason": pending.decision_reason})
    for pending in stale:
        _publish_proposal(client=client, proposal=pending, event="updated")
    return [f"Pending hedge {pending.pk} superseded: no hedge is wanted now." for pending in stale]


def _trading_blocked_reason(client: Client) -> str | None:
    """Why nothing may be sent now: an operator's halt, or a HALTED trading state (the breaker)."""
    reason = risk_selectors.halt_reason(client=client)
    if reason:
        return reason
    state = risk_selectors.risk_state_get()
    if state.trading_state == "HALTED":
        return f"trading is halted: {state.reason}"
    return None
