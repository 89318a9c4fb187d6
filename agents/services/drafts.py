"""Trades a trader asks for: a request (explicit legs, a structure to open, close or roll, everything
to close) becomes pending proposals through the agent's own path, and is never executed here.

The same path as the cycle's: under the client's risk lock the book is synced and quoted, the
instruments are resolved through the broker (a future without an expiry is the hedge future of
`brokers.contracts`, an option without one takes the expiry the agent would choose in its
structure window), the limit is the far touch widened by the protection ticks, the governor
pre-checks every order, and `_propose` stores each proposal with its pre-check, content hash,
time to live, audit row and event; the request and its outcome go to the decision journal.

All or nothing: if the governor would refuse any order of the request, nothing is created and
RiskRejected carries every violation (HTTP 422, or 423 for a halt). A request that cannot be
understood or resolved raises DraftUnclear (a question for the trader, HTTP 400); one that is
clear but cannot be priced or built now raises DraftImpossible (HTTP 422).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents import policy
from agents.models import AgentConfig, AgentDecision, Proposal
from agents.parameters import STRUCTURE_KINDS, AgentParameters
from agents.selectors import agent_config_get, agent_parameters_get, agent_runtime_get
from agents.services.config import _open_structure
from agents.services.cycle import _policy_inputs, _quoted
from agents.services.proposals import (
    DraftOutcome,
    RiskRejected,
    _decision_record,
    _propose,
    protected_limit_price,
)
from agents.trade_requests import LegSpec, RequestKind, TradeRequest
from brokers import contracts
from brokers import services as broker_services
from brokers.domain import Broker, Instrument, OrderLeg, OrderRequest
from brokers.products import PRODUCTS
from risk import services as risk
from tenants.models import Client

REQUEST_POLICY_VERSION = "trader-request/1"


class DraftUnclear(Exception):
    """The request cannot be drafted as asked: `question` says what is missing or ambiguous;
    `field_errors` locates it in an API body when it can."""

    def __init__(self, question: str, field_errors: dict[str, Any] | None = None) -> None:
        self.question = question
        self.field_errors = field_errors or {}
        super().__init__(question)


class DraftImpossible(Exception):
    """The request is clear but no order can be built now (no quote, no structure in the window)."""


# ---------------------------------------------------------------------------------------------
# Resolving the legs' instruments through the broker
# ---------------------------------------------------------------------------------------------

def _leg_error(index: int | None, field: str, message: str) -> DraftUnclear:
    errors = {"legs": {str(index): {field: [message]}}} if index is not None else {}
    return DraftUnclear(message, errors)


def _future_for(broker: Broker, spec: LegSpec, index: int, today: date) -> Instrument:
    futures = sorted(broker.listed_futures(spec.symbol), key=lambda future: future.expiry)
    if not futures:
        raise _leg_error(index, "symbol", f"No {spec.symbol} future is listed.")
    if spec.expiry is None:
        return contracts.hedge_future_select(futures, today=today, chosen_expiry=None).future
    chosen = next((future for future in futures if future.expiry == spec.expiry), None)
    if chosen is None:
        listed = ", ".join(future.expiry.isoformat() for future in futures)
        raise _leg_error(index, "expiry", f"No {spec.symbol} future expires on {spec.expiry.isoformat()}; "
                                          f"listed: {listed}.")
    return chosen


def _listed(broker: Broker, futures: list[Instrument]) -> list[Instrument]:
    """The options delivering these futures (their chains, through the cache of listings)."""
    chains = broker_services.option_chains_list(broker=broker, futures=futures, now=timezone.now(), raise_errors=True)
    return [option for future in futures for option in chains[future.key]]


def _option_for(broker: Broker, spec: LegSpec, index: int, today: date, parameters: AgentParameters) -> Instrument:
    futures = sorted(broker.listed_futures(spec.symbol), key=lambda future: future.expiry)
    if not futures:
        raise _leg_error(index, "symbol", f"No {spec.symbol} future is listed, so no options either.")
    right = "call" if spec.right == "C" else "put"
    rules = parameters.structure
    if spec.expiry is not None:
        underlyings = [future for future in futures if future.expiry >= spec.expiry]
        options = [option for option in _listed(broker, underlyings)
                   if option.expiry == spec.expiry and option.right == spec.right]
        where = f"expiring {spec.expiry.isoformat()}"
        if not options:
            raise _leg_error(index, "expiry", f"No {spec.symbol} {right}s expire on {spec.expiry.isoformat()}.")
    else:
        hedge = contracts.hedge_future_select(futures, today=today, chosen_expiry=None).future
        underlyings = contracts.option_underlyings(futures, hedge=hedge, today=today, dte_max=rules.dte_max)
        options = [option for option in _listed(broker, underlyings)
                   if option.right == spec.right and rules.dte_min <= (option.expiry - today).days <= rules.dte_max]
        where = f"{rules.dte_min}-{rules.dte_max} days out"
        if not options:
            raise _leg_error(index, "expiry", f"No {spec.symbol} {right}s expire {where}: give the expiry.")
    at_strike = [option for option in options if math.isclose(option.strike, spec.strike, abs_tol=1e-9)]
    if not at_strike:
        strikes = sorted({option.strike for option in options}, key=lambda strike: (abs(strike - spec.strike), strike))
        nearest = ", ".join(f"{strike:g}" for strike in sorted(strikes[:4]))
        raise _leg_error(index, "strike", f"There is no {spec.symbol} {spec.strike:g} {right} {where}; "
                                          f"the nearest strikes are {nearest}. Which strike?")
    # Like the agent: the expiry nearest the middle of the window, ties to the nearer one.
    middle = (rules.dte_min + rules.dte_max) / 2.0
    return min(at_strike, key=lambda option: (abs((option.expiry - today).days - middle), option.expiry))


def _resolved(broker: Broker, specs: tuple[LegSpec, ...], today: date, parameters: AgentParameters
              ) -> list[tuple[LegSpec, Instrument]]:
    problems: dict[str, Any] = {}
    messages: list[str] = []
    resolved = []
    for index, spec in enumerate(specs):
        try:
            if spec.symbol not in PRODUCTS:
                raise _leg_error(index, "symbol", f"Unknown product {spec.symbol!r}; known: "
                                                  f"{', '.join(sorted(PRODUCTS))}.")
            if spec.sec_type == "FOP" and (spec.strike is None or spec.right is None):
                raise _leg_error(index, "strike" if spec.strike is None else "right",
                                 f"An option needs its strike and whether it is a call or a put "
                                 f"({spec.describe() if spec.strike is not None and spec.right else spec.symbol}).")
            instrument = (_future_for(broker, spec, index, today) if spec.sec_type == "FUT"
                          else _option_for(broker, spec, index, today, parameters))
            resolved.append((spec, instrument))
        except DraftUnclear as exc:
            messages.append(exc.question)
            for key, value in exc.field_errors.get("legs", {}).items():
                problems.setdefault(key, {}).update(value)
    if messages:
        raise DraftUnclear(" ".join(messages), {"legs": problems} if problems else {})
    keys = [instrument.key for _, instrument in resolved]
    if len(set(keys)) < len(keys):
        raise DraftUnclear("The same contract appears twice in the legs: give each contract once.",
                           {"legs": {"non_field_errors": ["the same contract appears twice"]}})
    return resolved


# ---------------------------------------------------------------------------------------------
# Building the trades
# ---------------------------------------------------------------------------------------------

def _single_trade(*, action: policy.TradeAction | str, quoted: policy.QuotedInstrument, side: str, quantity: int,
                  headline: str, rationale: dict[str, Any]) -> policy.ProposedTrade:
    instrument = quoted.risk.instrument
    price = quoted.ask if side == "BUY" else quoted.bid
    if price is None or price <= 0:
        raise DraftImpossible(f"No {'ask' if side == 'BUY' else 'bid'} for {instrument.key}: "
                              "no limit price can be set, so nothing was drafted.")
    summary = f"{headline}: {side.lower()} {quantity} {instrument.key} at {price} (far touch)."
    return policy.ProposedTrade(
        action=action, legs=(OrderLeg(instrument=instrument, side=side, quantity=quantity),),
        limit_price=float(price), summary=summary,
        rationale={**rationale, "bid": quoted.bid, "ask": quoted.ask, "limit_price": price},
    )


def _legs_trade(*, quoted: list[policy.QuotedInstrument], specs: list[LegSpec], actor: str) -> policy.ProposedTrade:
    rationale = {"requested_by": actor, "request": [spec.as_json() for spec in specs]}
    if len(specs) == 1:
        spec = specs[0]
        return _single_trade(action="trade", quoted=quoted[0], side=spec.side, quantity=spec.quantity,
                             headline=f"Asked by {actor}", rationale=rationale)
    if any(spec.sec_type != "FOP" for spec in specs) or len({spec.symbol for spec in specs}) > 1:
        raise DraftUnclear("A combo here is options on one product; draft a future separately "
                           "(one request per order).",
                           {"legs": {"non_field_errors": ["a combo holds options on one product only"]}})
    units = math.gcd(*[spec.quantity for spec in specs])
    legs = []
    for spec, quote in zip(specs, quoted, strict=True):
        needed = quote.ask if spec.side == "BUY" else quote.bid
        if needed is None or needed <= 0:
            raise DraftImpossible(f"No {'ask' if spec.side == 'BUY' else 'bid'} for {quote.risk.instrument.key}: "
                                  "no limit price can be set, so nothing was drafted.")
        ratio = spec.quantity // units
        legs.append(policy.Leg(quote, ratio if spec.side == "BUY" else -ratio))
    return policy.combo_trade("trade", legs, units, [], rationale=rationale, headline=f"Asked by {actor}")


def _held_structure_close(inputs: policy.PolicyInputs, held: policy.OpenStructure, why: str) -> policy.ProposedTrade:
    problem = policy.structure_problem(held, inputs.book)
    if problem:
        raise DraftImpossible(f"The {held.kind.replace('_', ' ')} I hold cannot be closed as one order: {problem}.")
    mark = policy.structure_mark(held, inputs.book)
    trade, reason = policy.close_structure(inputs, held, [why], mark, None)
    if trade is None:
        raise DraftImpossible(f"The {held.kind.replace('_', ' ')} was not drafted: {reason}.")
    return trade


def _no_structure_question(what: str) -> DraftUnclear:
    return DraftUnclear(f"I hold no option structure to {what}. Which legs do you mean? For example "
                        "\"buy 1 ES 6000 call\", or \"close everything\".")


def _trades_for(*, broker: Broker, snapshot, request: TradeRequest, parameters: AgentParameters,
                held: policy.OpenStructure | None, actor: str, now: datetime
                ) -> tuple[list[policy.ProposedTrade], dict, list[str]]:
    """(trades, quotes by key, notes for the journal)."""
    today = now.astimezone(UTC).date()
    notes: list[str] = []
    why = f"asked for by {actor}"
    if request.kind == RequestKind.LEGS:
        resolved = _resolved(broker, request.legs, today, parameters)
        instruments = [instrument for _, instrument in resolved]
        quotes = dict(snapshot.quotes)
        quotes.update(broker_services.quotes_for(broker=broker, instruments=instruments))
        quoted = list(_quoted(instruments, quotes, now, parameters.delta_models))
        return [_legs_trade(quoted=quoted, specs=[spec for spec, _ in resolved], actor=actor)], quotes, notes

    if request.kind == RequestKind.OPEN_STRUCTURE:
        if held is not None:
            raise DraftUnclear(f"I already hold a {held.kind.replace('_', ' ')} ({held.quantity} unit(s), expiring "
                               f"{held.expiry.isoformat()}). Close or roll it first (\"close the "
                               f"{held.kind.split('_')[-1]}\"), since I manage one structure at a time.")
        wanted = replace(parameters, structure=replace(parameters.structure, kind=request.structure,
                                                       quantity=request.units))
        inputs, quotes, _ = _policy_inputs(broker=broker, snapshot=snapshot, parameters=wanted, structure=None,
                                           now=now)
        trade, reason = policy.open_structure(inputs)
        if trade is None:
            raise DraftImpossible(f"Nothing drafted: {reason}.")
        if trade.rationale["units"] < request.units:
            notes.append(f"Capped at {trade.rationale['units']} of {request.units} units by the risk limits.")
        return [replace(trade, rationale={**trade.rationale, "requested_by": actor})], quotes, notes

    inputs, quotes, _ = _policy_inputs(broker=broker, snapshot=snapshot, parameters=parameters, structure=held,
                                       now=now)
    if request.kind == RequestKind.CLOSE_STRUCTURE:
        if held is None:
            raise _no_structure_question("close")
        if request.structure and request.structure not in (held.kind, held.kind.split("_", 1)[-1]):
            raise DraftUnclear(f"I hold a {held.kind.replace('_', ' ')}, not a {request.structure.replace('_', ' ')}. "
                               f"Close the {held.kind.replace('_', ' ')}?")
        return [_held_structure_close(inputs, held, why)], quotes, notes

    if request.kind == RequestKind.ROLL:
        trades = []
        if held is not None:
            trades.append(_held_structure_close(inputs, held, f"roll {why}"))
            notes.append("A roll closes first: the new structure is drafted once the close has filled "
                         f"(ask \"open a {held.kind.replace('_', ' ')}, {held.quantity} lot\").")
        if inputs.hedge is not None and inputs.hedge.two_sided:
            rolls, reasons = policy.hedge_rolls(inputs, inputs.hedge)
            trades.extend(rolls)
            notes.extend(reason for reason in reasons if "not rolled" in reason)
        if not trades:
            raise DraftImpossible("Nothing to roll: I hold no option structure and no futures in a contract "
                                  "that has rolled.")
        return trades, quotes, notes

    # CLOSE_ALL
    trades = []
    positions = snapshot.valuation.position_quantities()
    if held is not None and not policy.structure_problem(held, inputs.book):
        trades.append(_held_structure_close(inputs, held, f"close everything {why}"))
        for key, quantity in held.legs:
            positions[key] = positions.get(key, 0) - quantity
    rest = [(leg.risk.instrument, positions.get(leg.risk.instrument.key, 0)) for leg in snapshot.valuation.legs]
    rest = sorted(((instrument, quantity) for instrument, quantity in rest if quantity),
                  key=lambda item: item[0].key)
    if rest:
        quotes.update(broker_services.quotes_for(broker=broker, instruments=[i for i, _ in rest]))
        quoted_rest = _quoted([i for i, _ in rest], quotes, now, parameters.delta_models)
        for (instrument, quantity), quoted in zip(rest, quoted_rest, strict=True):
            trades.append(_single_trade(
                action="close_position", quoted=quoted, side="SELL" if quantity > 0 else "BUY",
                quantity=abs(quantity), headline=f"Close {quantity:+d} {instrument.key} ({why})",
                rationale={"requested_by": actor, "held_quantity": quantity}))
    if not trades:
        raise DraftImpossible("Nothing to close: the book is flat.")
    return trades, quotes, notes


# ---------------------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------------------

def _digest(request: TradeRequest, snapshot_quotes: dict, now: datetime) -> str:
    payload = {"request": request.as_json(), "now": now.isoformat(), "quoted": sorted(snapshot_quotes)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _request_checked(request: TradeRequest) -> None:
    if request.kind == RequestKind.LEGS and not request.legs:
        raise DraftUnclear("Which contracts, and how many?", {"legs": ["at least one leg is required"]})
    if request.kind == RequestKind.OPEN_STRUCTURE:
        if request.structure not in STRUCTURE_KINDS or request.structure == "none":
            raise DraftUnclear(f"Which structure? One of {', '.join(k for k in STRUCTURE_KINDS if k != 'none')}.")
        if request.units < 1:
            raise DraftUnclear("How many lots?")
    for spec in request.legs:
        if spec.quantity < 1:
            raise DraftUnclear(f"How many contracts for {spec.symbol}?")


def proposal_draft(*, client: Client, request: TradeRequest, actor: str, source: str) -> DraftOutcome:
    """Pending proposals for a trader's request (the current schema must be the client's); never
    executes, whatever the mode. Raises DraftUnclear, DraftImpossible, RiskRejected (nothing is
    created then) or BrokerError."""
    _request_checked(request)
    parameters = agent_parameters_get()
    if any(not spec.symbol for spec in request.legs):  # a leg without a product: the agent's underlying
        request = replace(request, legs=tuple(replace(spec, symbol=spec.symbol or parameters.underlying)
                                              for spec in request.legs))
    config: AgentConfig = agent_config_get()
    now = timezone.now()
    with risk.client_risk_lock(client), broker_services.broker_session() as broker:
        snapshot = risk.book_sync(client=client, broker=broker)
        held = _open_structure(agent_runtime_get())
        trades, quotes, notes = _trades_for(broker=broker, snapshot=snapshot, request=request,
                                            parameters=parameters, held=held, actor=actor, now=now)
        violations = []
        for trade in trades:
            order = OrderRequest(client_order_id="precheck", legs=trade.legs, order_type="LMT",
                                 limit_price=float(protected_limit_price(trade)))
            precheck = risk.pretrade_preview(order=order, snapshot=snapshot, quotes=quotes)
            if not precheck.accepted:
                violations.extend({**violation, "trade": trade.summary}
                                  for violation in precheck.as_dict()["violations"])
        if violations:
            raise RiskRejected({"accepted": False, "violations": violations})
        decided = policy.PolicyDecision(
            policy_version=REQUEST_POLICY_VERSION, trades=tuple(trades),
            reason=f"{actor} asked to {request.describe()}", metrics={"request": request.as_json()},
            inputs_digest=_digest(request, quotes, now),
        )
        proposals, more = _propose(client=client, trades=tuple(trades), decided=decided, snapshot=snapshot,
                                   quotes=quotes, parameters=parameters, mode=config.mode, source=source,
                                   status=Proposal.Status.PENDING, now=now, supersede=False, actor=actor)
        notes.extend(more)
        with transaction.atomic():
            decision = _decision_record(
                client=client, cycle=None, trigger=f"{source}-request"[:16],
                outcome=AgentDecision.Outcome.PROPOSED if proposals else AgentDecision.Outcome.HELD,
                decided=decided, notes=notes)
            Proposal.objects.filter(pk__in=[p.pk for p in proposals], decision__isnull=True).update(decision=decision)
    for proposal in proposals:
        proposal.refresh_from_db()
    return DraftOutcome(decision=decision, proposals=proposals)

