"""Executing a claimed proposal, exactly once: the order is sent under the proposal's client order
id, its outcome settles the proposal (and the structure the agent holds), and an execution left in
flight is resumed by asking the broker, never by sending again."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents.models import AgentCycle, Proposal
from agents.parameters import AgentParameters
from agents.selectors import agent_parameters_get
from agents.services.config import _runtime_for_update
from agents.services.proposals import RiskRejected, _publish_proposal, proposal_order
from audit import kinds
from audit import services as audit
from brokers.domain import BrokerError
from brokers.models import Order as OrderRow
from risk import services as risk
from tenants.models import Client

logger = logging.getLogger(__name__)

# An execution still in flight after this long was interrupted (a worker died): ask the broker.
IN_FLIGHT_RESOLVE_AFTER = timedelta(seconds=60)


# ---------------------------------------------------------------------------------------------
# Executing a claimed proposal
# ---------------------------------------------------------------------------------------------

def _structure_after_fill(*, proposal: Proposal, filled_units: int, average_price: float | None,
                          parameters: AgentParameters, now: datetime, previously_filled: int = 0) -> None:
    """Remember the structure the agent now holds (or no longer holds) for the policy's exits.
    `filled_units` is the order's whole filled quantity, `previously_filled` what of it was
    already remembered (a resting order filling in parts is seen more than once)."""
    if proposal.action not in ("open_structure", "close_structure") or filled_units <= previously_filled:
        return
    runtime = _runtime_for_update()
    if proposal.action == "close_structure":
        runtime.open_structure = _structure_left(runtime.open_structure,
                                                 closed_units=filled_units - previously_filled)
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
                     payload: dict[str, Any],
                     also: Callable[[Proposal, dict[str, Any]], None] | None = None) -> Proposal:
    """Move a proposal to where its execution left it, audited and published, in one transaction.
    `also(proposal, execution_before)` runs in it."""
    with transaction.atomic():
        proposal = Proposal.objects.select_for_update().get(pk=proposal.pk)
        before = dict(proposal.execution or {})
        proposal.status = status
        proposal.execution = execution
        proposal.save(update_fields=["status", "execution", "updated_at"])
        if also is not None:
            also(proposal, before)
        audit.audit_record(client_id=client.client_id, actor_type="agent", actor_id="agent", kind=kind,
                           payload={"proposal_id": str(proposal.pk), "client_order_id": proposal.client_order_id,
                                    "status": status, **payload})
        _publish_proposal(client=client, proposal=proposal, event="updated")
    return proposal


def _order_fields(row: OrderRow) -> dict[str, Any]:
    """What a proposal shows of its order: as the order row last heard it from the broker."""
    return {"order_state": row.state, "filled_quantity": row.filled_quantity,
            "average_fill_price": float(row.average_fill_price) if row.average_fill_price is not None else None,
            "message": row.message}


def _execution_finish(*, client: Client, proposal: Proposal, result: risk.SubmissionResult) -> Proposal:
    """Record what the execution came to: the governor's verdict, the order's state, any error."""
    execution: dict[str, Any] = {"decision": result.decision.as_dict() if result.decision else None}
    if result.status is not None:
        execution.update(order_state=result.status.state, filled_quantity=result.status.filled_quantity,
                         average_fill_price=result.status.average_fill_price, message=result.status.message)
        # The row is newer than the send's answer when the sync after it heard more (a fill).
        row = OrderRow.objects.filter(client_order_id=proposal.client_order_id).first()
        if row is not None:
            execution.update(_order_fields(row))
    if result.error is not None:
        execution["error"] = result.error.payload()
    if not result.accepted:
        status, kind = Proposal.Status.BLOCKED, kinds.PROPOSAL_BLOCKED
    elif result.error is not None and result.error.retryable:
        status, kind = Proposal.Status.EXECUTING, kinds.PROPOSAL_FAILED  # outcome unknown: asked again later
        execution["order_state"] = "unknown"
    elif result.error is not None or execution.get("order_state") == "rejected":
        status, kind = Proposal.Status.FAILED, kinds.PROPOSAL_FAILED
    else:
        status, kind = Proposal.Status.EXECUTED, kinds.PROPOSAL_EXECUTED

    def remember_structure(settled: Proposal, before: dict[str, Any]) -> None:
        if status == Proposal.Status.EXECUTED and result.status is not None:
            already = int(before.get("filled_quantity") or 0) if settled.action == "close_structure" else 0
            _structure_after_fill(proposal=settled, filled_units=execution["filled_quantity"],
                                  average_price=execution["average_fill_price"],
                                  parameters=agent_parameters_get(), now=timezone.now(), previously_filled=already)

    payload = {k: v for k, v in execution.items() if k != "decision"}
    payload["violations"] = (execution["decision"] or {}).get("violations", [])
    return _proposal_settle(client=client, proposal=proposal, status=status, kind=kind, execution=execution,
                            payload=payload, also=remember_structure)


def _partly_filled(proposal: Proposal) -> bool:
    return (proposal.execution or {}).get("order_state") == "partially_filled"


def _halt_refusal(result: risk.SubmissionResult) -> str | None:
    """Why the governor refused an order, when a halt is among the reasons (an operator's halt, the
    platform's emergency halt, a HALTED state, the circuit breaker); None otherwise."""
    if result.accepted or result.decision is None:
        return None
    halts = [v for v in result.decision.violations if v.code.value in RiskRejected.HALT_CODES]
    return "; ".join(v.message for v in halts) or None


def _proposal_execute(*, client: Client, proposal: Proposal, actor: risk.Actor, purpose: str,
                      halt_raises: bool = False) -> Proposal:
    """Send a claimed (EXECUTING) proposal's order through the governor. The order's client order id
    is the proposal's, so calling this again for the same proposal asks the broker, never resends.

    A halt in the way (one that landed after the claim) blocks the proposal, or with `halt_raises`
    raises ExecutionHalted and leaves the proposal as it is, for the caller to put back (a
    trader's approval: the proposal stays approvable after the lift)."""
    try:
        result = risk.order_submit(client=client, order=proposal_order(proposal), actor=actor, purpose=purpose)
    except risk.ExecutionHalted as exc:
        if halt_raises:
            raise
        return _execution_blocked(client=client, proposal=proposal, message=exc.reason)
    if halt_raises and (reason := _halt_refusal(result)) is not None:
        raise risk.ExecutionHalted(reason)
    proposal = _execution_finish(client=client, proposal=proposal, result=result)
    if _partly_filled(proposal):
        # A partly filled structure leaves the book's delta where nobody decided it: hedge it now.
        from agents.services.cycle import cycle_run  # the cycle executes through here: import late

        cycle_run(client=client, key=f"partial:{proposal.pk}", trigger="partial_fill")
    return proposal


def _execution_blocked(*, client: Client, proposal: Proposal, message: str) -> Proposal:
    return _proposal_settle(client=client, proposal=proposal, status=Proposal.Status.BLOCKED,
                            kind=kinds.PROPOSAL_BLOCKED, execution={"decision": None, "blocked": message},
                            payload={"reason": message})


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


def _working_proposals():
    """Executed proposals whose order the broker may still fill (as last heard)."""
    return Proposal.objects.filter(status=Proposal.Status.EXECUTED, execution__order_state__in=WORKING_ORDER_STATES)


def proposals_follow_orders(client: Client, rows: list[OrderRow]) -> list[Proposal]:
    """The orders a book sync found changed at the broker (risk.services.order_listener_register):
    each executed proposal shows its order's state, filled quantity and price as the broker reports
    them, and a structure order filling later changes the structure the agent holds. A proposal
    still executing is left to its execution, which reads the same row when it settles."""
    by_id = {row.client_order_id: row for row in rows}
    followed = []
    for proposal in Proposal.objects.filter(client_order_id__in=list(by_id), status=Proposal.Status.EXECUTED):
        row = by_id[proposal.client_order_id]
        with transaction.atomic():
            proposal = Proposal.objects.select_for_update().get(pk=proposal.pk)
            before = dict(proposal.execution or {})
            fields = _order_fields(row)
            if proposal.status != Proposal.Status.EXECUTED or all(before.get(k) == v for k, v in fields.items()):
                continue
            proposal.execution = {**before, **fields}
            proposal.save(update_fields=["execution", "updated_at"])
            _structure_after_fill(proposal=proposal, filled_units=row.filled_quantity,
                                  average_price=fields["average_fill_price"], parameters=agent_parameters_get(),
                                  now=timezone.now(),
                                  previously_filled=int(before.get("filled_quantity") or 0)
                                  if proposal.action == "close_structure" else 0)
            audit.audit_record(client_id=client.client_id, actor_type="system", actor_id="agent",
                               kind=kinds.PROPOSAL_EXECUTED,
                               payload={"proposal_id": str(proposal.pk), "client_order_id": proposal.client_order_id,
                                        "status": proposal.status, "followed_broker": True, **fields})
        _publish_proposal(client=client, proposal=proposal, event="updated")
        followed.append(proposal)
    return followed


def _structure_orders_refresh(*, client: Client) -> bool:
    """Whether a structure order is still working (the structure it will leave is not known yet),
    asked of the broker first: one book sync, which brings every working order up to date (the
    proposals follow through proposals_follow_orders). Without a structure order working nothing
    is asked here: the cycle's own book sync brings the other orders up to date."""
    working_structures = _working_proposals().filter(action__in=STRUCTURE_ACTIONS)
    if not working_structures.exists():
        return False
    risk.orders_sync(client=client)
    return working_structures.exists()


def _execution_failed(*, client: Client, proposal: Proposal, error: BrokerError) -> Proposal:
    return _proposal_settle(client=client, proposal=proposal, status=Proposal.Status.FAILED,
                            kind=kinds.PROPOSAL_FAILED,
                            execution={**(proposal.execution or {}), "error": error.payload()},
                            payload={"error": error.payload()})
