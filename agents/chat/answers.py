"""The deterministic answers: an Intent in, the agent's reply out, with no language model.

They read through the same ToolSession as a model would, so both engines state the same facts,
and a hedge drafted by a model earlier in the turn is reported rather than drafted twice.
"""
from __future__ import annotations

import json
from typing import Any

from agents import services as agent_services
from agents.chat.intents import Intent, IntentName
from agents.chat.tools import ToolSession
from agents.serializers import AgentParametersSerializer

HELP_TEXT = (
    "I can tell you:\n"
    "- status: mode, trading state, halts, breaker, limits and broker;\n"
    "- book: positions and net greeks;\n"
    "- why: the reason for my last decision;\n"
    "- proposals: what is pending, or \"explain proposal <id>\";\n"
    "- notes: what you asked me to remember.\n"
    "I can also \"hedge to neutral\", and draft the trades you ask for: \"sell 1 ES 6000 call\", "
    "\"buy 2 ES futures\", \"open a short strangle, 1 lot\", \"close the strangle\", \"roll\", "
    "\"close everything\" (each a proposal for a trader to approve), remember a note "
    "(\"note: ...\"), and tell you what a parameter change such as \"set max delta to 40\" would do. "
    "I never approve, execute, change the mode, parameters or limits, or halt trading."
)
LISTED_PROPOSALS = 10
LISTED_NOTES = 10


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value) if value is not None else "unknown"


def _legs(legs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{leg['side']} {leg['quantity']} {leg['instrument_key']}" for leg in legs)


def proposal_line(proposal: dict[str, Any]) -> str:
    return (f"{proposal['id'][:8]} {proposal['status']} {proposal['action']}: {_legs(proposal['legs'])} "
            f"(limit {proposal['limit_price']}, expires {proposal['expires_at']})")


def status_text(status: dict[str, Any]) -> str:
    halt = status["halt"]
    halts = [f"{scope} halt: {details.get('reason') or 'no reason given'}"
             for scope, details in halt.items() if details.get("halted")]
    breaker = status["circuit_breaker"]
    usage = status["usage"]
    broker = status["broker"]
    lines = [
        f"Mode: {status['mode']} ({'executing' if status['executing'] else 'not executing'} orders itself; "
        f"autonomous {'allowed' if status['autonomous_enabled'] else 'disabled platform-wide'}).",
        f"Trading state: {status['trading_state']}"
        + (f" ({status['trading_state_reason']})." if status["trading_state_reason"] else "."),
        "Halts: " + ("; ".join(halts) if halts else "none") + ".",
        f"Circuit breaker: {'TRIPPED' if breaker['tripped'] else 'not tripped'} "
        f"({breaker['consecutive_losses']} of {breaker['trips_at']} losses over "
        f"{breaker['loss_threshold']} USD).",
        f"Net delta: {_number(usage['net_delta'])} of max {_number(usage['max_net_delta'])}; "
        f"open legs {_number(usage['open_legs'])} of max {usage['max_open_legs']}"
        + (f" (as of {usage['as_of']})." if usage.get("as_of") else " (no book sync yet)."),
        f"Broker: {broker['broker']}, {broker['status']}.",
        f"Pending proposals: {status['pending_proposals']}.",
    ]
    if status.get("last_cycle"):
        lines.append(f"Last cycle: {status['last_cycle']} ({status['last_cycle_status']}): "
                     f"{status['last_cycle_reason']}")
    return "\n".join(lines)


def book_text(book: dict[str, Any]) -> str:
    greeks = book.get("greeks")
    if not greeks:
        return "The book has not been synced yet: no positions or greeks to show."
    lines = [f"Net delta {_number(greeks['net_delta'])} (underlying futures), unrealized P&L "
             f"{_number(greeks['unrealized_pnl'])} USD, {greeks['open_legs']} open legs, "
             f"as of {greeks['as_of']}."]
    for entry in greeks.get("by_underlying", []):
        lines.append(f"{entry['underlying']}: delta {_number(entry['delta'])}, "
                     f"gamma {_number(entry['gamma'])}, vega {_number(entry['vega'])}, "
                     f"theta {_number(entry['theta'])}.")
    positions = "; ".join(f"{p['quantity']:+d} {p['instrument_key']} @ {p['average_price']:g}"
                          for p in book.get("positions", []))
    lines.append(f"Positions: {positions or 'none'}.")
    return "\n".join(lines)


def decision_text(decision: dict[str, Any]) -> str:
    text = (f"My last decision ({decision['created_at']}, {decision['trigger']}, "
            f"policy {decision['policy_version']}) "
            f"was {decision['outcome'].replace('_', ' ')}: {decision['reason']}")
    if decision["trades"]:
        text += "\nTrades: " + "; ".join(decision["trades"]) + "."
    return text


def notes_text(notes: list[dict[str, Any]]) -> str:
    return "\n".join(f"- {note['text']} ({note['author']}, {note['created_at']})" for note in notes)


def _why(session: ToolSession) -> str:
    decisions = session.invoke("get_last_decisions", {"limit": 1}).data["decisions"]
    text = decision_text(decisions[0]) if decisions else "I have not made a decision yet."
    notes = session.invoke("get_notes", {"limit": 3}).data["notes"]
    if notes:
        text += "\nNotes I keep in mind:\n" + notes_text(notes)
    return text


def _proposals(session: ToolSession) -> str:
    pending = session.invoke("list_proposals", {"status": "pending", "limit": LISTED_PROPOSALS})
    if pending.data["proposals"]:
        return ("Pending proposals (a trader approves or rejects them):\n"
                + "\n".join(map(proposal_line, pending.data["proposals"])))
    recent = session.invoke("list_proposals", {"limit": 3}).data["proposals"]
    if not recent:
        return "There are no proposals."
    return "Nothing is pending. The latest proposals:\n" + "\n".join(map(proposal_line, recent))


def _explain(session: ToolSession, reference: str) -> str:
    outcome = session.invoke("explain_proposal", {"proposal_id": reference} if reference else {})
    if not outcome.ok:
        return outcome.error
    proposal = outcome.data["proposal"]
    lines = [f"Proposal {proposal['id']} ({proposal['status']}, from the {proposal['source']}): "
             f"{proposal['summary']}",
             f"Legs: {_legs(proposal['legs'])}; {proposal['order_type']} at {proposal['limit_price']}; "
             f"expires {proposal['expires_at']}."]
    precheck = proposal.get("precheck") or {}
    if precheck:
        refusals = "; ".join(v.get("message", "") for v in precheck.get("violations") or [])
        lines.append(f"Risk pre-check: {'accepted' if precheck.get('accepted') else 'refused: ' + refusals}.")
    if proposal.get("decision"):
        lines.append(f"Why: {proposal['decision']['reason']}")
    if proposal.get("decided_by"):
        lines.append(f"Decided by {proposal['decided_by']} at {proposal['decided_at']}"
                     + (f": {proposal['decision_reason']}" if proposal.get("decision_reason") else "."))
    return "\n".join(lines)


def _hedge(session: ToolSession) -> str:
    outcome = session.invoke("draft_hedge_proposal", {})
    if not outcome.ok:
        return f"I could not draft a hedge: {outcome.error}"
    proposals = outcome.data["proposals"]
    if not proposals:
        return f"No hedge proposed: {outcome.data['reason']}"
    return ("Drafted for a trader's approval (nothing is executed until then):\n"
            + "\n".join(map(proposal_line, proposals)) + f"\nWhy: {outcome.data['reason']}")


def _trade(session: ToolSession, intent: Intent) -> str:
    assert intent.trade is not None
    outcome = session.draft_trade(intent.trade)
    if not outcome.ok:
        return f"Nothing drafted for \"{intent.trade.describe()}\": {outcome.error}"
    return ("Drafted for a trader's approval (nothing is executed until then):\n"
            + "\n".join(map(proposal_line, outcome.data["proposals"])) + f"\nWhy: {outcome.data['reason']}")


def _nested(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: _nested(rest, value) if rest else value}


def _current(status: dict[str, Any], path: str) -> Any:
    group, _, name = path.partition(".")
    if group == "risk_limits":
        return status["limits"].get(name)
    value: Any = status["effective_parameters"]
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _errors_text(errors: Any) -> str:
    if isinstance(errors, dict):
        return "; ".join(f"{key}: {_errors_text(value)}" for key, value in errors.items())
    return " ".join(str(error) for error in errors)


def _parameter(session: ToolSession, intent: Intent) -> str:
    change = _nested(intent.parameter, intent.value)
    serializer = AgentParametersSerializer(data=change)
    if not serializer.is_valid():
        return f"{intent.parameter} = {intent.value} would be refused: {_errors_text(serializer.errors)}"
    current = _current(session.invoke("get_status", {}).data, intent.parameter)
    return (f"That would change {intent.parameter} from {_number(current)} to {intent.value}. I do not "
            f"change parameters myself: an owner applies it with "
            f"POST /clients/{session.client.client_id}/agent/parameters and the body {json.dumps(change)}.")


def _note(session: ToolSession, intent: Intent) -> str:
    agent_services.agent_note_add(client=session.client, author=session.user, text=intent.note)
    return f"Noted: {intent.note}"


def _notes(session: ToolSession) -> str:
    notes = session.invoke("get_notes", {"limit": LISTED_NOTES}).data["notes"]
    return "Notes, newest first:\n" + notes_text(notes) if notes else "I have no notes."


def deterministic_answer(*, session: ToolSession, intent: Intent) -> str:
    match intent.name:
        case IntentName.STATUS:
            return status_text(session.invoke("get_status", {}).data)
        case IntentName.BOOK:
            return book_text(session.invoke("get_book", {}).data)
        case IntentName.WHY:
            return _why(session)
        case IntentName.LIST_PROPOSALS:
            return _proposals(session)
        case IntentName.EXPLAIN_PROPOSAL:
            return _explain(session, intent.proposal_ref)
        case IntentName.HEDGE:
            return _hedge(session)
        case IntentName.TRADE:
            return _trade(session, intent)
        case IntentName.CLARIFY:
            return f"{intent.question} Nothing is drafted until the trade is clear."
        case IntentName.SET_PARAMETER:
            return _parameter(session, intent)
        case IntentName.ADD_NOTE:
            return _note(session, intent)
        case IntentName.NOTES:
            return _notes(session)
        case IntentName.UNKNOWN:
            return "I did not understand that. " + HELP_TEXT
        case _:
            return HELP_TEXT
