"""The fake TWS itself: it listens on 127.0.0.1, keeps each client's session and its own state on
its own event loop and thread, reads each request and dispatches it to its handler
(`handlers.py`, `orders.py`), and is scripted by the tests.

Scripting from tests (every method is thread-safe; state lives on the fake's own event loop):
- `list_future(...)` / `list_option(...)` register contracts and return their conIds;
- `set_quote(con_id, ...)` and `set_greeks(con_id, ...)` feed reqMktData (`drop_greeks` stops
  the option computation ticks of one contract);
- `script_next_order(Fill(...) | Rest() | Reject(code, message) | Held())` decides what happens to
  the next placeOrder (default: `Fill()` at the order's limit price; `Held()` answers nothing until
  `release_held_orders()`);
- `fill_resting_order(order_ref, price)` fills a working order now, whether a client is connected
  or not (executions made "while disconnected" are served by the next reqExecutions);
- `send_error(code, message)` pushes an error/notice (1100, 1102, 2110, ...) to every client;
- `drop_connections()` closes client sockets; `stop()` also stops listening; `start()` listens
  again on the same port with every order, execution and position remembered;
- `messages(msg_id)` returns what clients sent (e.g. 3 = placeOrder) to assert on the wire;
- `lines_in_use` / `max_lines_used` tell how many market-data lines are (were at most) held.
The faults it can produce are switched on as `faults.py` describes.
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from brokers.tests.fake_tws.faults import Faults
from brokers.tests.fake_tws.handlers import Handlers
from brokers.tests.fake_tws.messages import Messages
from brokers.tests.fake_tws.model import (
    FakeContract,
    FakeExecution,
    FakeOrder,
    Fill,
    OrderAction,
    PositionState,
    Session,
    month_code,
)
from brokers.tests.fake_tws.orders import Orders
from brokers.tests.fake_tws.wire import SERVER_VERSION, BadRequest, Reader, error, frame, offers_our_version, read_frame


@dataclass
class FakeTWS(Handlers, Orders, Faults, Messages):
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
        self._positions: dict[int, PositionState] = {}
        self._actions: deque[OrderAction] = deque()
        self._held: list[tuple[Session, FakeOrder]] = []  # placed under Held(), not yet answered
        self._received: list[tuple[int, list[str]]] = []
        self._bad_requests: list[str] = []
        self._sessions: list[Session] = []
        self._server: asyncio.base_events.Server | None = None
        self._next_order_id = 1
        self._link_up = True
        self.hang_handshake = False
        self.frozen = False
        self._option_parameter_failures = 0
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
            trading_class or symbol, f"{symbol}{month_code(last_trade_date)}",
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
                f"{trading_class}{month_code(last_trade_date)} {right}{strike:g}",
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
        state = PositionState(quantity, average_price)
        self._call(lambda: self._positions.__setitem__(con_id, state))

    def script_next_order(self, action: OrderAction) -> None:
        self._call(lambda: self._actions.append(action))

    def release_held_orders(self) -> None:
        """Answer the orders placed under `Held()` (open order and status, to the client that
        placed them if it is still connected); they rest."""
        self._call(self._release_held)

    def fill_resting_order(self, order_ref: str, price: float,
                           commission_per_contract: float = 1.25,
                           quantity: float | None = None) -> None:
        """Fill a working order, all that remains of it or only `quantity` (a partial fill)."""
        def fill() -> None:
            order = next(o for o in self._orders.values()
                         if o.order_ref == order_ref and not o.is_done)
            self._fill(order, Fill(price, commission_per_contract, quantity=quantity))
        self._call(fill)

    def send_error(self, code: int, message: str, req_id: int = -1) -> None:
        self._call(lambda: self._broadcast(error(req_id, code, message)))

    def messages(self, msg_id: int) -> list[list[str]]:
        return self._call(lambda: [f for m, f in self._received if m == msg_id])

    def message_ids(self) -> list[int]:
        """The id of every message clients sent, in order."""
        return self._call(lambda: [m for m, _ in self._received])

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
        session = Session(writer)
        try:
            greeting = await reader.readexactly(4)
            if greeting != b"API\0" or not offers_our_version(await read_frame(reader)):
                return  # TWS drops a client whose version range it cannot serve
            if self.hang_handshake:
                await reader.read()  # until the client gives up and closes
                return
            now = datetime.now(UTC).strftime("%Y%m%d %H:%M:%S UTC")
            writer.write(frame([SERVER_VERSION, now]))
            self._sessions.append(session)
            while True:
                fields = (await read_frame(reader)).decode().split("\0")[:-1]
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

    def _dispatch(self, session: Session, fields: list[str]) -> None:
        try:
            msg_id = int(fields[0])
        except (IndexError, ValueError):
            msg_id = -1
        self._received.append((msg_id, fields))
        handler = self._handlers().get(msg_id)
        try:
            if handler is None:
                raise BadRequest(f"unknown message id {fields[0] if fields else ''!r}")
            handler(session, Reader(fields))
        except BadRequest as e:
            self._bad_requests.append(str(e))
            self._send(session, error(-1, 320, f"Error reading request: {e}"))

    def _send(self, session: Session, fields: list[Any]) -> None:
        session.outbox.append(frame(fields))

    def _flush(self) -> None:
        """One write per reaction: like TWS, an order's status and its fill arrive together."""
        for session in self._sessions:
            if session.outbox and not session.writer.is_closing():
                session.writer.write(b"".join(session.outbox))
            session.outbox.clear()

    def _broadcast(self, fields: list[Any]) -> None:
        for session in self._sessions:
            self._send(session, fields)

    def _session_of(self, client_id: int) -> Session | None:
        return next((s for s in self._sessions if s.client_id == client_id), None)

