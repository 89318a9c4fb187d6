"""The messages the fake TWS sends, with exactly the fields TWS sends at server version 178
(ib_async's `decoder.py`, IB's `EDecoder`): no version field on contract details, open orders,
executions or order status; no `faProfile`; size rules on contract details; the PEG BEST/MID fields
on open and completed orders; `pendingPriceRevision` on executions; IB's "unset" double
(1.7976931348623157E308) where TWS sends one (errors carry `advancedOrderRejectJson`: see
`wire.error`)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from brokers.tests.fake_tws.model import FakeContract, FakeExecution, FakeOrder
from brokers.tests.fake_tws.wire import BAG_CON_ID, UNSET_DOUBLE, num, opt


class Messages:
    """The encoders of FakeTWS (mixed into it: they read its account and contracts)."""

    def _contract_details_fields(self, req_id: int, c: FakeContract) -> list[Any]:
        under = self._contracts.get(c.under_con_id)
        return [
            10, req_id, c.symbol, c.sec_type, c.last_trade_date, num(c.strike), c.right,
            c.exchange, c.currency, c.local_symbol, c.trading_class, c.trading_class, c.con_id,
            num(c.min_tick),  # no mdSizeMultiplier from 164 on
            c.multiplier, "LMT,MKT", c.exchange, 1, c.under_con_id, c.symbol, "",
            c.contract_month, "", "", "", "US/Central", "", "", "", "", 0,  # no secIds
            1, c.symbol, under.sec_type if under else "", "", c.last_trade_date, "",
            "1", "1", "1",  # minSize, sizeIncrement, suggestedSizeIncrement (164+)
        ]

    def _order_contract_fields(self, order: FakeOrder) -> list[Any]:
        if order.contract is not None:
            return order.contract.wire()
        return [BAG_CON_ID, order.symbol, "BAG", "", 0, "", "", order.exchange, "USD", "",
                order.symbol]

    def _combo_fields(self, order: FakeOrder) -> list[Any]:
        legs: list[Any] = [len(order.legs)]
        for leg in order.legs:
            legs += [leg.con_id, leg.ratio, leg.action, leg.exchange, 0, 0, "", -1]
        return legs

    def _open_order_fields(self, o: FakeOrder) -> list[Any]:
        return [
            5, o.order_id, *self._order_contract_fields(o),
            o.action, num(o.quantity), o.order_type, opt(o.limit_price), "", o.tif, "",
            self.account, "", 0, o.order_ref, o.client_id, o.perm_id, 0, 0, 0, "",
            "", "", "", "",  # sharesAllocation, faGroup, faMethod, faPercentage (no faProfile)
            *[""] * 29,  # modelCode .. deltaNeutralAuxPrice (no delta-neutral order type)
            *[""] * 6, "",  # continuousUpdate .. basisPointsType, comboLegsDescrip
            *self._combo_fields(o), 0, 0,  # order combo legs, smart routing params
            "", "", "",  # scale init/subs level, price increment
            "",  # hedgeType
            0, "", "", 0, 0,  # optOutSmartRouting, clearing account/intent, notHeld, no DNC
            "",  # algoStrategy
            0, 0, o.status, *[""] * 13, "", 0, 0,  # solicited, whatIf, state, randomize
            0,  # conditions
            *[""] * 16,  # adjustedOrderType .. usePriceMgmtAlgo
            "", 0, 0,  # duration (159), postToAts (160), autoCancelParent (162)
            "", "", "", "", "",  # minTradeQty .. midOffsetAtHalf (170)
        ]

    def _completed_order_fields(self, o: FakeOrder) -> list[Any]:
        return [
            101, *self._order_contract_fields(o),
            o.action, num(o.quantity), o.order_type, opt(o.limit_price), "", o.tif, "",
            self.account, "", 0, o.order_ref, o.perm_id, 0, 0, "", "", "", "", "",
            *[""] * 23,  # modelCode .. deltaNeutralAuxPrice (no faProfile from 177 on)
            "", "", "", "", "",  # continuousUpdate .. comboLegsDescrip
            *self._combo_fields(o), 0, 0,
            "", "", "",  # scale fields
            "",  # hedgeType
            "", "", 0, 0,  # clearing account/intent, notHeld, no DNC
            "",  # algoStrategy
            0, o.status, 0, 0,  # solicited, status, randomize size/price
            0,  # conditions
            "", "", "", 0, 0, "", num(o.filled), 0, 0, "", 0, 0, 0,
            datetime.now(UTC).strftime("%Y%m%d %H:%M:%S UTC"), o.status,
            "", "", "", "", "",  # minTradeQty .. midOffsetAtHalf (170)
        ]

    def _order_status_fields(self, o: FakeOrder) -> list[Any]:
        return [3, o.order_id, o.status, num(o.filled), num(o.quantity - o.filled),
                o.avg_fill_price, o.perm_id, 0, o.avg_fill_price, o.client_id, "", 0]

    def _exec_fields(self, req_id: int, e: FakeExecution) -> list[Any]:
        order = e.order
        contract = e.contract.wire() if e.contract else self._order_contract_fields(order)
        return [
            11, req_id, order.order_id, *contract, e.exec_id,
            e.time.strftime("%Y%m%d %H:%M:%S UTC"), self.account, order.exchange, e.side,
            num(e.shares), e.price, order.perm_id, order.client_id, 0,
            num(e.shares if e.cum_quantity is None else e.cum_quantity),
            e.price if e.avg_price is None else e.avg_price,
            order.order_ref, "", "", "", 1,
            0,  # pendingPriceRevision (178)
        ]

    def _commission_fields(self, e: FakeExecution) -> list[Any]:
        realized = UNSET_DOUBLE if e.realized_pnl is None else repr(e.realized_pnl)
        return [59, 1, e.exec_id, e.commission, "USD", realized, UNSET_DOUBLE, ""]
