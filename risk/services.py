"""The governor service: the only path from an order to `Broker.place_order`.

`order_submit` runs the pure governor under a per-client lock (two concurrent orders cannot both
pass a limit only one of them fits), records the decision and audits it, applies any state
change, and only then calls the broker — with the order row written first, so a retry after an
unknown outcome asks the broker by client order id instead of sending twice.

Lock order, everywhere: the platform halt lock (shared here, exclusive while an operator halts),
then the client's risk lock, then the broker session lock.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import kinds
from audit import services as audit
from brokers import services as broker_services
from brokers.domain import Broker, BrokerError, OrderRequest, OrderStatus
from brokers.models import Fill as FillRow
from brokers.models import Order as OrderRow
from brokers.products import PRODUCTS
from brokers.selectors import WORKING_STATES, working_orders
from risk import governor
from risk.book import book_delta_model, instruments_risk
from risk.book_history import book_history_record
from risk.models import RiskDecisionRecord, RiskStateRecord
from risk.option_history import option_history_record
from risk.selectors import (
    delta_models_get,
    market_hours,
    net_greeks_json,
    orders_recent,
    platform_control_get,
    realized_pnl_since,
    risk_limits_get,
    trading_day_start_get,
    unrealized_money,
    working_order_legs,
)
from risk.working import NO_WORKING_ORDERS, value_working
from tenants.models import Client, PlatformControl
from tradingplatform.events import live_state_set, publish_event, published_values, stream_lock
from tradingplatform.locks import advisory_lock, advisory_locks
from tradingplatform.tasking import lock_waits_unbounded

logger = logging.getLogger(__name__)

PLATFORM_HALT_LOCK = "platform-emergency-halt"


@dataclass(frozen=True, slots=True)
class Actor:
    type: str  # "user", "agent", "operator", "system"
    id: str


@dataclass(frozen=True, slots=True)
class SubmissionResult:
    decision: governor.Decision | None  # None: an earlier send of this order was found instead
    order: OrderRow | None  # None when the governor rejected the order
    status: OrderStatus | None
    error: BrokerError | None  # the broker call's failure (outcome unknown when retryable)

    @property
    def accepted(self) -> bool:
        return self.order is not None


class ExecutionHalted(Exception):
    """An execution refused because trading is halted (HTTP 423)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _risk_state_row() -> RiskStateRecord:
    """The client's risk state row, created on first use: services write to it (reads use
    risk.selectors.risk_state_get, which never creates it)."""
    state, _ = RiskStateRecord.objects.get_or_create(singleton=True)
    return state


def _platform_control_row() -> PlatformControl:
    control, _ = PlatformControl.objects.get_or_create(singleton=True)
    return control


def _governor_state(record: RiskStateRecord, control: PlatformControl, limits, now) -> governor.RiskState:
    halted_by_operator = control.emergency_halted or record.operator_halted
    reason = control.reason if control.emergency_halted else record.operator_halt_reason
    return governor.RiskState(
        trading_state=governor.TradingState(record.trading_state),
        reason=record.reason,
        state_until=record.state_until,
        emergency_halt=halted_by_operator,
        emergency_reason=reason,
        recent_orders=orders_recent(limits=limits, now=now),
        loss_streak=record.loss_streak,
    )


def _daily_pnl(record: RiskStateRecord, unrealized: float | None, now: datetime) -> tuple[Decimal, Decimal | None]:
    """(realized today net of commissions, unrealized since the day began); see RiskStateRecord.
    The first sight of a trading day takes its unrealized baseline (a write: `record` is a saved
    row); risk.selectors.daily_pnl_read is the read that never takes it."""
    day_start = trading_day_start_get(now)
    unrealized_now = unrealized_money(unrealized)
    if record.trading_day_start != day_start and unrealized_now is not None:
        record.trading_day_start = day_start
        record.day_unrealized_baseline = unrealized_now
        record.save(update_fields=["trading_day_start", "day_unrealized_baseline", "changed_at"])
    realized = realized_pnl_since(day_start)
    if unrealized_now is None:
        return realized, None
    return realized, unrealized_now - record.day_unrealized_baseline


def _proposed_order(order: OrderRequest, quotes: dict, now: datetime, delta_models) -> governor.ProposedOrder:
    """The order's legs valued in `delta_models` (the book's, read once by its sync; the client's
    current ones when the snapshot does not carry them)."""
    risks = instruments_risk([leg.instrument for leg in order.legs], quotes, now=now, rate=settings.RISK_FREE_RATE,
                             delta_models=delta_models if delta_models is not None else delta_models_get())
    legs = []
    for leg, risk in zip(order.legs, risks, strict=True):
        quote = quotes.get(leg.instrument.key)
        delta = risk.delta_per_contract
        product = PRODUCTS.get(leg.instrument.symbol)
        legs.append(
            governor.ProposedLeg(
                instrument_key=leg.instrument.key,
                calendar=product.calendar if product else None,
                quantity=leg.signed_quantity,
                delta_per_contract=delta if math.isfinite(delta) and risk.greeks_source != "none" else None,
                is_option=leg.instrument.is_option,
                # A delayed (10-20 min) or frozen quote's age is unknown: the governor treats it as stale.
                quote=governor.LegQuote(bid=quote.bid, ask=quote.ask,
                                        time=quote.time if quote.data_type == "live" else None) if quote else None,
            )
        )
    return governor.ProposedOrder(legs=tuple(legs))


def _state_change(
    *, client: Client, record: RiskStateRecord, to_state: str, reason: str, actor: Actor,
    until: datetime | None = None, loss_streak: int | None = None,
) -> None:
    before = {"trading_state": record.trading_state, "reason": record.reason, "loss_streak": record.loss_streak}
    record.trading_state = to_state
    record.reason = reason
    record.state_until = until
    if loss_streak is not None:
        record.loss_streak = loss_streak
    record.save()
    after = {"trading_state": record.trading_state, "reason": record.reason, "loss_streak": record.loss_streak,
             "until": until.isoformat() if until else None}
    audit.audit_record(client_id=client.client_id, actor_type=actor.type, actor_id=actor.id,
                       kind=kinds.RISK_STATE_CHANGED, payload={"before": before, "after": after})
    publish_event(client_id=client.client_id, type="risk", data={"event": "state_changed", **after})


def closing_results_apply(*, client: Client, fills: list[FillRow], limits: governor.RiskLimits) -> None:
    """Fold closing fills into the circuit breaker, one result per order (its fills summed)."""
    by_order: dict[str, Decimal] = {}
    for fill in sorted(fills, key=lambda f: (f.executed_at, f.id)):
        if fill.realized_pnl is not None:
            by_order[fill.client_order_id] = by_order.get(fill.client_order_id, Decimal(0)) + fill.realized_pnl
    if not by_order:
        return
    record = RiskStateRecord.objects.select_for_update().get(pk=_risk_state_row().pk)
    streak, tripped = record.loss_streak, False
    for realized in by_order.values():
        streak, now_tripped = governor.record_closing_result(streak, realized, limits)
        tripped = tripped or now_tripped
    if tripped and record.trading_state != RiskStateRecord.TradingState.HALTED:
        _state_change(client=client, record=record, to_state="HALTED", reason="circuit_breaker",
                      actor=Actor("system", "circuit-breaker"), loss_streak=streak)
    elif streak != record.loss_streak:
        record.loss_streak = streak
        record.save(update_fields=["loss_streak", "changed_at"])


OrderListener = Callable[[Client, list[OrderRow]], None]
_order_listeners: list[OrderListener] = []


def order_listener_register(listener: OrderListener) -> None:
    """Name a function called with the orders a book sync brought up to date (a resting order
    filled, partly filled, cancelled or expired at the broker), after they are saved. The app
    that keeps what an order stands for (the agents' proposals) registers one at start-up, so
    that risk never imports it (as with risk.selectors.risk_limits_source_register)."""
    if listener not in _order_listeners:
        _order_listeners.append(listener)


def trades_stream(*, client: Client) -> int:
    """A `trade` event for every recorded fill the client's stream has not had: the new ones, and
    any recorded by a worker killed before it streamed them (fills are recorded as the broker
    reports them, apart from their events). In the caller's transaction; fills older than the
    stream's retention are left. Returns how many were published.

    Which fills are unstreamed is one anti-join in PostgreSQL. Only when there are some is the
    stream held (and the question asked again under it), so that no fill is streamed twice; a
    sync with no new fill, the usual one, neither reads the events nor waits for the stream."""
    cutoff = timezone.now() - timedelta(hours=settings.STREAM_RETENTION_HOURS)

    def unstreamed():
        return (FillRow.objects.filter(executed_at__gte=cutoff)
                .exclude(fill_id__in=published_values(client_id=client.client_id, type="trade", key="fill_id"))
                .order_by("executed_at", "id"))

    if not unstreamed().exists():
        return 0
    stream_lock(client_id=client.client_id)
    fills = list(unstreamed())
    for fill in fills:
        publish_event(client_id=client.client_id, type="trade",
                      data={"fill_id": fill.fill_id, "client_order_id": fill.client_order_id,
                            "instrument_key": fill.instrument_key, "side": fill.side,
                            "quantity": fill.quantity, "price": str(fill.price)})
    return len(fills)


def book_sync(*, client: Client, broker: Broker):
    """Sync the book from the broker: every working order's state first, then fills and
    positions; apply what the new fills mean for the breaker; value the book and the working
    orders' remaining quantities; stream the fills (`trade` events, with any a killed worker left
    unstreamed); publish the net greeks (live state `client:{id}:greeks` and a
    `greeks` event) and an `order` event per order that changed."""
    changed = broker_services.orders_refresh(broker=broker)
    # The working legs are quoted with the book (one quotes call), then read again once the new
    # fills are recorded: a fill the order's status has not caught up with is not counted twice.
    working_instruments = [leg.instrument for leg in working_order_legs()]
    snapshot = broker_services.book_refresh(broker=broker, also_quote=working_instruments)
    working = value_working(working_order_legs(), snapshot.quotes, now=snapshot.valuation.as_of,
                            rate=settings.RISK_FREE_RATE, delta_models=snapshot.delta_models)
    snapshot = replace(snapshot, working=working, changed_orders=tuple(changed))
    with transaction.atomic():
        closing_results_apply(client=client, fills=snapshot.new_fills, limits=risk_limits_get())
        # `trade` events for the new fills and any a killed worker left unstreamed
        trades_stream(client=client)
    for row in changed:
        audit.audit_record(client_id=client.client_id, actor_type="system", actor_id=broker.name,
                           kind=kinds.ORDER_UPDATED,
                           payload={"client_order_id": row.client_order_id, "state": row.state,
                                    "filled_quantity": row.filled_quantity,
                                    "average_fill_price": str(row.average_fill_price)
                                    if row.average_fill_price is not None else None,
                                    "broker_message": row.message})
        _order_event(client=client, row=row, event="updated", actor=Actor("system", broker.name),
                     reason="reported by the broker")
    if changed:
        for listener in _order_listeners:
            listener(client, list(changed))
    greeks = net_greeks_json(snapshot.valuation, working)
    realized, unrealized_today = _daily_pnl(_risk_state_row(), snapshot.valuation.unrealized_pnl, timezone.now())
    with transaction.atomic():
        book_history_record(valuation=snapshot.valuation, realized_today=realized, unrealized_today=unrealized_today)
        option_history_record(quotes=snapshot.quotes, at=snapshot.valuation.as_of)
    live_state_set(client_id=client.client_id, name="greeks", data=greeks)
    publish_event(client_id=client.client_id, type="greeks", data=greeks)
    return snapshot


def _existing_order_outcome(row: OrderRow, broker: Broker) -> SubmissionResult | None:
    """An order sent before under this id: ask the broker instead of sending it again."""
    status = broker.order_status(row.client_order_id)
    if status is None and row.state in (OrderRow.State.PENDING_SUBMIT, OrderRow.State.UNKNOWN):
        return None  # the broker never received it: it may be sent (after a fresh decision)
    if status is not None:
        broker_services.order_status_apply(row=row, status=status)
    return SubmissionResult(decision=None, order=row, status=status, error=None)


def order_outcome_resolve(*, client: Client, client_order_id: str) -> SubmissionResult | None:
    """What became of an order sent earlier, asked of the broker; never sends anything. None when
    the order never reached the broker (its row, if any, is then closed as never sent)."""
    with client_risk_lock(client), broker_services.broker_session() as broker:
        row = OrderRow.objects.filter(client_order_id=client_order_id).first()
        if row is None:
            return None
        outcome = _existing_order_outcome(row, broker)
        if outcome is None:
            row.state = OrderRow.State.REJECTED
            row.message = "never reached the broker; not sent again"
            row.save(update_fields=["state", "message", "updated_at"])
            return None
        book_sync(client=client, broker=broker)
        return outcome


def orders_sync(*, client: Client):
    """Bring every working order (and the book) up to date from the broker now, under the client's
    risk lock; raises BrokerError when the broker cannot be asked."""
    with client_risk_lock(client), broker_services.broker_session() as broker:
        return book_sync(client=client, broker=broker)


def client_risk_lock(client: Client):
    """The platform halt lock (shared: an operator's halt takes it exclusively) and the client's."""
    return advisory_locks([(PLATFORM_HALT_LOCK, True), (f"risk:{client.client_id}", False)])


def _evaluate(*, order: OrderRequest, snapshot, quotes: dict, record: RiskStateRecord) -> governor.Decision:
    now = timezone.now()
    limits = risk_limits_get()
    control = platform_control_get()  # read only: a halt is set by emergency_halt_set
    realized_today, unrealized_today = _daily_pnl(record, snapshot.valuation.unrealized_pnl, now)
    # The orders already working count like positions (never the order itself: a resend of an
    # order the broker never received has its row already).
    working = (snapshot.working or NO_WORKING_ORDERS).without(order.client_order_id)
    book = governor.Book(
        positions=snapshot.valuation.position_quantities(),
        net_delta=snapshot.valuation.net_delta,
        realized_pnl_today=realized_today,
        unrealized_pnl=unrealized_today,
        broker_connected=snapshot.health.connected,
        delta_model=book_delta_model(snapshot.valuation),
        working_positions=working.quantities(),
        working_delta=working.delta,
        working_orders=len(working.order_ids),
    )
    return governor.evaluate_order(
        _proposed_order(order, quotes, now, snapshot.delta_models), book, limits,
        _governor_state(record, control, limits, now),
        market_hours(), now,
    )


def pretrade_preview(*, order: OrderRequest, snapshot, quotes: dict) -> governor.Decision:
    """The governor's verdict on an order that is not being sent (a proposal's pre-check): nothing
    is recorded, so a preview never counts toward the order-rate and duplicate rules."""
    return _evaluate(order=order, snapshot=snapshot, quotes=quotes, record=_risk_state_row())


def pretrade_decide(
    *, client: Client, order: OrderRequest, snapshot, quotes: dict, actor: Actor, purpose: str, broker_name: str,
) -> tuple[governor.Decision, OrderRow | None]:
    """The pre-trade check: the governor over the current book, the decision recorded and audited,
    any state transition applied, and — when accepted — the order row written, all in one
    transaction. The caller holds the client's risk lock; nothing here calls the broker."""
    record = _risk_state_row()
    decision = _evaluate(order=order, snapshot=snapshot, quotes=quotes, record=record)
    with transaction.atomic():
        RiskDecisionRecord.objects.create(
            client_order_id=order.client_order_id, purpose=purpose, accepted=decision.accepted,
            codes=[code.value for code in decision.codes], fingerprint=decision.fingerprint,
            decision=decision.as_dict(),
        )
        audit.audit_record(
            client_id=client.client_id, actor_type=actor.type, actor_id=actor.id, kind=kinds.RISK_DECISION,
            payload={"client_order_id": order.client_order_id, "purpose": purpose, **decision.as_dict()},
        )
        if decision.transition is not None:
            _state_change(
                client=client, record=record, to_state=decision.transition.to_state.value,
                reason=decision.transition.reason.value, actor=Actor("system", "governor"),
                until=decision.transition.until,
            )
        row = broker_services.order_record(order=order, broker=broker_name) if decision.accepted else None
        if not decision.accepted:
            publish_event(client_id=client.client_id, type="risk",
                          data={"event": "violation", "client_order_id": order.client_order_id,
                                "violations": [v.as_dict() for v in decision.violations]})
    return decision, row


def order_submit(*, client: Client, order: OrderRequest, actor: Actor, purpose: str = "order") -> SubmissionResult:
    """Check the order with the governor and, if it passes, send it. Never raises for a rejection:
    the result carries the decision with every reason. Raises BrokerError when the broker cannot
    be reached to evaluate the order at all (the governor then has nothing to decide on), and
    ExecutionHalted when an agent tries to execute while the kill switch is off."""
    autonomous_execution_check(client=client, actor=actor)
    with client_risk_lock(client):
        with broker_services.broker_session() as broker:
            existing = OrderRow.objects.filter(client_order_id=order.client_order_id).first()
            if existing is not None:
                outcome = _existing_order_outcome(existing, broker)
                if outcome is not None:
                    return outcome

            snapshot = book_sync(client=client, broker=broker)
            quotes = {**snapshot.quotes,
                      **broker_services.quotes_for(broker=broker, instruments=[leg.instrument for leg in order.legs])}
            decision, row = pretrade_decide(client=client, order=order, snapshot=snapshot, quotes=quotes,
                                            actor=actor, purpose=purpose, broker_name=broker.name)
            if not decision.accepted:
                return SubmissionResult(decision=decision, order=None, status=None, error=None)

            try:
                status = broker.place_order(order)
            except BrokerError as exc:
                broker_services.order_mark_failed(row=row, error=exc)
                audit.audit_record(client_id=client.client_id, actor_type="system", actor_id=broker.name,
                                   kind=kinds.BROKER_FAILED, payload=exc.payload())
                return SubmissionResult(decision=decision, order=row, status=None, error=exc)
            broker_services.order_status_apply(row=row, status=status)
            after = book_sync(client=client, broker=broker)
            row.refresh_from_db()  # the sync may have found it filled since (a resting order)
            audit.audit_record(
                client_id=client.client_id, actor_type=actor.type, actor_id=actor.id, kind=kinds.ORDER_EXECUTED,
                payload={"client_order_id": order.client_order_id, "state": status.state,
                         "filled_quantity": status.filled_quantity,
                         "average_fill_price": status.average_fill_price,
                         "fills": [fill.fill_id for fill in after.new_fills]},
            )
            return SubmissionResult(decision=decision, order=row, status=status, error=None)


class OrderNotFound(Exception):
    pass


class OrderNotWorking(Exception):
    """The order is finished (filled, cancelled, rejected): there is nothing left to cancel."""

    def __init__(self, order: OrderRow, message: str) -> None:
        super().__init__(message)
        self.order = order


def _order_event(*, client: Client, row: OrderRow, event: str, actor: Actor, reason: str) -> None:
    publish_event(client_id=client.client_id, type="order",
                  data={"event": event, "client_order_id": row.client_order_id, "state": row.state,
                        "filled_quantity": row.filled_quantity, "by": actor.id, "reason": reason})


def _order_cancel_at_broker(*, client: Client, row: OrderRow, broker: Broker, actor: Actor, reason: str) -> OrderRow:
    """The one way an order is cancelled, whoever asks (a trader, a halt): the broker is asked,
    the row takes the state it answers (a fill that raced the cancel included), and the outcome is
    audited with who and why and published as an `order` event. Raises BrokerError (audited as
    a broker failure) when the broker cannot be asked; the row is then left as it was."""
    try:
        status = broker.cancel_order(row.client_order_id)
    except BrokerError as exc:
        audit.audit_record(client_id=client.client_id, actor_type="system", actor_id=broker.name,
                           kind=kinds.BROKER_FAILED,
                           payload={**exc.payload(), "during": f"cancel {row.client_order_id}: {reason}"})
        raise
    before = row.state
    with transaction.atomic():
        broker_services.order_status_apply(row=row, status=status)
        cancelled = row.state == OrderRow.State.CANCELLED
        audit.audit_record(
            client_id=client.client_id, actor_type=actor.type, actor_id=actor.id,
            kind=kinds.ORDER_CANCELLED if cancelled else kinds.ORDER_CANCEL_FAILED,
            payload={"client_order_id": row.client_order_id, "reason": reason, "state_before": before,
                     "state": row.state, "filled_quantity": row.filled_quantity, "broker": broker.name,
                     "broker_message": row.message},
        )
    _order_event(client=client, row=row, event="cancelled" if cancelled else "cancel_failed", actor=actor,
                 reason=reason)
    return row


def order_cancel(*, client: Client, client_order_id: str, actor: Actor, reason: str) -> OrderRow:
    """A member's cancel of one working order (the current schema must be the client's). Allowed
    whatever the trading state: a halt stops new risk, never its removal.

    Raises OrderNotFound, OrderNotWorking (finished already, or filled before the cancel reached
    the broker: the row then says so) and BrokerError (the broker could not be asked; nothing
    changed)."""
    with client_risk_lock(client):
        row = OrderRow.objects.filter(client_order_id=client_order_id).first()
        if row is None:
            raise OrderNotFound(client_order_id)
        if row.state not in WORKING_STATES:
            raise OrderNotWorking(row, f"the order is {row.state}: nothing to cancel")
        with broker_services.broker_session() as broker:
            if row.state in (OrderRow.State.PENDING_SUBMIT, OrderRow.State.UNKNOWN) and \
                    broker.order_status(client_order_id) is None:
                row.state = OrderRow.State.REJECTED
                row.message = "never reached the broker; nothing to cancel"
                row.save(update_fields=["state", "message", "updated_at"])
                _order_event(client=client, row=row, event="closed", actor=actor, reason=reason)
                raise OrderNotWorking(row, "the order never reached the broker: nothing to cancel")
            row = _order_cancel_at_broker(client=client, row=row, broker=broker, actor=actor, reason=reason)
            book_sync(client=client, broker=broker)  # a fill that raced the cancel is in the book now
        if row.state != OrderRow.State.CANCELLED:
            raise OrderNotWorking(row, f"the broker reports the order {row.state} "
                                       f"({row.filled_quantity} filled): it could not be cancelled")
        return row


def _cancel_working_orders(*, client: Client, actor: Actor, reason: str) -> list[str]:
    """Cancel every working order of the current client (a halt); returns the ids cancelled. An
    order the broker cannot cancel is audited and skipped: the others are still cancelled."""
    rows = list(working_orders().order_by("created_at", "id"))
    if not rows:
        return []
    cancelled = []
    with broker_services.broker_session() as broker:
        for row in rows:
            try:
                row = _order_cancel_at_broker(client=client, row=row, broker=broker, actor=actor, reason=reason)
            except BrokerError:
                continue
            if row.state == OrderRow.State.CANCELLED:
                cancelled.append(row.client_order_id)
    return cancelled


def autonomous_execution_check(*, client: Client, actor: Actor) -> None:
    """The global kill switch: with AUTONOMOUS_ENABLED=false an agent never executes (it may still
    propose); a human's approval is not an autonomous execution."""
    if actor.type == "agent" and not settings.AUTONOMOUS_ENABLED:
        audit.audit_record(client_id=client.client_id, actor_type=actor.type, actor_id=actor.id,
                           kind=kinds.RISK_KILL_SWITCH, payload={"blocked": "autonomous execution"})
        raise ExecutionHalted("autonomous execution is disabled platform-wide (AUTONOMOUS_ENABLED=false)")


def emergency_halt_set(*, halted: bool, reason: str, actor: Actor) -> PlatformControl:
    """Halt (or lift the halt on) every client at once.

    Takes the platform lock exclusively: it waits for orders already past the governor, and every
    order after it sees the halt. Halting cancels every client's working orders. One audit row per
    client, and one platform row."""
    from django_tenants.utils import tenant_context

    with lock_waits_unbounded(), advisory_lock(PLATFORM_HALT_LOCK):  # a halt waits: it must take effect
        control = _platform_control_row()
        before = {"halted": control.emergency_halted, "reason": control.reason}
        control.emergency_halted = halted
        control.reason = reason
        control.changed_by = actor.id
        control.changed_at = timezone.now()
        control.save()
        kind = kinds.HALT_EMERGENCY if halted else kinds.HALT_EMERGENCY_LIFTED
        audit.audit_record(client_id="", actor_type=actor.type, actor_id=actor.id, kind=kind,
                           payload={"before": before, "halted": halted, "reason": reason})
        for client in Client.objects.order_by("client_id"):
            with tenant_context(client):
                cancelled = (_cancel_working_orders_safely(client=client, actor=actor, reason=f"{kind}: {reason}")
                             if halted else [])
            audit.audit_record(client_id=client.client_id, actor_type=actor.type, actor_id=actor.id, kind=kind,
                               payload={"halted": halted, "reason": reason, "cancelled_orders": cancelled})
            publish_event(client_id=client.client_id, type="halt",
                          data={"scope": "platform", "halted": halted, "reason": reason})
    return control


def client_halt_set(*, client: Client, halted: bool, reason: str, actor: Actor) -> RiskStateRecord:
    """An operator's halt of one client (the current schema must be that client's). It waits for
    the client's lock however long a cycle holds it, whatever bound the request set."""
    with lock_waits_unbounded(), advisory_lock(f"risk:{client.client_id}"):
        record = _risk_state_row()
        before = {"halted": record.operator_halted, "reason": record.operator_halt_reason}
        record.operator_halted = halted
        record.operator_halt_reason = reason
        record.operator_halt_by = actor.id
        record.operator_halt_at = timezone.now()
        record.save(update_fields=["operator_halted", "operator_halt_reason", "operator_halt_by", "operator_halt_at",
                                   "changed_at"])
        cancelled = (_cancel_working_orders_safely(client=client, actor=actor, reason=f"{kinds.HALT_CLIENT}: {reason}")
                     if halted else [])
        audit.audit_record(client_id=client.client_id, actor_type=actor.type, actor_id=actor.id,
                           kind=kinds.HALT_CLIENT if halted else kinds.HALT_CLIENT_LIFTED,
                           payload={"before": before, "halted": halted, "reason": reason,
                                    "cancelled_orders": cancelled})
        publish_event(client_id=client.client_id, type="halt",
                      data={"scope": "client", "halted": halted, "reason": reason})
    return record


def _cancel_working_orders_safely(*, client: Client, actor: Actor, reason: str) -> list[str]:
    """Cancelling is best effort: a halt must take effect even when a broker cannot be reached."""
    try:
        return _cancel_working_orders(client=client, actor=actor, reason=reason)
    except BrokerError as exc:
        audit.audit_record(client_id=client.client_id, actor_type="system", actor_id=exc.broker,
                           kind=kinds.BROKER_FAILED, payload={**exc.payload(), "during": reason})
        return []


class BreakerNotTripped(Exception):
    pass


def circuit_breaker_reset(*, client: Client, actor: Actor, note: str) -> RiskStateRecord:
    """An owner's reset of a tripped circuit breaker: back to ACTIVE, loss streak 0."""
    with advisory_lock(f"risk:{client.client_id}"):
        record = _risk_state_row()
        limits = risk_limits_get()
        tripped = (record.reason == governor.ReasonCode.CIRCUIT_BREAKER.value
                   or record.loss_streak >= limits.breaker_loss_count)
        if not tripped:
            raise BreakerNotTripped("the circuit breaker is not tripped")
        _state_change(client=client, record=record, to_state="ACTIVE", reason=f"breaker reset: {note}"[:200],
                      actor=actor, loss_streak=0)
    return record


def client_book_sync(*, client: Client) -> bool:
    """Scheduled: bring the client's book up to date from its broker — fills (and what they mean
    for the circuit breaker), positions, the daily loss baseline, the live greeks. Waits for any
    order in flight (the client's risk lock). Returns whether the broker answered."""
    from django_tenants.utils import tenant_context

    from audit.rls import rls_context

    with tenant_context(client), rls_context(client_id=client.client_id, is_admin=False), client_risk_lock(client):
        try:
            with broker_services.broker_session() as broker:
                snapshot = book_sync(client=client, broker=broker)
                _daily_pnl(_risk_state_row(), snapshot.valuation.unrealized_pnl, timezone.now())
        except BrokerError as exc:
            logger.warning("book sync failed", extra={"broker_error": exc.payload()})
            broker_services.connection_health_record(client=client, error=exc, health=None)
            return False
        broker_services.connection_health_record(client=client, error=None, health=snapshot.health)
        return True


def books_sync_schedule() -> list[str]:
    """Queue one book sync per active client, each sent from that client's schema (so the task
    runs there); returns the client ids queued."""
    from django_tenants.utils import tenant_context

    from risk.tasks import book_sync_task
    from tradingplatform.events import flag_set_once

    # One sync per client at a time in the queue: the flag lasts as long as the message may wait
    # (its expiry), so a client whose syncs cannot run gets no pile of them.
    period = settings.BOOK_SYNC_SECONDS
    queued = []
    for client in Client.objects.filter(status=Client.Status.ACTIVE).order_by("client_id"):
        if not flag_set_once(client_id=client.client_id, name="book-sync-queued", ttl_seconds=period):
            continue
        with tenant_context(client):
            book_sync_task.apply_async(args=[client.client_id], expires=period)
        queued.append(client.client_id)
    return queued
