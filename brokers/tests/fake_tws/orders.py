"""Orders at the fake TWS: placeOrder parsed field by field, the scripted outcome (fill, rest,
reject, or a working order misreported), fills with their executions, positions and commissions,
cancels, and the open/completed orders and executions a client asks for."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from brokers.tests.fake_tws.model import (
    ComboLegSpec,
    ErrorButWorking,
    FakeContract,
    FakeExecution,
    FakeOrder,
    Fill,
    Held,
    InactiveButWorking,
    PositionState,
    Reject,
    Session,
)
from brokers.tests.fake_tws.wire import BadRequest, Reader, error


class Orders:
    """The order handlers of FakeTWS (mixed into it)."""

    def _req_global_cancel(self, session: Session, r: Reader) -> None:
        r.version(1)  # (179+ adds the manual-cancel fields)
        r.done()
        for order in self._orders.values():
            if not order.is_done:
                order.status = "Cancelled"
                owner = self._session_of(order.client_id)
                if owner is not None:
                    self._send(owner, self._order_status_fields(order))
                    self._send(owner, error(order.order_id, 202, "Order Canceled - reason:"))

    def _place_order(self, session: Session, r: Reader) -> None:
        order_id = r.int()
        wanted = r.contract()
        r.skip(2)  # secIdType, secId
        action, quantity, order_type = r.str(), r.float(), r.str()
        limit_price, _aux, tif = r.float(), r.float(), r.str()
        r.skip(4)  # ocaGroup, account, openClose, origin
        order_ref = r.str()
        r.skip(8)  # transmit, parentId, blockOrder, sweepToFill, displaySize, triggerMethod,
        # outsideRth, hidden
        legs: list[ComboLegSpec] = []
        if wanted["secType"] == "BAG":
            for _ in range(r.int()):
                leg = r.skip(8)
                legs.append(ComboLegSpec(int(leg[0]), int(leg[1]), leg[2], leg[3]))
            r.skip(r.int())  # order combo leg prices
            r.skip(2 * r.int())  # smart combo routing params
        r.skip(7)  # sharesAllocation, discretionaryAmt, goodAfterTime, goodTillDate, FA group,
        # method, percentage (no faProfile from 177 on)
        r.skip(22)  # modelCode .. volatilityType
        if r.str():  # deltaNeutralOrderType
            r.skip(1 + 8)
        else:
            r.skip(1)
        r.skip(6)  # continuousUpdate .. scaleSubsLevelSize
        increment = r.float()
        if increment is not None and 0 < increment:
            r.skip(7)
        r.skip(3)  # scaleTable, activeStartTime, activeStopTime
        if r.str():  # hedgeType
            r.skip(1)
        r.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
        if r.int():  # delta-neutral contract
            r.skip(3)
        if r.str():  # algoStrategy
            r.skip(2 * r.int())
        r.skip(6)  # algoId, whatIf, orderMiscOptions, solicited, randomizeSize, randomizePrice
        if order_type in ("PEG BENCH", "PEGBENCH"):
            r.skip(5)
        if r.int():
            raise BadRequest("order conditions are not modelled by the fake")
        r.skip(19)  # adjustedOrderType .. usePriceMgmtAlgo
        r.skip(5)  # duration, postToAts, autoCancelParent, advancedErrorOverride, manualOrderTime
        if wanted["exchange"] == "IBKRATS":
            r.skip(1)
        if order_type in ("PEG BEST", "PEGBEST"):
            r.skip(2)
            if r.fields[r.at - 1] == "Infinite":
                r.skip(2)
        elif order_type in ("PEG MID", "PEGMID"):
            r.skip(2)
        r.done()

        key = (session.client_id, order_id)
        if key in self._orders:
            self._send(session, error(order_id, 103, "Duplicate order id"))
            return
        if quantity is None or quantity <= 0:
            self._send(session, error(order_id, 434, "The order size cannot be zero."))
            return
        if order_type == "LMT" and limit_price is None:
            self._send(session, error(order_id, 321, "Error validating request:-'bN' : cause - "
                                                     "The price field is required."))
            return
        contract = None
        if wanted["secType"] != "BAG":
            contract = self._one_contract(session, order_id, wanted)
            if contract is None:
                return
        self._next_order_id = max(self._next_order_id, order_id + 1)
        order = FakeOrder(
            order_id=order_id, client_id=session.client_id, perm_id=next(self._perm_ids),
            contract=contract, symbol=wanted["symbol"], exchange=wanted["exchange"], legs=legs,
            action=action, quantity=quantity, order_type=order_type, limit_price=limit_price,
            tif=tif, order_ref=order_ref)
        self._orders[key] = order
        action_taken = self._actions.popleft() if self._actions else Fill()
        if isinstance(action_taken, Reject):
            order.status = "Cancelled"
            self._send(session, error(order_id, action_taken.code, action_taken.message))
            return
        if isinstance(action_taken, Held):
            self._held.append((session, order))
            return
        if isinstance(action_taken, InactiveButWorking | ErrorButWorking):
            order.status = "Inactive" if isinstance(action_taken, InactiveButWorking) else "Submitted"
            self._send(session, self._open_order_fields(order))
            self._send(session, self._order_status_fields(order))
            if isinstance(action_taken, ErrorButWorking):
                self._send(session, error(order_id, action_taken.code, action_taken.message))
            order.status = "Submitted"
            return
        order.status = "Submitted"
        self._send(session, self._open_order_fields(order))
        self._send(session, self._order_status_fields(order))
        if isinstance(action_taken, Fill):
            self._fill(order, action_taken)

    def _release_held(self) -> None:
        for session, order in self._held:
            order.status = "Submitted"
            if session in self._sessions:
                self._send(session, self._open_order_fields(order))
                self._send(session, self._order_status_fields(order))
        self._held.clear()
        self._flush()

    def _fill(self, order: FakeOrder, action: Fill) -> None:
        price = action.price if action.price is not None else order.limit_price
        if price is None:
            price = self._quotes[order.contract.con_id][2] if order.contract else 0.0
        now = datetime.now(UTC)
        side = "BOT" if order.action == "BUY" else "SLD"
        remaining = order.quantity - order.filled
        shares = remaining if action.quantity is None else min(action.quantity, remaining)
        filled = order.filled + shares
        average = (order.avg_fill_price * order.filled + price * shares) / filled
        executions: list[FakeExecution] = []
        if order.contract is not None:
            executions.append(self._execution(order, order.contract, side, shares, price,
                                              now, action.commission_per_contract))
        else:
            leg_prices = action.leg_prices or {}
            for i, leg in enumerate(order.legs):
                leg_side = "BOT" if (leg.action == "BUY") == (order.action == "BUY") else "SLD"
                leg_price = leg_prices.get(leg.con_id, price if i == 0 else 0.0)
                executions.append(self._execution(
                    order, self._contracts[leg.con_id], leg_side, shares * leg.ratio,
                    leg_price, now, action.commission_per_contract))
            executions.append(FakeExecution(self._exec_id(order), order, None, side,
                                            shares, price, now, 0.0))
        # TWS reports the order's running totals with each of its executions (the order's own
        # line: the contract's, or a combo's BAG summary; a combo's leg lines keep their own).
        executions = [replace(e, cum_quantity=filled, avg_price=average)
                      if e.contract is None or order.contract is not None else e for e in executions]
        order.filled, order.avg_fill_price = filled, average
        order.status = "Filled" if filled >= order.quantity else "Submitted"
        self._executions.extend(executions)
        session = self._session_of(order.client_id)
        if session is None:
            return  # the client learns about it from reqExecutions after reconnecting
        for execution in executions:
            self._send(session, self._exec_fields(-1, execution))
        self._send(session, self._order_status_fields(order))
        for execution in executions:
            self._send(session, self._commission_fields(execution))

    def _execution(self, order: FakeOrder, contract: FakeContract, side: str, shares: float,
                   price: float, now: datetime, commission_per_contract: float) -> FakeExecution:
        signed = shares if side == "BOT" else -shares
        position = self._positions.setdefault(contract.con_id, PositionState())
        realized: float | None = None
        if position.quantity and (position.quantity > 0) != (signed > 0):
            closed = min(abs(signed), abs(position.quantity))
            direction = 1 if position.quantity > 0 else -1
            realized = closed * direction * (price - position.average_price) * float(
                contract.multiplier)
        new_quantity = position.quantity + signed
        if new_quantity == 0:
            position.average_price = 0.0
        elif position.quantity == 0 or (position.quantity > 0) != (new_quantity > 0):
            position.average_price = price
        elif (position.quantity > 0) == (signed > 0):
            position.average_price = (position.average_price * abs(position.quantity)
                                      + price * abs(signed)) / abs(new_quantity)
        position.quantity = new_quantity
        return FakeExecution(self._exec_id(order), order, contract, side, shares, price, now,
                             commission_per_contract * shares, realized)

    def _exec_id(self, order: FakeOrder) -> str:
        return f"0000{order.perm_id:08x}.{next(self._exec_seq):08d}.01.01"

    def _cancel_order(self, session: Session, r: Reader) -> None:
        r.version(1)
        order_id = r.int()
        r.str()  # manualOrderCancelTime (169+)
        r.done()
        order = self._orders.get((session.client_id, order_id))
        if order is None:
            self._send(session, error(order_id, 10147, f"OrderId {order_id} that needs to be "
                                                       f"cancelled is not found."))
        elif order.is_done:
            self._send(session, error(order_id, 10148,
                                      f"OrderId {order_id} that needs to be cancelled cannot be "
                                      f"cancelled, state: {order.status}."))
        else:
            order.status = "Cancelled"
            self._send(session, self._order_status_fields(order))
            self._send(session, error(order_id, 202, "Order Canceled - reason:"))

    def _req_open_orders(self, session: Session, r: Reader) -> None:
        r.version(1)
        r.done()
        self._send_open_orders(session, lambda o: o.client_id == session.client_id)

    def _req_all_open_orders(self, session: Session, r: Reader) -> None:
        r.version(1)
        r.done()
        self._send_open_orders(session, lambda o: True)

    def _send_open_orders(self, session: Session, keep: Callable[[FakeOrder], bool]) -> None:
        for order in self._orders.values():
            if keep(order) and not order.is_done:
                self._send(session, self._open_order_fields(order))
                self._send(session, self._order_status_fields(order))
        self._send(session, [53, 1])

    def _req_completed_orders(self, session: Session, r: Reader) -> None:
        r.int()  # apiOnly
        r.done()
        for order in self._orders.values():
            if order.is_done:
                self._send(session, self._completed_order_fields(order))
        self._send(session, [102])

    def _req_executions(self, session: Session, r: Reader) -> None:
        r.version(3)
        req_id = r.int()
        r.skip(7)  # filter: clientId, acctCode, time, symbol, secType, exchange, side
        r.done()
        for execution in self._executions:
            self._send(session, self._exec_fields(req_id, execution))
        for execution in self._executions:
            self._send(session, self._commission_fields(execution))
        self._send(session, [55, 1, req_id])
