"""The agent's tools in a chat turn: what a language model may call, and what the deterministic
answers read, so that both see the same facts.

Every tool reads, except `draft_hedge_proposal`, which creates pending proposals through the same
policy and governor as the cycle and never executes. No tool approves, rejects, executes, changes
the mode, the parameters or the limits, or halts: those stay with the API and a human's role.

The client is bound to the ToolSession from the request; no schema has a client argument and
unknown arguments are refused, so a model cannot point a tool at another tenant. Whatever a model
sends (an unknown tool, arguments that are not JSON or not valid) comes back to it as an error
result; nothing it sends raises.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from agents import selectors
from agents import services as agent_services
from agents.models import AgentDecision, Proposal
from agents.parameters import parameters_to_json
from agents.trade_requests import TradeRequest
from brokers.domain import BrokerError
from tenants.models import Client
from tradingplatform.serialization import json_ready

logger = logging.getLogger(__name__)

# What one tool result may add to the model's context; longer results are cut.
TOOL_RESULT_MAX_CHARS = 8_000
# A proposal named by the first characters of its id is looked for among this many recent ones.
PROPOSAL_PREFIX_SEARCHED = 200


class ToolError(Exception):
    """A tool could not answer (not found, broker unreachable...); the message is for the reader."""


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """What was called in a turn, stored with the agent's reply."""

    caller: str  # "model", or "intents" for the deterministic answers
    name: str
    arguments: dict[str, Any] | str  # the raw text when it was not a JSON object
    ok: bool
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"caller": self.caller, "name": self.name, "arguments": self.arguments,
                                  "ok": self.ok}
        if self.error:
            record["error"] = self.error
        return record


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    ok: bool
    data: dict[str, Any]
    error: str = ""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # a JSON schema of an object; additionalProperties is always false
    run: Callable[[ToolSession, dict[str, Any]], dict[str, Any]]

    def schema(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}


def _object(properties: dict[str, Any] | None = None, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties or {}, "required": list(required),
            "additionalProperties": False}


def _limit(default: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": maximum, "default": default,
            "description": f"How many to return (default {default})."}


# ---------------------------------------------------------------------------------------------
# JSON views of the agent's records, compact: they are read by a model with a token budget
# ---------------------------------------------------------------------------------------------

def proposal_brief(proposal: Proposal) -> dict[str, Any]:
    return json_ready({
        "id": str(proposal.pk),
        "status": selectors.proposal_effective_status(proposal, timezone.now()),
        "source": proposal.source,
        "action": proposal.action,
        "summary": proposal.summary,
        "legs": [{"instrument_key": leg["instrument_key"], "side": leg["side"], "quantity": leg["quantity"]}
                 for leg in proposal.legs],
        "order_type": proposal.order_type,
        "limit_price": proposal.limit_price,
        "created_at": proposal.created_at,
        "expires_at": proposal.expires_at,
    })


def proposal_detail(proposal: Proposal) -> dict[str, Any]:
    decision = proposal.decision
    return {
        **proposal_brief(proposal),
        **json_ready({
            "rationale": proposal.rationale,
            "precheck": proposal.precheck,
            "policy_version": proposal.policy_version,
            "decided_by": proposal.decided_by,
            "decided_at": proposal.decided_at,
            "decision_reason": proposal.decision_reason,
            "execution": proposal.execution,
            "decision": decision_json(decision) if decision is not None else None,
        }),
    }


def decision_json(decision: AgentDecision) -> dict[str, Any]:
    return json_ready({
        "id": decision.pk,
        "created_at": decision.created_at,
        "trigger": decision.trigger,
        "outcome": decision.outcome,
        "reason": decision.reason,
        "policy_version": decision.policy_version,
        "metrics": decision.metrics,
        "trades": [trade.get("summary", "") for trade in decision.trades],
    })


# ---------------------------------------------------------------------------------------------
# The tools
# ---------------------------------------------------------------------------------------------

def _status(session: ToolSession, arguments: dict[str, Any]) -> dict[str, Any]:
    status = selectors.agent_status_get(client=session.client)
    kept = ("mode", "autonomous_enabled", "executing", "trading_state", "trading_state_reason", "halt",
            "circuit_breaker", "limits", "usage", "net_greeks", "last_cycle", "last_cycle_status",
            "last_cycle_reason", "next_cycle", "pending_proposals", "parameters")
    data = {name: status.get(name) for name in kept}
    data["broker"] = {name: status["broker"].get(name) for name in ("broker", "status", "last_error")}
    data["effective_parameters"] = parameters_to_json(selectors.agent_parameters_get())
    return json_ready(data)


def _book(session: ToolSession, arguments: dict[str, Any]) -> dict[str, Any]:
    return json_ready(selectors.book_get(client=session.client))


def _last_decision(session: ToolSession, arguments: dict[str, Any]) -> dict[str, Any]:
    decisions = selectors.decisions_recent(limit=arguments.get("limit", 3))
    return {"decisions": [decision_json(decision) for decision in decisions],
            "note": "Newest first. No decision recorded yet." if not decisions else "Newest first."}


def _list_proposals(session: ToolSession, arguments: dict[str, Any]) -> dict[str, Any]:
    proposals = selectors.proposals_list(status=arguments.get("status"))[: arguments.get("limit", 10)]
    return {"proposals": [proposal_brief(proposal) for proposal in proposals]}


def proposal_find(reference: str) -> Proposal | None:
    """A proposal by its id, or by the first characters of its id among the recent ones."""
    reference = reference.strip().lower()
    proposal = selectors.proposal_get(proposal_id=reference)
    if proposal is not None:
        return proposal
    compact = reference.replace("-", "")
    if len(compact) < 6:
        return None
    recent = selectors.proposals_list()[:PROPOSAL_PREFIX_SEARCHED]
    matches = [proposal for proposal in recent if proposal.pk.hex.startswith(compact)]
    return matches[0] if len(matches) == 1 else None


def _explain_proposal(session: ToolSession, arguments: dict[str, Any]) -> dict[str, Any]:
    reference = arguments.get("proposal_id", "")
    if reference:
        proposal = proposal_find(reference)
        if proposal is None:
            raise ToolError(f"No proposal matches {reference!r}.")
    else:
        proposal = (selectors.proposals_list(status=Proposal.Status.PENDING).first()
                    or selectors.proposals_list().first())
        if proposal is None:
            raise ToolError("There are no proposals yet.")
    return {"proposal": proposal_detail(proposal)}


def _notes(session: ToolSession, arguments: dict[str, Any]) -> dict[str, Any]:
    notes = selectors.notes_recent(limit=arguments.get("limit", 10))
    return {"notes": [json_ready({"author": note.author, "text": note.text, "created_at": note.created_at})
                      for note in notes]}


def _draft_hedge_proposal(session: ToolSession, arguments: dict[str, Any]) -> dict[str, Any]:
    # Once per turn: a model that asks again (or the fallback answer after it) gets the same draft.
    if session.draft is None:
        try:
            session.draft = agent_services.hedge_proposal_draft(client=session.client, actor=session.user)
        except BrokerError as exc:
            raise ToolError(f"The broker could not be reached: {exc.message}") from exc
    draft = session.draft
    return {"outcome": draft.decision.outcome, "reason": draft.decision.reason,
            "decision_id": draft.decision.pk,
            "proposals": [proposal_brief(proposal) for proposal in draft.proposals],
            "note": "Pending proposals wait for a trader's approval in the proposals list; this tool never "
                    "approves or executes."}


TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("get_status",
         "The agent's status: mode, trading state and why, halts, circuit breaker, risk limits and their "
         "use, broker connection, last cycle, strategy parameters.",
         _object(), _status),
    Tool("get_book", "The book as last synced: positions and net greeks (delta in underlying futures).",
         _object(), _book),
    Tool("get_last_decisions",
         "The agent's decision journal, newest first: why it did or did not trade, with its numbers. Use it "
         "to answer 'why'.",
         _object({"limit": _limit(3, 10)}), _last_decision),
    Tool("list_proposals", "Proposals, newest first, optionally only those with one status.",
         _object({"status": {"type": "string", "enum": list(Proposal.Status.values)},
                  "limit": _limit(10, 20)}), _list_proposals),
    Tool("explain_proposal",
         "One proposal in full: legs, price, rationale, the risk pre-check and the decision behind it. "
         "Without proposal_id: the latest pending proposal, or the latest one.",
         _object({"proposal_id": {"type": "string", "minLength": 6, "maxLength": 36,
                                  "description": "The proposal's id or its first characters."}}),
         _explain_proposal),
    Tool("get_notes", "Notes traders asked the agent to remember, newest first.",
         _object({"limit": _limit(10, 20)}), _notes),
    Tool("draft_hedge_proposal",
         "Ask the agent's policy for a hedge that brings net delta to its target. Creates a PENDING proposal "
         "(when the risk governor would accept it) that a trader must approve; it never executes.",
         _object(), _draft_hedge_proposal),
)}


# ---------------------------------------------------------------------------------------------
# Argument checking against the schemas above
# ---------------------------------------------------------------------------------------------

def _argument_errors(schema: dict[str, Any], arguments: dict[str, Any]) -> list[str]:
    errors = [f"unknown argument {name!r}" for name in sorted(set(arguments) - set(schema["properties"]))]
    errors += [f"missing argument {name!r}" for name in schema["required"] if name not in arguments]
    for name, value in arguments.items():
        rules = schema["properties"].get(name)
        if rules is None:
            continue
        if rules["type"] == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                errors.append(f"{name} must be an integer")
            elif not rules["minimum"] <= value <= rules["maximum"]:
                errors.append(f"{name} must be between {rules['minimum']} and {rules['maximum']}")
        elif rules["type"] == "string":
            if not isinstance(value, str):
                errors.append(f"{name} must be a string")
            elif "enum" in rules and value not in rules["enum"]:
                errors.append(f"{name} must be one of {', '.join(rules['enum'])}")
            elif not rules.get("minLength", 0) <= len(value) <= rules.get("maxLength", len(value)):
                errors.append(f"{name} must be {rules['minLength']} to {rules['maxLength']} characters")
    return errors


class ToolSession:
    """One chat turn's tools, bound to the request's client and user; records every call."""

    def __init__(self, *, client: Client, user: str) -> None:
        self.client = client
        self.user = user
        self.records: list[ToolCallRecord] = []
        self.draft: agent_services.DraftOutcome | None = None
        self.trade_drafts: list[agent_services.DraftOutcome] = []

    @property
    def proposals(self) -> list[Proposal]:
        """The proposals drafted in this turn."""
        drafted = list(self.draft.proposals) if self.draft is not None else []
        return drafted + [proposal for outcome in self.trade_drafts for proposal in outcome.proposals]

    def draft_trade(self, request: TradeRequest) -> ToolOutcome:
        """The trade a trader asked for in words (deterministic intents only): pending proposals
        through agents.services.proposal_draft, recorded like a tool call. Never approves or executes."""
        arguments = request.as_json()
        try:
            outcome = agent_services.proposal_draft(client=self.client, request=request, actor=self.user,
                                                    source=Proposal.Source.CHAT)
        except agent_services.DraftUnclear as exc:
            error = exc.question
        except agent_services.DraftImpossible as exc:
            error = str(exc)
        except agent_services.RiskRejected as exc:
            error = ("The risk governor would refuse it, so nothing was drafted: "
                     + "; ".join(v["message"] for v in exc.violations) + ".")
        except BrokerError as exc:
            error = f"The broker could not be reached: {exc.message}"
        else:
            self.trade_drafts.append(outcome)
            self.records.append(ToolCallRecord(caller="intents", name="draft_trade", arguments=arguments, ok=True))
            return ToolOutcome(ok=True, data={"reason": outcome.decision.reason,
                                              "proposals": [proposal_brief(p) for p in outcome.proposals]})
        self.records.append(ToolCallRecord(caller="intents", name="draft_trade", arguments=arguments, ok=False,
                                           error=error))
        return ToolOutcome(ok=False, data={}, error=error)

    @staticmethod
    def schemas() -> list[dict[str, Any]]:
        return [tool.schema() for tool in TOOLS.values()]

    def invoke(self, name: str, arguments: dict[str, Any], *, caller: str = "intents") -> ToolOutcome:
        """Run a tool with arguments already checked (or built by our own code)."""
        try:
            data = TOOLS[name].run(self, arguments)
        except ToolError as exc:
            self.records.append(ToolCallRecord(caller=caller, name=name, arguments=arguments, ok=False,
                                               error=str(exc)))
            return ToolOutcome(ok=False, data={}, error=str(exc))
        self.records.append(ToolCallRecord(caller=caller, name=name, arguments=arguments, ok=True))
        return ToolOutcome(ok=True, data=data)

    def call_from_model(self, name: str, raw_arguments: str) -> str:
        """A model's tool call: checked, run, and answered as JSON text. Never raises."""
        error = ""
        arguments: dict[str, Any] | str = raw_arguments[:500]
        if name not in TOOLS:
            error = (f"Unknown tool {name[:64]!r}. Available tools: {', '.join(TOOLS)}. None of them "
                     "approves, executes, changes mode, parameters or limits, or halts.")
        else:
            try:
                parsed = json.loads(raw_arguments) if raw_arguments.strip() else {}
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                error = "Arguments must be a JSON object."
            elif problems := _argument_errors(TOOLS[name].parameters, parsed):
                arguments = parsed
                error = "Invalid arguments: " + "; ".join(problems) + "."
            else:
                arguments = parsed
        if error:
            self.records.append(ToolCallRecord(caller="model", name=name[:64], arguments=arguments, ok=False,
                                               error=error))
            return json.dumps({"error": error})
        try:
            outcome = self.invoke(name, arguments, caller="model")
        except Exception:
            # A model's turn must not end in a server error; the failure is logged and recorded.
            logger.exception("chat tool failed", extra={"tool": name})
            self.records.append(ToolCallRecord(caller="model", name=name, arguments=arguments, ok=False,
                                               error="internal error"))
            return json.dumps({"error": "The tool failed."})
        text = json.dumps({"result": outcome.data} if outcome.ok else {"error": outcome.error}, default=str)
        if len(text) > TOOL_RESULT_MAX_CHARS:
            text = text[:TOOL_RESULT_MAX_CHARS] + " [cut: the result was longer]"
        return text
