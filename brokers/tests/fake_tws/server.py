"""A loopback stand-in for TWS / IB Gateway that speaks the real TWS socket protocol.

The unmodified `ib_async` client connects to it over TCP on 127.0.0.1. It negotiates server
version 178 (`MIN_SERVER_VER_PENDING_PRICE_REVISION`), the highest ib_async 2.1 offers and what it
gets from a current gateway. Every message it sends has exactly the fields TWS sends at that
version (ib_async's `decoder.py`, IB's `EDecoder`): no version field on contract details, open
orders, executions or order status; `advancedOrderRejectJson` on errors; no `faProfile`; size
rules on contract details; the PEG BEST/MID fields on open and completed orders;
`pendingPriceRevision` on executions; IB's "unset" double (1.7976931348623157E308) where TWS
sends one. Every request it parses is read field by field after ib_async's `client.py` for 178,
and must be consumed exactly: a request with a missing or extra field, a wrong version field or an
unknown message id is answered with IB's error 320 ("Error reading request") like TWS does, and
the fake keeps a list of them in `bad_requests` so a test can assert none happened
(`forget_bad_requests()` after sending some on purpose).

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

Scripting from tests (every method is thread-safe; state lives on the fake's own event loop):
- `list_future(...)` / `list_option(...)` register contracts and return their conIds;
- `set_quote(con_id, ...)` and `set_greeks(con_id, ...)` feed reqMktData (`drop_greeks` stops
  the option computation ticks of one contract);
- `script_next_order(Fill(...) | Rest() | Reject(code, message))` decides what happens to the next
  placeOrder (default: `Fill()` at the order's limit price);
- `fill_resting_order(order_ref, price)` fills a working order now, whether a client is connected
  or not (executions made "while disconnected" are served by the next reqExecutions);
- `send_error(code, message)` pushes an error/notice (1100, 1102, 2110, ...) to every client;
- `drop_connections()` closes client sockets; `stop()` also stops listening; `start()` listens
  again on the same port with every order, execution and position remembered;
- `messages(msg_id)` returns what clients sent (e.g. 3 = placeOrder) to assert on the wire;
- `lines_in_use` / `max_lines_used` tell how many market-data lines are (were at most) held.

Faults, as IB produces them:
- `set_link(up=False)` is TWS losing its link to IB: 1100 now and during every later handshake,
  until `set_link(up=True)` sends 1102;
- `hang_handshake = True`: accept TCP, read the greeting, never answer (a hung gateway);
- `frozen = True`: connected clients' requests are read and never answered (a TWS that hangs
  after the handshake, on a modal dialog say);
- pacing: more than 50 messages from one client in any one second are answered with error 100,
  like IB (`pacing_violations`, `max_messages_per_second`);
- a second client with a client id already connected gets 326 and is disconnected;
- `InactiveButWorking()` / `ErrorButWorking(code)` report a working order as Inactive, or send
  an error that ib_async takes for a cancel, while TWS keeps the order working;
- `new_trading_day()` is the daily / Sunday restart: clients dropped, completed orders and
  executions of the previous day no longer served;
- `send_error(10197, ...)` and the farm notices (2103/2105/2157) are plain notices.
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SERVER_VERSION = 178
BAG_CON_ID = 28812380  # IB's conId for every BAG contract
UNSET_DOUBLE = "1.7976931348623157E308"  # how TWS writes Double.MAX_VALUE ("no value")
FARM_NOTICES = (  # what TWS says to every client after startApi when its farms are up
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefil"),
)
LIVE, FROZEN, DELAYED, DELAYED_FROZEN = 1, 2, 3, 4
_LIVE_TICKS = {"bid": 1, "ask": 2, "last": 4, "model": 13}
_DELAYED_TICKS = {"bid": 66, "ask": 67, "last": 68, "model": 83}
NOT_SUBSCRIBED_354 = (
    "Requested market data is not subscribed. Check API status by selecting the Account menu then "
    "under Management choose Market Data Subscription Manager and/or Delayed market data is "
    "available.")
DELAYED_10167 = "Requested market data is not subscribed. Displaying delayed market data."


@dataclass(frozen=True)
class FakeContract:
    con_id: int
    symbol: str
    sec_type: str  # FUT, FOP
    last_trade_date: str  # YYYYMMDD
    exchange: str
    multiplier: str
    trading_class: str
    local_symbol: str
    strike: float = 0.0
    right: str = ""
    currency: str = "USD"
    under_con_id: int = 0
    min_tick: float = 0.25

    @property
    def contract_month(self) -> str:
        return self.last_trade_date[:6]

    def wire(self) -> list[Any]:
        """The 11 contract fields of openOrder/execDetails/position (no primaryExchange)."""
        return [self.con_id, self.symbol, self.sec_type, self.last_trade_date,
                _num(self.strike), self.right, self.multiplier, self.exchange, self.currency,
                self.local_symbol, self.trading_class]


@dataclass(frozen=True)
class ComboLegSpec:
    con_id: int
    ratio: int
    action: str
    exchange: str


@dataclass(frozen=True)
class Fill:
    """Fill the order completely at `price` (default: its limit price)."""

    price: float | None = None
    commission_per_contract: float = 1.25
    leg_prices: dict[int, float] | None = None  # combos: conId -> price per leg


@dataclass(frozen=True)
class Rest:
    """Accept the order and leave it working."""


@dataclass(frozen=True)
class Reject:
    code: int = 201
    message: str = "Order rejected - reason:"


@dataclass(frozen=True)
class InactiveButWorking:
    """Report the order Inactive to the client that placed it; TWS keeps it working."""


@dataclass(frozen=True)
class ErrorButWorking:
    """Send an order error (ib_async cancels the trade locally); TWS keeps it working."""

    code: int = 10349
    message: str = "Order TIF was set to DAY based on order preset."


OrderAction = Fill | Rest | Reject | InactiveButWorking | ErrorButWorking
PACING_LIMIT = 50  # messages per client in any one second


@dataclass
class FakeOrder:
    order_id: int
    client_id: int
    perm_id: int
    contract: FakeContract | None  # None for a BAG
    symbol: str
    exchange: str
    legs: list[ComboLegSpec]
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    tif: str
    order_ref: str
    status: str = "PreSubmitted"
    filled: float = 0.0
    avg_fill_price: float = 0.0

    @property
    def is_done(self) -> bool:
        return self.status in ("Filled", "Cancelled", "Inactive")


@dataclass
class FakeExecution:
    exec_id: str
    order: FakeOrder
    contract: FakeContract | None  # None: the BAG-level summary line of a combo
    side: str  # BOT / SLD
    shares: float
    price: float
    time: datetime
    commission: float
    realized_pnl: float | None = None


@dataclass
class _PositionState:
    quantity: float = 0.0
    average_price: float = 0.0


@dataclass
class _Session:
    writer: asyncio.StreamWriter
    client_id: int = -1
    outbox: list[bytes] = field(default_factory=list)
    received_at: deque[float] = field(default_factory=deque)
    market_data_type: int = LIVE  # what reqMarketDataType asked for; TWS starts at live
    tickers: dict[int, int] = field(default_factory=dict)  # reqMktData id -> conId


class _BadRequest(Exception):
    """A request that is not what TWS reads at this server version."""


class _Reader:
    """Reads one request's fields in order; `done()` insists every field was consumed."""

    def __init__(self, fields: list[str]) -> None:
        self.fields, self.at = fields, 1  # fields[0] is the message id

    def str(self) -> str:
        if self.at >= len(self.fields):
            raise _BadRequest(f"message {self.fields[0]} ends after {len(self.fields)} fields")
        value = self.fields[self.at]
        self.at += 1
        return value

    def int(self) -> int:
        text = self.str()
        try:
            return int(text) if text else 0
        except ValueError:
            raise _BadRequest(f"field {self.at - 1} of message {self.fields[0]} is not an "
                              f"integer: {text!r}") from None

    def float(self) -> float | None:
        text = self.str()
        if text in ("", UNSET_DOUBLE):
            return None
        if text == "Infinite":
            return float("inf")
        try:
            return float(text)
        except ValueError:
            raise _BadRequest(f"field {self.at - 1} of message {self.fields[0]} is not a "
                              f"number: {text!r}") from None

    def version(self, expected: int) -> None:
        got = self.int()
        if got != expected:
            raise _BadRequest(f"message {self.fields[0]} version {got}, TWS reads {expected}")

    def skip(self, count: int) -> list[str]:
        return [self.str() for _ in range(count)]

    def contract(self) -> dict[str, str]:
        names = ("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right",
                 "multiplier", "exchange", "primaryExchange", "currency", "localSymbol",
                 "tradingClass")
        return dict(zip(names, self.skip(len(names)), strict=True))

    def done(self) -> None:
        if self.at != len(self.fields):
            raise _BadRequest(f"message {self.fields[0]} has {len(self.fields) - self.at} "
                              f"unexpected trailing field(s)")


@dataclass
class FakeTWS:
    account: str = "DU1234567"
    host: str = "127.0.0.1"
    account_values: dict[str, str] = field(default_factory=lambda: {
        "NetLiquidation": "1000000.00", "InitMarginReq": "125000.00",
        "MaintMarginReq": "100000.00", "AvailableFunds": "875000.00",
        "RealizedPnL": "0.00", "UnrealizedPnL": "0.00",
    })
    market_data_lines: int = 100

    def __post_init__(self) -> None:
        self.port = 0
        self._contracts: dict[int, FakeContract] = {}
        self._quotes: dict[int, tuple[float, float, float, int, int]] = {}
        self._greeks: dict[int, tuple[float, float, float, float, float, float, float]] = {}
        self._orders: dict[tuple[int, int], FakeOrder] = {}
        self._executions: list[FakeExecution] = []
        self._positions: dict[int, _PositionState] = {}
        self._actions: deque[OrderAction] = deque()
        self._received: list[tuple[int, list[str]]] = []
        self._bad_requests: list[str] = []
        self._sessions: list[_Session] = []
        self._server: asyncio.base_events.Server | None = None
        self._next_order_id = 1
        self._link_up = True
        self.hang_handshake = False
        self.frozen = False
        self.pacing_violations = 0
        self.max_messages_per_second = 0  # from one client
        self.max_account_messages_per_second = 0  # from every client together
        self._account_received_at: deque[float] = deque()
        self._arrivals: list[tuple[str, float]] = []  # (message id, perf_counter) for benchmarks
        self._perm_ids = itertools.count(900_000_001)
        self._exec_seq = itertools.count(1)
        self._subscribed = True
        self._market_open = True
        self._max_lines_used = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-tws",
                                        daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- lifecycle

    def start(self, port: int | None = None) -> FakeTWS:
        """Listen on `port`, on the previous port after a stop(), or on an ephemeral one."""
        if port is not None:
            self.port = port
        self._call(self._start)
        return self

    def stop(self) -> None:
        """Stop listening and drop every client; all state is kept for the next start()."""
        self._call(self._stop)

    def drop_connections(self) -> None:
        self._call(self._drop_sessions)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FakeTWS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- scripting

    def list_future(self, *, con_id: int, symbol: str, last_trade_date: str, exchange: str,
                    multiplier: float, trading_class: str | None = None,
                    min_tick: float = 0.25) -> int:
        contract = FakeContract(
            con_id, symbol, "FUT", last_trade_date, exchange, f"{multiplier:g}",
            trading_class or symbol, f"{symbol}{_month_code(last_trade_date)}",
            min_tick=min_tick)
        self._call(lambda: self._contracts.__setitem__(con_id, contract))
        return con_id

    def list_option(self, *, con_id: int, under_con_id: int, last_trade_date: str, strike: float,
                    right: str, trading_class: str, min_tick: float = 0.05) -> int:
        def add() -> None:
            future = self._contracts[under_con_id]
            self._contracts[con_id] = FakeContract(
                con_id, future.symbol, "FOP", last_trade_date, future.exchange,
                future.multiplier, trading_class,
                f"{trading_class}{_month_code(last_trade_date)} {right}{strike:g}",
                strike=strike, right=right, under_con_id=under_con_id, min_tick=min_tick)
        self._call(add)
        return con_id

    def set_quote(self, con_id: int, *, bid: float, ask: float, last: float | None = None,
                  bid_size: int = 10, ask_size: int = 10) -> None:
        quote = (bid, ask, last if last is not None else (bid + ask) / 2, bid_size, ask_size)
        self._call(lambda: self._quotes.__setitem__(con_id, quote))

    def set_greeks(self, con_id: int, *, implied_vol: float, delta: float, gamma: float,
                   vega: float, theta: float, option_price: float,
                   underlying_price: float) -> None:
        greeks = (implied_vol, delta, option_price, gamma, vega, theta, underlying_price)
        self._call(lambda: self._greeks.__setitem__(con_id, greeks))

    def drop_greeks(self, con_id: int) -> None:
        """No option computation ticks for this contract from now on."""
        self._call(lambda: self._greeks.pop(con_id, None))

    def set_market_data(self, *, subscribed: bool = True, market_open: bool = True) -> None:
        """Whether the account has the live-data subscription, and whether the market trades."""
        def apply() -> None:
            self._subscribed, self._market_open = subscribed, market_open
        self._call(apply)

    def set_position(self, con_id: int, quantity: float, average_price: float) -> None:
        state = _PositionState(quantity, average_price)
        self._call(lambda: self._positions.__setitem__(con_id, state))

    def script_next_order(self, action: OrderAction) -> None:
        self._call(lambda: self._actions.append(action))

    def fill_resting_order(self, order_ref: str, price: float,
                           commission_per_contract: float = 1.25) -> None:
        def fill() -> None:
            order = next(o for o in self._orders.values()
                         if o.order_ref == order_ref and not o.is_done)
            self._fill(order, Fill(price, commission_per_contract))
        self._call(fill)

    def send_error(self, code: int, message: str, req_id: int = -1) -> None:
        self._call(lambda: self._broadcast(_error(req_id, code, message)))

    def messages(self, msg_id: int) -> list[list[str]]:
        return self._call(lambda: [f for m, f in self._received if m == msg_id])

    @property
    def bad_requests(self) -> list[str]:
        return self._call(lambda: list(self._bad_requests))

    def forget_bad_requests(self) -> None:
        self._call(self._bad_requests.clear)

    @property
    def connected_clients(self) -> int:
        return self._call(lambda: len(self._sessions))

    @property
    def lines_in_use(self) -> int:
        return self._call(self._lines_in_use)

    @property
    def max_lines_used(self) -> int:
        return self._call(lambda: self._max_lines_used)

    @property
    def orders(self) -> list[FakeOrder]:
        return self._call(lambda: list(self._orders.values()))

    @property
    def executions(self) -> list[FakeExecution]:
        return self._call(lambda: list(self._executions))

    # ----------------------------------------------------------------- loop plumbing

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            result = fn()
            result = await result if inspect.isawaitable(result) else result
            self._flush()
            return result
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(5)

    async def _start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._drop_sessions()

    def _drop_sessions(self) -> None:
        for session in self._sessions:
            session.writer.close()
        self._sessions.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        try:
            greeting = await reader.readexactly(4)
            if greeting != b"API\0" or not _offers_our_version(await _read_frame(reader)):
                return  # TWS drops a client whose version range it cannot serve
            if self.hang_handshake:
                await reader.read()  # until the client gives up and closes
                return
            now = datetime.now(UTC).strftime("%Y%m%d %H:%M:%S UTC")
            writer.write(_frame([SERVER_VERSION, now]))
            self._sessions.append(session)
            while True:
                fields = (await _read_frame(reader)).decode().split("\0")[:-1]
                self._count_for_pacing(session)
                self._arrivals.append((fields[0] if fields else "", time.perf_counter()))
                if self.frozen:
                    continue  # read and never answered
                self._dispatch(session, fields)
                self._flush()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if session in self._sessions:
                self._sessions.remove(session)
            writer.close()

    def _dispatch(self, session: _Session, fields: list[str]) -> None:
        try:
            msg_id = int(fields[0])
        except (IndexError, ValueError):
            msg_id = -1
        self._received.append((msg_id, fields))
        handler = self._handlers().get(msg_id)
        try:
            if handler is None:
                raise _BadRequest(f"unknown message id {fields[0] if fields else ''!r}")
            handler(session, _Reader(fields))
        except _BadRequest as e:
            self._bad_requests.append(str(e))
            self._send(session, _error(-1, 320, f"Error reading request: {e}"))

    def _send(self, session: _Session, fields: list[Any]) -> None:
        session.outbox.append(_frame(fields))

    def _flush(self) -> None:
        """One write per reaction: like TWS, an order's status and its fill arrive together."""
        for session in self._sessions:
            if session.outbox and not session.writer.is_closing():
                session.writer.write(b"".join(session.outbox))
            session.outbox.clear()

    def _broadcast(self, fields: list[Any]) -> None:
        for session in self._sessions:
            self._send(session, fields)

    def _session_of(self, client_id: int) -> _Session | None:
        return next((s for s in self._sessions if s.client_id == client_id), None)

    def _lines_in_use(self) -> int:
        return sum(len(s.tickers) for s in self._sessions)

    # ----------------------------------------------------------------- request handlers

    def _handlers(self) -> dict[int, Callable[[_Session, _Reader], None]]:
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

    def _start_api(self, session: _Session, r: _Reader) -> None:
        r.version(2)
        client_id = r.int()
        r.str()  # optional capabilities
        r.done()
        if any(s.client_id == client_id for s in self._sessions if s is not session):
            self._send(session, _error(-1, 326, "Unable to connect as the client id is already "
                                                "in use. Retry with a unique client id."))
            self._flush()
            session.writer.close()
            self._sessions.remove(session)
            return
        session.client_id = client_id
        self._send(session, [9, 1, self._next_order_id])
        self._send(session, [15, 1, self.account])
        for code, message in FARM_NOTICES:
            self._send(session, _error(-1, code, message))
        if not self._link_up:
            self._send(session, _error(-1, 1100, "Connectivity between IB and Trader Workstation "
                                                 "has been lost."))

    # ----------------------------------------------------------------- faults

    def set_link(self, *, up: bool) -> None:
        """TWS loses (1100) or regains (1102) its link to IB's servers."""
        def change() -> None:
            self._link_up = up
            self._broadcast(_error(-1, 1102, "Connectivity between IB and Trader Workstation has "
                                   "been restored - data maintained.") if up else
                            _error(-1, 1100, "Connectivity between IB and Trader Workstation has "
                                   "been lost."))
        self._call(change)

    def new_trading_day(self) -> None:
        """The daily restart: clients dropped; yesterday's completed orders and executions are
        no longer served (working orders and positions carry over)."""
        def restart() -> None:
            self._drop_sessions()
            self._orders = {k: o for k, o in self._orders.items() if not o.is_done}
            self._executions.clear()
        self._call(restart)

    def reset_rate_counters(self) -> None:
        """Forget the rates measured so far (a benchmark measures one phase at a time)."""
        def reset() -> None:
            self.max_messages_per_second = self.max_account_messages_per_second = 0
            self._account_received_at.clear()
            for session in self._sessions:
                session.received_at.clear()
        self._call(reset)

    def arrival_times(self, msg_id: int) -> list[float]:
        """`time.perf_counter()` at which each message of this id was read (same-process clocks)."""
        return self._call(lambda: [t for m, t in self._arrivals if m == str(msg_id)])

    def _count_for_pacing(self, session: _Session) -> None:
        now = self._loop.time()
        times = session.received_at
        times.append(now)
        while now - times[0] >= 1.0:
            times.popleft()
        self.max_messages_per_second = max(self.max_messages_per_second, len(times))
        everyone = self._account_received_at
        everyone.append(now)
        while now - everyone[0] >= 1.0:
            everyone.popleft()
        self.max_account_messages_per_second = max(self.max_account_messages_per_second,
                                                   len(everyone))
        if len(times) > PACING_LIMIT:
            self.pacing_violations += 1
            self._send(session, _error(-1, 100, "Max rate of messages per second has been "
                                                f"exceeded:max=50 rec={len(times)}"))

    def _req_ids(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        r.int()
        r.done()
        self._send(session, [9, 1, self._next_order_id])

    def _req_auto_open_orders(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        r.int()
        r.done()

    def _req_managed_accounts(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        r.done()
        self._send(session, [15, 1, self.account])

    def _req_global_cancel(self, session: _Session, r: _Reader) -> None:
        r.version(1)  # (179+ adds the manual-cancel fields)
        r.done()
        for order in self._orders.values():
            if not order.is_done:
                order.status = "Cancelled"
                owner = self._session_of(order.client_id)
                if owner is not None:
                    self._send(owner, self._order_status_fields(order))
                    self._send(owner, _error(order.order_id, 202, "Order Canceled - reason:"))

    def _req_current_time(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        r.done()
        self._send(session, [49, 1, int(datetime.now(UTC).timestamp())])

    def _req_market_data_type(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        wanted = r.int()
        r.done()
        if wanted not in (LIVE, FROZEN, DELAYED, DELAYED_FROZEN):
            self._send(session, _error(-1, 321, f"Error validating request:-'bM' : cause - "
                                                f"Invalid market data type {wanted}"))
            return
        session.market_data_type = wanted

    def _req_mkt_data(self, session: _Session, r: _Reader) -> None:
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
            self._send(session, _error(req_id, 322, "Error processing request:-'bM' : cause - "
                                                    "Duplicate ticker id"))
            return
        found = self._matching(wanted, include_expired=False)
        if len(found) != 1:
            self._send(session, _error(req_id, 200, "No security definition has been found "
                                                    "for the request"))
            return
        contract = found[0]
        if self._lines_in_use() >= self.market_data_lines:
            self._send(session, _error(req_id, 101, "Max number of tickers has been reached"))
            return
        served = self._served_type(session.market_data_type)
        if served is None:
            self._send(session, _error(req_id, 354, NOT_SUBSCRIBED_354))
            return
        session.tickers[req_id] = contract.con_id
        self._max_lines_used = max(self._max_lines_used, self._lines_in_use())
        if served in (DELAYED, DELAYED_FROZEN):
            self._send(session, _error(req_id, 10167, DELAYED_10167))
        self._send(session, [81, req_id, _num(contract.min_tick), "", 3])
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

    def _cancel_mkt_data(self, session: _Session, r: _Reader) -> None:
        r.version(2)
        req_id = r.int()
        r.done()
        if session.tickers.pop(req_id, None) is None:
            self._send(session, _error(req_id, 300, f"Can't find EId with tickerId:{req_id}"))

    def _place_order(self, session: _Session, r: _Reader) -> None:
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
            raise _BadRequest("order conditions are not modelled by the fake")
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
            self._send(session, _error(order_id, 103, "Duplicate order id"))
            return
        if quantity is None or quantity <= 0:
            self._send(session, _error(order_id, 434, "The order size cannot be zero."))
            return
        if order_type == "LMT" and limit_price is None:
            self._send(session, _error(order_id, 321, "Error validating request:-'bN' : cause - "
                                                      "The price field is required."))
            return
        contract = None
        if wanted["secType"] != "BAG":
            found = self._matching(wanted, include_expired=False)
            if len(found) != 1:
                self._send(session, _error(order_id, 200, "No security definition has been "
                                                          "found for the request"))
                return
            contract = found[0]
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
            self._send(session, _error(order_id, action_taken.code, action_taken.message))
            return
        if isinstance(action_taken, InactiveButWorking | ErrorButWorking):
            order.status = "Inactive" if isinstance(action_taken, InactiveButWorking) else "Submitted"
            self._send(session, self._open_order_fields(order))
            self._send(session, self._order_status_fields(order))
            if isinstance(action_taken, ErrorButWorking):
                self._send(session, _error(order_id, action_taken.code, action_taken.message))
            order.status = "Submitted"
            return
        order.status = "Submitted"
        self._send(session, self._open_order_fields(order))
        self._send(session, self._order_status_fields(order))
        if isinstance(action_taken, Fill):
            self._fill(order, action_taken)

    def _fill(self, order: FakeOrder, action: Fill) -> None:
        price = action.price if action.price is not None else order.limit_price
        if price is None:
            price = self._quotes[order.contract.con_id][2] if order.contract else 0.0
        now = datetime.now(UTC)
        side = "BOT" if order.action == "BUY" else "SLD"
        executions: list[FakeExecution] = []
        if order.contract is not None:
            executions.append(self._execution(order, order.contract, side, order.quantity, price,
                                              now, action.commission_per_contract))
        else:
            leg_prices = action.leg_prices or {}
            for i, leg in enumerate(order.legs):
                leg_side = "BOT" if (leg.action == "BUY") == (order.action == "BUY") else "SLD"
                leg_price = leg_prices.get(leg.con_id, price if i == 0 else 0.0)
                executions.append(self._execution(
                    order, self._contracts[leg.con_id], leg_side, order.quantity * leg.ratio,
                    leg_price, now, action.commission_per_contract))
            executions.append(FakeExecution(self._exec_id(order), order, None, side,
                                            order.quantity, price, now, 0.0))
        order.status, order.filled, order.avg_fill_price = "Filled", order.quantity, price
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
        position = self._positions.setdefault(contract.con_id, _PositionState())
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

    def _cancel_order(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        order_id = r.int()
        r.str()  # manualOrderCancelTime (169+)
        r.done()
        order = self._orders.get((session.client_id, order_id))
        if order is None:
            self._send(session, _error(order_id, 10147, f"OrderId {order_id} that needs to be "
                                                        f"cancelled is not found."))
        elif order.is_done:
            self._send(session, _error(order_id, 10148,
                                       f"OrderId {order_id} that needs to be cancelled cannot be "
                                       f"cancelled, state: {order.status}."))
        else:
            order.status = "Cancelled"
            self._send(session, self._order_status_fields(order))
            self._send(session, _error(order_id, 202, "Order Canceled - reason:"))

    def _req_open_orders(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        r.done()
        self._send_open_orders(session, lambda o: o.client_id == session.client_id)

    def _req_all_open_orders(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        r.done()
        self._send_open_orders(session, lambda o: True)

    def _send_open_orders(self, session: _Session, keep: Callable[[FakeOrder], bool]) -> None:
        for order in self._orders.values():
            if keep(order) and not order.is_done:
                self._send(session, self._open_order_fields(order))
                self._send(session, self._order_status_fields(order))
        self._send(session, [53, 1])

    def _req_completed_orders(self, session: _Session, r: _Reader) -> None:
        r.int()  # apiOnly
        r.done()
        for order in self._orders.values():
            if order.is_done:
                self._send(session, self._completed_order_fields(order))
        self._send(session, [102])

    def _req_executions(self, session: _Session, r: _Reader) -> None:
        r.version(3)
        req_id = r.int()
        r.skip(7)  # filter: clientId, acctCode, time, symbol, secType, exchange, side
        r.done()
        for execution in self._executions:
            self._send(session, self._exec_fields(req_id, execution))
        for execution in self._executions:
            self._send(session, self._commission_fields(execution))
        self._send(session, [55, 1, req_id])

    def _req_contract_details(self, session: _Session, r: _Reader) -> None:
        r.version(8)
        req_id = r.int()
        wanted = r.contract()
        include_expired = bool(r.int())
        r.skip(3)  # secIdType, secId, issuerId (176+)
        r.done()
        found = self._matching(wanted, include_expired=include_expired)
        if not found:
            self._send(session, _error(req_id, 200, "No security definition has been found "
                                                    "for the request"))
            return
        for contract in found:
            self._send(session, self._contract_details_fields(req_id, contract))
        self._send(session, [52, 1, req_id])

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

    def _req_positions(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        r.done()
        for con_id, position in self._positions.items():
            contract = self._contracts[con_id]
            avg_cost = position.average_price * float(contract.multiplier)
            self._send(session, [61, 3, self.account, *contract.wire(),
                                 _num(position.quantity), _num(avg_cost)])
        self._send(session, [62, 1])

    def _cancel_positions(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        r.done()

    def _req_account_summary(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        req_id, _group, tags = r.int(), r.str(), set(r.str().split(","))
        r.done()
        for tag, value in self.account_values.items():
            if tag in tags or "All" in tags:
                self._send(session, [63, 1, req_id, self.account, tag, value, "USD"])
        self._send(session, [64, 1, req_id])

    def _cancel_account_summary(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        r.int()
        r.done()

    def _req_account_updates(self, session: _Session, r: _Reader) -> None:
        r.version(2)
        subscribe, _account = r.int(), r.str()
        r.done()
        if subscribe:
            for tag, value in self.account_values.items():
                self._send(session, [6, 2, tag, value, "USD", self.account])
            self._send(session, [54, 1, self.account])

    def _req_account_updates_multi(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        req_id = r.int()
        r.skip(3)  # account, modelCode, ledgerAndNLV
        r.done()
        self._send(session, [74, 1, req_id])

    def _cancel_account_updates_multi(self, session: _Session, r: _Reader) -> None:
        r.version(1)
        r.int()
        r.done()

    def _req_sec_def_opt_params(self, session: _Session, r: _Reader) -> None:
        req_id, symbol, fut_fop_exchange, sec_type, under_con_id = (
            r.int(), r.str(), r.str(), r.str(), r.int())
        r.done()
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
                                 *(_num(s) for s in sorted(strikes))])
        self._send(session, [76, req_id])

    # ----------------------------------------------------------------- message encoders

    def _contract_details_fields(self, req_id: int, c: FakeContract) -> list[Any]:
        under = self._contracts.get(c.under_con_id)
        return [
            10, req_id, c.symbol, c.sec_type, c.last_trade_date, _num(c.strike), c.right,
            c.exchange, c.currency, c.local_symbol, c.trading_class, c.trading_class, c.con_id,
            _num(c.min_tick),  # no mdSizeMultiplier from 164 on
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
            o.action, _num(o.quantity), o.order_type, _opt(o.limit_price), "", o.tif, "",
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
            o.action, _num(o.quantity), o.order_type, _opt(o.limit_price), "", o.tif, "",
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
            "", "", "", 0, 0, "", _num(o.filled), 0, 0, "", 0, 0, 0,
            datetime.now(UTC).strftime("%Y%m%d %H:%M:%S UTC"), o.status,
            "", "", "", "", "",  # minTradeQty .. midOffsetAtHalf (170)
        ]

    def _order_status_fields(self, o: FakeOrder) -> list[Any]:
        return [3, o.order_id, o.status, _num(o.filled), _num(o.quantity - o.filled),
                o.avg_fill_price, o.perm_id, 0, o.avg_fill_price, o.client_id, "", 0]

    def _exec_fields(self, req_id: int, e: FakeExecution) -> list[Any]:
        order = e.order
        contract = e.contract.wire() if e.contract else self._order_contract_fields(order)
        return [
            11, req_id, order.order_id, *contract, e.exec_id,
            e.time.strftime("%Y%m%d %H:%M:%S UTC"), self.account, order.exchange, e.side,
            _num(e.shares), e.price, order.perm_id, order.client_id, 0, _num(e.shares), e.price,
            order.order_ref, "", "", "", 1,
            0,  # pendingPriceRevision (178)
        ]

    def _commission_fields(self, e: FakeExecution) -> list[Any]:
        realized = UNSET_DOUBLE if e.realized_pnl is None else repr(e.realized_pnl)
        return [59, 1, e.exec_id, e.commission, "USD", realized, UNSET_DOUBLE, ""]


def _error(req_id: int, code: int, message: str) -> list[Any]:
    return [4, 2, req_id, code, message, ""]  # "" = advancedOrderRejectJson (166+)


def _offers_our_version(handshake: bytes) -> bool:
    """The client's "v<min>..<max>[ options]" must include SERVER_VERSION."""
    try:
        low, high = handshake.decode().split(" ")[0].lstrip("v").split("..")
        return int(low) <= SERVER_VERSION <= int(high)
    except ValueError:
        return False


def _frame(fields: list[Any]) -> bytes:
    payload = "".join(f"{value}\0" for value in fields).encode()
    return struct.pack(">I", len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    return await reader.readexactly(size)


def _num(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def _opt(value: float | None) -> str:
    return "" if value is None else repr(value)


def _month_code(last_trade_date: str) -> str:
    return "FGHJKMNQUVXZ"[int(last_trade_date[4:6]) - 1] + last_trade_date[3]
