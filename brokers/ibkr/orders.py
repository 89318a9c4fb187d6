"""The order and account half of `IBKRBroker`: placing, cancelling and asking for orders,
fills, positions and the account summary.

A mixin: it runs on the broker's plumbing (`_run`, `_client`, `_ensure_connected`, `_resync`,
`_qualified`, `_instrument_for`, `link`, `_synced`, `_snapshot_lock`), defined in broker.py.

Safety properties:
- our client order id travels in `Order.orderRef`; a live session that loaded TWS's orders at
  connect and follows its events answers "never seen" from what it knows, any other asks TWS
  again first, so a retry after an unknown outcome never sends a second order;
- every order names its account (the configured one, or the login's only one);
- "Inactive", and ib_async's local "Cancelled" after an order error, are not believed: TWS is
  asked by orderRef (open and completed orders, executions) before an order is declared dead.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import datetime

from ib_async import Fill as IBFill
from ib_async import Trade

from brokers.domain import AccountSummary, Fill, OrderRequest, OrderStatus, Position
from brokers.ibkr.contracts import combo_for, ib_order_for, ib_value_set, order_state_from_ib
from brokers.ibkr.failures import Failure as _Failure
from brokers.ibkr.failures import IBFailure as _IBFailure

logger = logging.getLogger(__name__)

_PENDING_STATES = frozenset({"PendingSubmit", "ApiPending", ""})


class OrdersAndAccount:
    # ------------------------------------------------------------------ orders

    def place_order(self, order: OrderRequest) -> OrderStatus:
        problem = _order_problem(order)
        if problem:
            raise self._error("place_order", "invalid_order", problem, False,
                              {"client_order_id": order.client_order_id})
        timeout = self._config.request_timeout_seconds * 2 + self._config.order_ack_timeout_seconds
        return self._run("place_order", lambda: self._place(order), timeout=timeout)

    async def _place(self, request: OrderRequest) -> OrderStatus:
        await self._ensure_connected()
        cid = request.client_order_id
        # a live session that loaded TWS's orders at connect and follows its events knows every
        # order it may have sent; one that is not in sync asks TWS again before saying "new"
        existing = await self._status_async(cid, trust_local=self._synced)
        if existing is not None:
            logger.info("IBKR order %s already known (%s); not sending again", cid, existing.state)
            return existing
        if self.link.link_down is not None:
            raise _Failure("connectivity_lost", "TWS has no link to IB; order not sent",
                           retryable=True, context={"client_order_id": cid,
                                                    "ib_code": self.link.link_down.code})
        account = self._order_account()
        if request.is_combo:
            con_ids = [int((await self._qualified(leg.instrument)).conId) for leg in request.legs]
            try:
                contract, units = combo_for(request.legs, con_ids, self._settings)
            except ValueError as e:
                raise _Failure("invalid_order", str(e), retryable=False,
                               context={"client_order_id": cid}) from None
            ib_order = ib_order_for(request, units, "BUY")
        else:
            (leg,) = request.legs
            contract = await self._qualified(leg.instrument)
            ib_order = ib_order_for(request, leg.quantity, leg.side)
        ib_order.account = account
        trade = self._client.placeOrder(contract, ib_order)
        logger.info("IBKR placed %s as order %d", cid, trade.order.orderId)
        try:
            await self._wait_for(trade, lambda: trade.orderStatus.status not in _PENDING_STATES,
                                 self._config.order_ack_timeout_seconds)
        except TimeoutError:
            raise _Failure("order_outcome_unknown",
                           "TWS did not acknowledge the order in time; ask order_status before "
                           "sending it again", retryable=True,
                           context={"client_order_id": cid,
                                    "broker_order_id": str(trade.order.orderId)}) from None
        status = self._status_from_trade(cid, trade)
        if _maybe_dead(status):
            # "Inactive", or ib_async's local "Cancelled" after an error: ask TWS by orderRef
            await self._resync()
            trade = self._find_trade(cid) or trade
            status = self._status_from_trade(cid, trade)
        if _maybe_dead(status):
            code = _last_error_code(trade)
            if code is not None:
                raise _IBFailure(code, status.message.split(": ", 1)[-1],
                                 {"client_order_id": cid,
                                  "broker_order_id": status.broker_order_id})
        return status

    def _order_account(self) -> str:
        """The account every order names: the configured one, or the login's only account."""
        accounts = self._client.managedAccounts()
        if self._config.account:
            if accounts and self._config.account not in accounts:
                raise _Failure("account_not_managed", f"this login does not manage account "
                               f"{self._config.account}", retryable=False,
                               context={"accounts": accounts})
            return self._config.account
        if len(accounts) != 1:
            raise _Failure("account_required", "this login manages several accounts; set "
                           "`account` in the broker credentials", retryable=False,
                           context={"accounts": accounts})
        return accounts[0]

    async def _wait_for(self, trade: Trade, done: Callable[[], bool], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            await asyncio.wait_for(trade.statusEvent, remaining)

    def cancel_order(self, client_order_id: str) -> OrderStatus:
        timeout = self._config.request_timeout_seconds * 2 + self._config.order_ack_timeout_seconds
        return self._run("cancel_order", lambda: self._cancel(client_order_id), timeout=timeout)

    async def _cancel(self, cid: str) -> OrderStatus:
        await self._ensure_connected()
        status = await self._status_async(cid, trust_local=False)
        trade = self._find_trade(cid)
        if status is None:
            raise _Failure("order_not_found", f"IBKR never received order {cid}",
                           retryable=False, context={"client_order_id": cid})
        if trade is None or trade.isDone():
            return status
        self._client.cancelOrder(trade.order)
        try:
            await self._wait_for(trade, trade.isDone, self._config.order_ack_timeout_seconds)
        except TimeoutError:
            logger.warning("IBKR cancel of %s not confirmed in time", cid)
        return self._status_from_trade(cid, trade)

    def order_status(self, client_order_id: str) -> OrderStatus | None:
        return self._run("order_status", lambda: self._status_with_connect(client_order_id),
                         timeout=self._config.request_timeout_seconds * 2)

    async def _status_with_connect(self, cid: str) -> OrderStatus | None:
        await self._ensure_connected()
        return await self._status_async(cid, trust_local=False)

    async def _status_async(self, cid: str, *, trust_local: bool) -> OrderStatus | None:
        status = self._local_status(cid)
        if (status is None and not trust_local) or (status is not None and _maybe_dead(status)):
            # "never seen" and "dead" are only trustworthy after asking TWS again
            await self._resync()
            status = self._local_status(cid)
        return status

    def _local_status(self, cid: str) -> OrderStatus | None:
        trade = self._find_trade(cid)
        if trade is not None:
            return self._status_from_trade(cid, trade)
        executions = [f for f in self._client.fills()
                      if f.execution.orderRef == cid and f.contract.secType != "BAG"]
        if not executions:
            return None
        # only executions survived (the order itself is no longer listed): report what filled
        first = executions[0].execution
        fills = [f for f in executions if f.contract.conId == executions[0].contract.conId]
        quantity = sum(f.execution.shares for f in fills)
        return OrderStatus(client_order_id=cid, broker_order_id=str(first.orderId),
                           broker_perm_id=str(first.permId or ""), state="filled", filled_quantity=int(quantity),
                           average_fill_price=sum(f.execution.shares * f.execution.price
                                                  for f in fills) / quantity,
                           time=max(f.time for f in fills))

    def _find_trade(self, cid: str) -> Trade | None:
        matches = [t for t in self._client.trades() if t.order.orderRef == cid]
        # the live trade (with an order id) carries more than a completed-orders copy
        matches.sort(key=lambda t: (t.order.orderId > 0, t.order.permId))
        return matches[-1] if matches else None

    def _status_from_trade(self, cid: str, trade: Trade) -> OrderStatus:
        is_bag = trade.contract.secType == "BAG"
        own = [f for f in trade.fills if (f.contract.secType == "BAG") == is_bag]
        filled = max(trade.orderStatus.filled, sum(f.execution.shares for f in own),
                     trade.order.filledQuantity if ib_value_set(trade.order.filledQuantity) else 0.0)
        total = trade.order.totalQuantity
        average = trade.orderStatus.avgFillPrice or (
            sum(f.execution.shares * f.execution.price for f in own) / filled if own else 0.0)
        errors = [e for e in trade.log if e.errorCode]
        state = order_state_from_ib(trade.orderStatus.status, filled=filled, total=total,
                                    error_codes=frozenset(e.errorCode for e in errors))
        message = errors[-1].message if errors else ""
        broker_id = trade.order.orderId or trade.order.permId
        return OrderStatus(
            client_order_id=cid, broker_order_id=str(broker_id), state=state,
            broker_perm_id=str(trade.order.permId or trade.orderStatus.permId or ""),
            filled_quantity=int(filled), remaining_quantity=int(max(total - filled, 0)),
            average_fill_price=average if filled else None, message=message,
            time=trade.log[-1].time if trade.log else None)

    # ------------------------------------------------------------------ account

    def fills_since(self, since: datetime) -> list[Fill]:
        return self._run("fills_since", lambda: self._fills_since(since),
                         timeout=self._config.request_timeout_seconds * 3)

    async def _fills_since(self, since: datetime) -> list[Fill]:
        await self._ensure_connected()
        await self._client.reqExecutionsAsync()
        ib_fills = [f for f in self._client.fills()
                    if f.contract.secType in ("FUT", "FOP") and f.execution.time >= since]
        await self._wait_for_commissions(ib_fills)
        fills = [await self._fill_from_ib(f) for f in ib_fills]
        return sorted(fills, key=lambda f: (f.time, f.fill_id))

    async def _wait_for_commissions(self, ib_fills: list[IBFill]) -> None:
        # TWS sends each commission report shortly after its execution, sometimes after the end
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.commission_wait_seconds
        while any(not f.commissionReport.execId for f in ib_fills):
            if loop.time() >= deadline:
                missing = [f.execution.execId for f in ib_fills if not f.commissionReport.execId]
                logger.warning("IBKR commission reports missing for %s; reporting 0", missing)
                return
            await asyncio.sleep(0.01)

    async def _fill_from_ib(self, f: IBFill) -> Fill:
        realized = f.commissionReport.realizedPNL
        return Fill(
            fill_id=f.execution.execId, client_order_id=f.execution.orderRef,
            instrument=await self._instrument_for(f.contract),
            side="BUY" if f.execution.side == "BOT" else "SELL",
            quantity=int(f.execution.shares), price=f.execution.price,
            commission=f.commissionReport.commission, time=f.execution.time,
            # ib_async reports "no realized P&L" (an opening fill) as 0.0
            realized_pnl=realized if realized and ib_value_set(realized) else None)

    def positions(self) -> list[Position]:
        return self._run("positions", self._positions,
                         timeout=self._config.request_timeout_seconds * 2)

    async def _positions(self) -> list[Position]:
        await self._ensure_connected()
        assert self._snapshot_lock is not None
        async with self._snapshot_lock:
            ib_positions = await self._client.reqPositionsAsync()
        positions = []
        for p in ib_positions:
            if p.contract.secType not in ("FUT", "FOP") or not p.position:
                continue
            instrument = await self._instrument_for(p.contract)
            # IB's average cost of a future or option includes the multiplier
            positions.append(Position(instrument, int(p.position),
                                      p.avgCost / instrument.multiplier))
        return sorted(positions, key=lambda p: p.instrument.key)

    def account_summary(self) -> AccountSummary:
        return self._run("account_summary", self._account_summary)

    async def _account_summary(self) -> AccountSummary:
        await self._ensure_connected()
        account = (self._client.managedAccounts() or [""])[0]
        values = {v.tag: v for v in await self._client.accountSummaryAsync(account)}
        missing = [t for t in ("NetLiquidation", "InitMarginReq", "MaintMarginReq",
                               "AvailableFunds") if t not in values]
        if missing:
            raise _Failure("account_data_missing", f"TWS sent no {', '.join(missing)}",
                           retryable=True, context={"missing": missing})

        def number(tag: str) -> float | None:
            return float(values[tag].value) if tag in values else None

        return AccountSummary(
            currency=values["NetLiquidation"].currency or "USD",
            net_liquidation=float(values["NetLiquidation"].value),
            initial_margin=float(values["InitMarginReq"].value),
            maintenance_margin=float(values["MaintMarginReq"].value),
            available_funds=float(values["AvailableFunds"].value),
            realized_pnl=number("RealizedPnL"), unrealized_pnl=number("UnrealizedPnL"))


def _order_problem(order: OrderRequest) -> str:
    if not order.client_order_id:
        return "client_order_id is required"
    if not order.legs:
        return "an order needs at least one leg"
    if any(leg.quantity <= 0 for leg in order.legs):
        return "leg quantities must be positive"
    if order.order_type == "LMT" and (order.limit_price is None
                                      or not math.isfinite(order.limit_price)):
        return "a limit order needs a finite limit_price"
    return ""


def _maybe_dead(status: OrderStatus) -> bool:
    return status.state in ("rejected", "cancelled") and status.filled_quantity == 0


def _last_error_code(trade: Trade) -> int | None:
    codes = [e.errorCode for e in trade.log if e.errorCode]
    return codes[-1] if codes else None
