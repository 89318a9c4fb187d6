"""Writes about the agent: its configuration, its cycle, its proposals and their execution.

The cycle: expire stale proposals, resume any execution left in flight, sync the book and quote
the market, let the pure policy decide (agents/policy/), pre-check each trade with the governor,
then propose (confirmation mode) or execute (autonomous mode). Every decision, "no action"
included, goes to the decision journal and the audit trail.

Exactly once: a proposal is claimed (PENDING -> EXECUTING) under its row lock before anything is
sent, and its order's client order id is derived from the proposal's id, so a second approval, a
redelivered task or a resumed cycle can only ever ask the broker about the one order.

The package, in the order a proposal lives (each module imports only those above it; the one
exception, a partly filled structure starting a hedge cycle, imports late):
- `config`: the agent's mode, parameters, notes and runtime row;
- `proposals`: what a proposal stands for (legs, content hash, order, limit price), the errors the
  API maps to status codes, and how a decision becomes pending proposals and a journal row;
- `execution`: sending a claimed proposal's order exactly once, and resuming one left in flight;
- `approvals`: a trader's approval and rejection, and expiry;
- `cycle`: the policy's inputs from the broker, the cycle, the chat's hedge draft, the schedule;
- `drafts`: the trades a trader asks for (legs, structures, roll, close everything), drafted as
  pending proposals through the same pre-check.
Callers import from `agents.services`; the names below are its interface.
"""
from agents.services.approvals import proposal_approve, proposal_reject, proposals_expire
from agents.services.config import (
    AGENT,
    AutonomousDisabled,
    agent_mode_set,
    agent_note_add,
    agent_parameters_update,
)
from agents.services.cycle import cycle_run, cycles_reap, cycles_schedule, hedge_proposal_draft
from agents.services.drafts import DraftImpossible, DraftUnclear, proposal_draft
from agents.services.proposals import (
    LIMIT_PROTECTION_TICKS,
    CycleOutcome,
    DraftOutcome,
    ProposalConflict,
    ProposalExpired,
    ProposalNotFound,
    RiskRejected,
    proposal_content_hash,
    proposal_order,
    protected_limit_price,
)

__all__ = [
    "AGENT",
    "LIMIT_PROTECTION_TICKS",
    "AutonomousDisabled",
    "CycleOutcome",
    "DraftImpossible",
    "DraftOutcome",
    "DraftUnclear",
    "ProposalConflict",
    "ProposalExpired",
    "ProposalNotFound",
    "RiskRejected",
    "agent_mode_set",
    "agent_note_add",
    "agent_parameters_update",
    "cycle_run",
    "cycles_reap",
    "cycles_schedule",
    "hedge_proposal_draft",
    "proposal_approve",
    "proposal_content_hash",
    "proposal_draft",
    "proposal_order",
    "proposal_reject",
    "proposals_expire",
    "protected_limit_price",
]
