"""The fake TWS's answers to every request but orders, by message id (orders: `orders.py`).

Market data is served like IB does for an account:
- `market_data_lines` (default 100, IB's minimum allocation) bounds the simultaneous reqMktData
  subscriptions of all sessions together; one more is refused with error 101 ("Max number of
  tickers has been reached"); `cancelMktData` releases a line (an unknown ticker id: error 300);
- `set_market_data(subscribed=..., market_open=...)`: an account without the live subscription
  answers a live (1) or frozen (2) request with error 354 and no ticks; with delayed (3) or
  delayed-frozen (4) asked by `reqMarketDataType` it answers notice 10167 and serves delayed tick
  types (66/67/68, option computation 83) with `marketDataType` 3, or 4 while the market is
  closed. A subscribed account serves live ticks (1/2/4, 13); while the market is closed a live
  request gets no bid/ask and a frozen (2) or delayed-frozen (4) one gets the last quote marked 2.
  Each subscription starts with `tickReqParams` (81) and `marketDataType` (58) like TWS.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from brokers.tests.fake_tws.model import DELAYED, DELAYED_FROZEN, FROZEN, LIVE, FakeContract, Session
from brokers.tests.fake_tws.wire import Reader, error, num

FARM_NOTICES = (  # what TWS says to every client after startApi when its farms are up
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefil"),
)
_LIVE_TICKS = {"bid": 1, "ask": 2, "last": 4, "model": 13}
_DELAYED_TICKS = {"bid": 66, "ask": 67, "last": 68, "model": 83}
NOT_SUBSCRIBED_354 = (
    "Requested market data is not subscribed. Check API status by selecting the Account menu then "
    "under Management choose Market Data Subscription Manager and/or Delayed market data is "
    "available.")
DELAYED_10167 = "Requested market data is not subscribed. Displaying delayed market data."
NO_SECURITY_DEFINITION_200 = "No security definition has been found for the request"


class Handlers:
    """The request handlers of FakeTWS (mixed into it), and the table of them by message id."""

    def _handlers(self) -> dict[int, Callable[[Session, Reader], None]]:
        return {
            71: self._start_api, 1: self._req_mkt_data, 2: self._cancel_mkt_data,
            59: self._req_market_data_type, 3: self._place_order, 4: self._cancel_order,
            5: self._req_open_orders, 16: self._req_all_open_orders, 7: self._req_executions,
            9: self._req_contract_details, 61: self._req_positions, 64: self._cancel_positions,
            62: self._req_account_summary, 63: self._cancel_account_summary,
            6: self._req_account_updates, 76: self._req_account_updates_multi,
            77: self._cancel_account_updates_multi, 78: self._req_sec_def_opt_params,
            99: self._req_completed_orders, 49: self._req_current_time, 8: self._req_ids,
            15: self._req_auto_open_orders, 17: self._req_managed_accounts,
            58: self._req_global_cancel,
        }

    def _start_api(self, session: Session, r: Reader) -> None:
        r.version(2)
        client_id = r.int()
        r.str()  # optional capabilities
        r.done()
        if any(s.client_id == client_id for s in self._sessions if s is not session):
            self._send(session, error(-1, 326, "Unable to connect as the client id is already "
                                               "in use. Retry with a unique client id."))
            self._flush()
            session.writer.close()
            self._sessions.remove(session)
            return
        session.client_id = client_id
        self._send(session, [9, 1, self._next_order_id])
        self._send(session, [15, 1, self.account])
        for code, message in FARM_NOTICES:
            self._send(session, error(-1, code, message))
        if not self._link_up:
            self._send(session, error(-1, 1100, "Connectivity between IB and Trader Workstation "
                                                "has been lost."))

    def _req_ids(self, session: Session, r: Reader) -> None:
        r.version(1)
        r.int()
        r.done()
        self._send(session, [9, 1, self._next_order_id])

    def _req_auto_open_orders(self, session: Session, r: Reader) -> None:
        r.version(1)
        r.int()
        r.done()

    def _req_managed_accounts(self, session: Session, r: Reader) -> None:
        r.version(1)
        r.done()
        self._send(session, [15, 1, self.account])

    def _req_current_time(self, session: Session, r: Reader) -> None:
        r.version(1)
        r.done()
        self._send(session, [49, 1, int(datetime.now(UTC).timestamp())])

    def _req_market_data_type(self, session: Session, r: Reader) -> None:
        r.version(1)
        wanted = r.int()
        r.done()
        if wanted not in (LIVE, FROZEN, DELAYED, DELAYED_FROZEN):
            self._send(session, error(-1, 321, f"Error validating request:-'bM' : cause - "
                                               f"Invalid market data type {wanted}"))
            return
        session.market_data_type = wanted

    def _req_mkt_data(self, session: Session, r: Reader) -> None:
        r.version(11)
        req_id = r.int()
        wanted = r.contract()
        if wanted["secType"] == "BAG":
            r.skip(4 * r.int())
        if r.int():  # delta-neutral contract
            r.skip(3)
        generic_ticks, _snapshot, _regulatory, _options = r.str(), r.int(), r.int(), r.str()
        r.done()
        if any(req_id in s.tickers for s in self._sessions):
            self._send(session, error(req_id, 322, "Error processing request:-'bM' : cause - "
                                                   "Duplicate ticker id"))
            return
        contract = self._one_contract(session, req_id, wanted)
        if contract is None:
            return
        if self._lines_in_use() >= self.market_data_lines:
            self._send(session, error(req_id, 101, "Max number of tickers has been reached"))
            return
        served = self._served_type(session.market_data_type)
        if served is None:
            self._send(session, error(req_id, 354, NOT_SUBSCRIBED_354))
            return
        session.tickers[req_id] = contract.con_id
        self._max_lines_used = max(self._max_lines_used, self._lines_in_use())
        if served in (DELAYED, DELAYED_FROZEN):
            self._send(session, error(req_id, 10167, DELAYED_10167))
        self._send(session, [81, req_id, num(contract.min_tick), "", 3])
        self._send(session, [58, 1, req_id, served])
        ticks = _DELAYED_TICKS if served in (DELAYED, DELAYED_FROZEN) else _LIVE_TICKS
        book = served != LIVE or self._market_open  # a closed market has no live bid/ask
        if contract.con_id in self._quotes and book:
            bid, ask, last, bid_size, ask_size = self._quotes[contract.con_id]
            self._send(session, [1, 6, req_id, ticks["bid"], bid, bid_size, 0])
            self._send(session, [1, 6, req_id, ticks["ask"], ask, ask_size, 0])
            self._send(session, [1, 6, req_id, ticks["last"], last, 1, 0])
        if contract.con_id in self._greeks and book and "106" in generic_ticks.split(","):
            iv, delta, price, gamma, vega, theta, und = self._greeks[contract.con_id]
            self._send(session, [21, req_id, ticks["model"], 0, iv, delta, price, 0, gamma, vega,
                                 theta, und])

    def _served_type(self, asked: int) -> int | None:
        """The data type IB serves for what the session asked, or None (error 354)."""
        if self._subscribed:
            if asked in (FROZEN, DELAYED_FROZEN) and not self._market_open:
                return FROZEN
            return LIVE
        if asked in (LIVE, FROZEN):
            return None
        return DELAYED_FROZEN if asked == DELAYED_FROZEN and not self._market_open else DELAYED

    def _cancel_mkt_data(self, session: Session, r: Reader) -> None:
        r.version(2)
        req_id = r.int()
        r.done()
        if session.tickers.pop(req_id, None) is None:
            self._send(session, error(req_id, 300, f"Can't find EId with tickerId:{req_id}"))

    def _req_contract_details(self, session: Session, r: Reader) -> None:
        r.version(8)
        req_id = r.int()
        wanted = r.contract()
        include_expired = bool(r.int())
        r.skip(3)  # secIdType, secId, issuerId (176+)
        r.done()
        found = self._matching(wanted, include_expired=include_expired)
        if not found:
            self._send(session, error(req_id, 200, NO_SECURITY_DEFINITION_200))
            return
        for contract in found:
            self._send(session, self._contract_details_fields(req_id, contract))
        self._send(session, [52, 1, req_id])

    def _one_contract(self, session: Session, req_id: int,
                      wanted: dict[str, str]) -> FakeContract | None:
        """The one unexpired contract a request names, or None after answering error 200."""
        found = self._matching(wanted, include_expired=False)
        if len(found) != 1:
            self._send(session, error(req_id, 200, NO_SECURITY_DEFINITION_200))
            return None
        return found[0]

    def _matching(self, wanted: dict[str, str], *, include_expired: bool) -> list[FakeContract]:
        """Like TWS: a conId names one contract; otherwise every given field must match."""
        con_id = int(wanted["conId"] or 0)
        strike = float(wanted["strike"]) if wanted["strike"] else 0.0
        expiry, right = wanted["lastTradeDateOrContractMonth"], wanted["right"]
        today = datetime.now(UTC).strftime("%Y%m%d")

        def matches(c: FakeContract) -> bool:
            if not include_expired and c.last_trade_date < today:
                return False
            if con_id:
                return c.con_id == con_id
            return ((not wanted["symbol"] or c.symbol == wanted["symbol"])
                    and (not wanted["secType"] or c.sec_type == wanted["secType"])
                    and (not expiry or expiry in (c.last_trade_date, c.contract_month))
                    and (not strike or c.strike == strike)
                    and (not right or c.right == right[0])
                    and (not wanted["multiplier"]
                         or float(c.multiplier) == float(wanted["multiplier"]))
                    and (not wanted["exchange"] or c.exchange == wanted["exchange"])
                    and (not wanted["currency"] or c.currency == wanted["currency"])
                    and (not wanted["localSymbol"] or c.local_symbol == wanted["localSymbol"])
                    and (not wanted["tradingClass"]
                         or c.trading_class == wanted["tradingClass"]))

        return [c for c in self._contracts.values() if matches(c)]

    def _req_positions(self, session: Session, r: Reader) -> None:
        r.version(1)
        r.done()
        for con_id, position in self._positions.items():
            contract = self._contracts[con_id]
            avg_cost = position.average_price * float(contract.multiplier)
            self._send(session, [61, 3, self.account, *contract.wire(),
                                 num(position.quantity), num(avg_cost)])
        self._send(session, [62, 1])

    def _cancel_positions(self, session: Session, r: Reader) -> None:
        r.version(1)
        r.done()

    def _req_account_summary(self, session: Session, r: Reader) -> None:
        r.version(1)
        req_id, _group, tags = r.int(), r.str(), set(r.str().split(","))
        r.done()
        for tag, value in self.account_values.items():
            if tag in tags or "All" in tags:
                self._send(session, [63, 1, req_id, self.account, tag, value, "USD"])
        self._send(session, [64, 1, req_id])

    def _cancel_account_summary(self, session: Session, r: Reader) -> None:
        r.version(1)
        r.int()
        r.done()

    def _req_account_updates(self, session: Session, r: Reader) -> None:
        r.version(2)
        subscribe, _account = r.int(), r.str()
        r.done()
        if subscribe:
            for tag, value in self.account_values.items():
                self._send(session, [6, 2, tag, value, "USD", self.account])
            self._send(session, [54, 1, self.account])

    def _req_account_updates_multi(self, session: Session, r: Reader) -> None:
        r.version(1)
        req_id = r.int()
        r.skip(3)  # account, modelCode, ledgerAndNLV
        r.done()
        self._send(session, [74, 1, req_id])

    def _cancel_account_updates_multi(self, session: Session, r: Reader) -> None:
        r.version(1)
        r.int()
        r.done()

    def _req_sec_def_opt_params(self, session: Session, r: Reader) -> None:
        req_id, symbol, fut_fop_exchange, sec_type, under_con_id = (
            r.int(), r.str(), r.str(), r.str(), r.int())
        r.done()
        if self._option_parameter_failures:
            self._option_parameter_failures -= 1
            self._send(session, error(req_id, 200, NO_SECURITY_DEFINITION_200))
            return
        today = datetime.now(UTC).strftime("%Y%m%d")
        under = self._contracts.get(under_con_id)
        classes: dict[tuple[str, str, str], tuple[set[str], set[float]]] = {}
        if under is not None and under.symbol == symbol and under.sec_type == sec_type:
            for c in self._contracts.values():
                if (c.sec_type == "FOP" and c.under_con_id == under_con_id
                        and c.last_trade_date >= today
                        and (not fut_fop_exchange or c.exchange == fut_fop_exchange)):
                    expiries, strikes = classes.setdefault(
                        (c.exchange, c.trading_class, c.multiplier), (set(), set()))
                    expiries.add(c.last_trade_date)
                    strikes.add(c.strike)
        for (exchange, trading_class, multiplier), (expiries, strikes) in classes.items():
            self._send(session, [75, req_id, exchange, under_con_id, trading_class, multiplier,
                                 len(expiries), *sorted(expiries), len(strikes),
                                 *(num(s) for s in sorted(strikes))])
        self._send(session, [76, req_id])
