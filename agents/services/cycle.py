"""The cycle: expire stale proposals, resume executions left in flight, sync the book and quote the
market, let the pure policy decide, pre-check each trade, then propose or execute. Also the chat's
hedge draft (the same path, hedges only) and the schedule that queues cycles."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from agents import policy, schedule
from agents.models import AgentConfig, AgentCycle, AgentDecision, Proposal
from agents.parameters import AgentParameters, Band, ParameterError
from agents.selectors import agent_config_get, agent_parameters_get, agent_runtime_get
from agents.services.approvals import proposals_expire
from agents.services.config import AGENT, _open_structure, _runtime_for_update
from agents.services.execution import (
    STRUCTURE_ACTIONS,
    _execution_blocked,
    _executions_resume,
    _proposal_execute,
    _structure_orders_refresh,
)
from agents.services.proposals import (
    CycleOutcome,
    DraftOutcome,
    _decision_record,
    _propose,
    _stale_hedges_supersede,
    _trading_blocked_reason,
)
from audit import kinds
from audit import services as audit
from brokers import contracts
from brokers import services as broker_services
from brokers.domain import Broker, BrokerError, Instrument
from risk import selectors as risk_selectors
from risk import services as risk
from risk import strike_window
from risk.book import instruments_risk
from risk.working import NO_WORKING_ORDERS
from tenants.models import Client
from tradingplatform.events import publish_event
from tradingplatform.locks import advisory_lock_attempt
from tradingplatform.tasking import database_busy

logger = logging.getLogger(__name__)

def _quoted(instruments: list[Instrument], quotes: dict, now: datetime,
            delta_models=None) -> tuple[policy.QuotedInstrument, ...]:
    """Instruments with their risk and touch; deltas in `delta_models` (None: sticky-strike)."""
    risks = instruments_risk(instruments, quotes, now=now, rate=settings.RISK_FREE_RATE,
                             delta_models=delta_models)
    return tuple(
        policy.QuotedInstrument(risk=risk, bid=quotes[i.key].bid if i.key in quotes else None,
                                ask=quotes[i.key].ask if i.key in quotes else None)
        for i, risk in zip(instruments, risks, strict=True)
    )


def _choosable(*, broker: Broker, options: list[Instrument], quotes: dict, rules, now: datetime) -> list[Instrument]:
    """The listed options the structure rules can choose by |delta| (`risk.strike_window`), so
    that only those take market-data lines: their futures and at-the-money options are quoted
    first (into `quotes`) for the forwards and each expiry's implied volatility."""
    if not options:
        return []
    futures = {option.underlying_future().key: option.underlying_future() for option in options}
    quotes.update(broker_services.quotes_for(
        broker=broker, instruments=[future for key, future in futures.items() if key not in quotes]))
    forwards = {key: quotes[key].mid for key in futures if key in quotes and quotes[key].mid is not None}
    at_the_money = strike_window.atm_options(options, forwards)
    quotes.update(broker_services.quotes_for(broker=broker, instruments=at_the_money))
    by_expiry: dict[tuple[str, Any], list[float]] = {}
    for risk_ in instruments_risk(at_the_money, quotes, now=now, rate=settings.RISK_FREE_RATE):
        if risk_.implied_vol is not None:
            key = (risk_.instrument.underlying_future().key, risk_.instrument.expiry)
            by_expiry.setdefault(key, []).append(risk_.implied_vol)
    straddle = rules.kind in ("short_straddle", "long_straddle")
    targets = (0.5,) if straddle else (
        (rules.short_delta, rules.wing_delta) if rules.kind == "iron_condor" else (rules.short_delta,))
    return strike_window.options_near_deltas(
        options, forwards=forwards, atm_vols={key: sum(v) / len(v) for key, v in by_expiry.items()},
        now=now, rate=settings.RISK_FREE_RATE, targets=targets, pair_rights=straddle)


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
        underlyings = contracts.option_underlyings(futures, hedge=hedge_future, today=today, dte_max=rules.dte_max)
        chains = broker_services.option_chains_list(broker=broker, futures=underlyings, now=now, raise_errors=True)
        listed = [option for underlying in underlyings for option in chains[underlying.key]
                  if rules.dte_min <= (option.expiry - today).days <= rules.dte_max]
        options.update({option.key: option for option in _choosable(
            broker=broker, options=listed, quotes=quotes, rules=rules, now=now)})
    chain: tuple[policy.QuotedInstrument, ...] = ()
    if options:
        unquoted = [option for option in options.values() if option.key not in quotes]
        quotes.update(broker_services.quotes_for(broker=broker, instruments=unquoted))
        # Strikes are chosen by their quoted (Black-76, sticky-strike) delta, the market's
        # convention for "a 20-delta strangle"; the book is hedged on the chosen delta model.
        chain = _quoted(list(options.values()), quotes, now)
    (hedge,) = _quoted([hedge_future], quotes, now)
    inputs = policy.PolicyInputs(
        now=now, parameters=parameters, limits=risk_selectors.risk_limits_get(), book=snapshot.valuation,
        hedge=hedge if hedge.bid is not None or hedge.ask is not None else None,
        chain=chain, structure=structure, rate=settings.RISK_FREE_RATE,
        expiring_futures=_quoted(expiring, quotes, now) if expiring else (),
        working=snapshot.working or NO_WORKING_ORDERS,
    )
    return inputs, quotes, choice.note


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
        notes.extend(_stale_hedges_supersede(client=client, decided=decided))
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
        filled = (proposal.status == Proposal.Status.EXECUTED
                  and (proposal.execution or {}).get("order_state") == "filled")
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
        next_cycle = (schedule.next_cycle_at(client_id=client.client_id, interval=parameters.cycle_interval_seconds,
                                             now=now) if parameters else None)
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
            if database_busy(exc):  # a lock not granted in time: skipped, not failed
                return _cycle_skipped_busy(client=client, cycle=cycle, error=exc, parameters=parameters)
            logger.exception("agent cycle failed", extra={"cycle": key})
            _cycle_failed(client=client, cycle=cycle, error={"type": type(exc).__name__, "message": str(exc)[:500]},
                          parameters=parameters)
            raise
        cycle.status = AgentCycle.Status.COMPLETED
        cycle.finished_at = timezone.now()
        cycle.save(update_fields=["status", "finished_at"])
        _runtime_record(client=client, status="completed", reason=decision.reason, parameters=parameters)
        return CycleOutcome(cycle=cycle, skipped="", decision=decision, proposals=proposals)


CLIENT_BUSY = "client busy"


def _cycle_skipped_busy(*, client: Client, cycle: AgentCycle, error: DatabaseError,
                        parameters: AgentParameters | None) -> CycleOutcome:
    """The cycle met a lock it was not granted in time (or a statement past its timeout): it ends
    at once as skipped, instead of holding a worker while it waits. Audited when an outage starts,
    not at every interval it lasts. If even recording that meets the lock, the cycle stays running
    for the reaper (`cycles_reap`)."""
    message = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    reason = f"skipped: {CLIENT_BUSY} ({message})"
    try:
        cycle.status = AgentCycle.Status.SKIPPED
        cycle.error = {"type": "client_busy", "message": message}
        cycle.finished_at = timezone.now()
        cycle.save(update_fields=["status", "error", "finished_at"])
        if agent_runtime_get().last_cycle_status != "skipped":
            audit.audit_record(client_id=client.client_id, actor_type="agent", actor_id="agent",
                               kind=kinds.AGENT_CYCLE_SKIPPED, payload={"cycle": cycle.key, "reason": CLIENT_BUSY,
                                                                        "error": message})
        _runtime_record(client=client, status="skipped", reason=reason, parameters=parameters)
    except DatabaseError as exc:
        logger.warning("skipped cycle not recorded", extra={"cycle": cycle.key, "error": str(exc)[:300]})
    logger.warning("agent cycle skipped: client busy", extra={"cycle": cycle.key, "error": message})
    return CycleOutcome(cycle=cycle, skipped=reason, decision=None, proposals=[])


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
    """Queue the cycles of every active client whose slot (`agents.schedule`) is running now or
    starts before the scheduler's next look, each to start at its slot's start (an ETA) and to be
    dropped if it has not started by the slot's end. Each task is sent from the client's schema
    (so it runs there) and queued once per slot (a Redis flag; the cycle's key makes a second run
    of one slot a no-op anyway). Returns the client ids queued. Reads only: a slow broker never
    delays this fan-out."""
    from django_tenants.utils import tenant_context

    from agents.tasks import agent_cycle_task
    from tradingplatform.events import flag_set_once

    now = now or timezone.now()
    horizon = timedelta(seconds=2 * settings.AGENT_SCHEDULER_TICK_SECONDS)
    queued = []
    for client in Client.objects.filter(status=Client.Status.ACTIVE).order_by("client_id"):
        with tenant_context(client):
            try:
                interval = agent_parameters_get().cycle_interval_seconds
            except ParameterError:
                logger.error("agent parameters invalid; cycle not scheduled", extra={"client_id": client.client_id})
                continue
            for slot in schedule.slots_to_queue(client_id=client.client_id, interval=interval, now=now,
                                                horizon=horizon):
                ttl = (slot.end - now).total_seconds() + interval
                if flag_set_once(client_id=client.client_id, name=f"cycle-queued:{slot.key}", ttl_seconds=ttl):
                    agent_cycle_task.apply_async(args=[client.client_id, slot.key],
                                                 eta=slot.start if slot.start > now else None, expires=slot.end)
                    queued.append(client.client_id)
    return queued


def cycles_reap(*, now: datetime | None = None) -> list[str]:
    """End every cycle still `running` that no process runs any more (its worker was killed, or it
    could not record its own end): older than AGENT_CYCLE_ABANDONED_AFTER_SECONDS and its client's
    cycle lock free. Each becomes `failed` with the error `abandoned`, audited; an execution it
    left in flight is resolved by the client's next cycle, by asking the broker. Returns the keys."""
    from django_tenants.utils import get_public_schema_name, tenant_context

    from audit.rls import rls_context

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.AGENT_CYCLE_ABANDONED_AFTER_SECONDS)
    reaped = []
    for client in Client.objects.exclude(schema_name=get_public_schema_name()).order_by("client_id"):
        with tenant_context(client), rls_context(client_id=client.client_id, is_admin=False):
            if not AgentCycle.objects.filter(status=AgentCycle.Status.RUNNING, started_at__lte=cutoff).exists():
                continue
            with advisory_lock_attempt(f"agent-cycle:{client.client_id}") as free:
                if not free:
                    continue  # a cycle runs now: whatever is older is not its to end
                for cycle in AgentCycle.objects.filter(status=AgentCycle.Status.RUNNING, started_at__lte=cutoff):
                    cycle.status = AgentCycle.Status.FAILED
                    cycle.error = {"type": "abandoned",
                                   "message": "no worker was running this cycle any more (its process was killed)"}
                    cycle.finished_at = now
                    cycle.save(update_fields=["status", "error", "finished_at"])
                    audit.audit_record(client_id=client.client_id, actor_type="system", actor_id="reaper",
                                       kind=kinds.AGENT_CYCLE_ABANDONED,
                                       payload={"cycle": cycle.key, "started_at": cycle.started_at.isoformat()})
                    reaped.append(cycle.key)
    return reaped
