"""`IBKRBroker`: the Broker interface over TWS / IB Gateway through ib_async.

This module holds the plumbing (the event loop, the connection, IB's notices, contracts, market
data); orders, fills, positions and the account are `brokers.ibkr.orders`.

Safety properties the rest of the platform relies on:
- every message goes through the account's wire pacer (`brokers.ibkr.pacing`);
- a notice heard during the handshake (1100 above all) survives it: nothing is sent while TWS has
  no link to IB; a client id in use (326) moves to the next one;
- after any reconnect and on IB notices 1101/1102 the open orders, completed orders, positions
  and executions are fetched again, so fills made while we were away appear in `fills_since`;
- every public method raises only `BrokerError`, with `retryable` from `errors.IB_ERRORS`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol, TypeVar

from ib_async import IB, Contract, StartupFetch, Trade
from ib_async import Fill as IBFill
from ib_async.wrapper import RequestError

from brokers.domain import (
    Broker,
    BrokerError,
    BrokerHealth,
    Fill,
    Instrument,
    OrderStatus,
    Quote,
    Right,
    SecType,
)
from brokers.ibkr.chain import ChainRow, chain_expiries
from brokers.ibkr.contracts import (
    ContractSettings,
    contract_for,
    details_disagreements,
    instrument_from_details,
    lookup_contract,
    parse_ib_expiry,
    utc_now,
)
from brokers.ibkr.errors import BROKER_NAME, INFORMATIONAL_CODES, broker_error_from_ib
from brokers.ibkr.failures import Failure as _Failure
from brokers.ibkr.failures import IBFailure as _IBFailure
from brokers.ibkr.link import COMPETING_SESSION_CODE, LinkState
from brokers.ibkr.market_data import (
    MarketDataFailure,
    MarketDataFallback,
    MarketDataSettings,
    quotes_in_batches,
)
from brokers.ibkr.orders import OrdersAndAccount
from brokers.ibkr.pacing import DEFAULT_LIMIT, DEFAULT_WINDOW_SECONDS, WirePacer
from brokers.ibkr.resolve import SettingsRefused, resolve_underlying
from brokers.ibkr.runtime import LoopThread

logger = logging.getLogger(__name__)

T = TypeVar("T")

_STARTUP_FETCH = (StartupFetch.POSITIONS | StartupFetch.ORDERS_OPEN
                  | StartupFetch.ORDERS_COMPLETE | StartupFetch.EXECUTIONS)
_MAX_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class IBKRConfig:
    host: str
    port: int
    client_id: int
    underlying_instrument: str
    underlying_expiry: str  # YYYYMM or YYYYMMDD
    connect_retries: int = 3
    connect_backoff_seconds: float = 1.0
    exchange_overrides: dict[str, str] = field(default_factory=dict)
    trading_class: str | None = None
    multiplier: float | None = None
    request_timeout_seconds: float = 10.0
    order_ack_timeout_seconds: float = 5.0
    market_data_wait_seconds: float = 2.0
    commission_wait_seconds: float = 1.0
    pacing_limit: int = DEFAULT_LIMIT  # messages per pacing window; IB's limit is 50 a second
    pacing_window_seconds: float = DEFAULT_WINDOW_SECONDS
    account: str = ""  # IB account code orders are booked to (required for advisor logins)
    client_id_attempts: int = 3  # ids tried (client_id, +1, ...) when IB answers 326
    market_data_lines: int = 80  # of the account's 100, leaving TWS's own windows some
    market_data_fallback: MarketDataFallback = "frozen"  # when live is not served (see market_data)

    @classmethod
    def from_credentials(cls, validated: dict[str, Any], **overrides: Any) -> IBKRConfig:
        """From `IBKRCredentialsSerializer(...).validated_data` (and settings of our own)."""
        keys = ("host", "port", "client_id", "underlying_instrument", "underlying_expiry",
                "connect_retries", "connect_backoff_seconds", "exchange_overrides",
                "trading_class", "multiplier", "account", "market_data_lines",
                "market_data_fallback")
        values = {k: validated[k] for k in keys if validated.get(k) is not None}
        return cls(**{**values, **overrides})

    @property
    def market_data(self) -> MarketDataSettings:
        return MarketDataSettings(lines=self.market_data_lines,
                                  wait_seconds=self.market_data_wait_seconds,
                                  fallback=self.market_data_fallback)

    @property
    def contract_settings(self) -> ContractSettings:
        return ContractSettings(exchange_overrides=dict(self.exchange_overrides),
                                trading_class=self.trading_class, multiplier=self.multiplier,
                                product=self.underlying_instrument)


class OrderEventListener(Protocol):
    """Told of every order status and fill as IB reports them (called on the session's loop)."""

    def order_status(self, status: OrderStatus) -> None: ...

    def fill(self, fill: Fill) -> None: ...


class IBKRBroker(OrdersAndAccount, Broker):
    name = BROKER_NAME

    def __init__(self, config: IBKRConfig, listener: OrderEventListener | None = None) -> None:
        self._config = config
        self._settings = config.contract_settings
        self._loop_thread = LoopThread(f"ibkr-{config.host}:{config.port}/{config.client_id}")
        self._ib: IB | None = None
        self._pacer = WirePacer(config.pacing_limit, config.pacing_window_seconds)
        self._listener = listener
        self.client_id = config.client_id  # the id in use: moves on when IB answers 326
        self.link = LinkState()
        self._synced = False  # orders and executions known to TWS are all loaded
        self._reconnect_lock: asyncio.Lock | None = None
        self._snapshot_lock: asyncio.Lock | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._wanted = False  # connect() called and no disconnect() since
        self._connecting = False
        self._errors_by_req: dict[int, tuple[int, str]] = {}
        self._instruments: dict[int, Instrument] = {}
        self._expiries: dict[int, date] = {}

    @classmethod
    def from_credentials(cls, validated: dict[str, Any]) -> IBKRBroker:
        """From `IBKRCredentialsSerializer(...).validated_data`."""
        return cls(IBKRConfig.from_credentials(validated))

    @property
    def is_ready(self) -> bool:
        """Connected, through the handshake and the startup sync (read from any thread)."""
        return self._ib is not None and self._ib.isConnected() and not self._connecting

    # ------------------------------------------------------------------ plumbing

    def _run(self, operation: str, make: Callable[[], Awaitable[T]],
             timeout: float | None = None) -> T:
        async def call() -> T:
            return await make()
        try:
            return self._loop_thread.run(call(), timeout or self._config.request_timeout_seconds)
        except BrokerError:
            raise
        except _Failure as e:
            raise self._error(operation, e.code, e.message, e.retryable, e.context) from None
        except _IBFailure as e:
            raise broker_error_from_ib(operation=operation, ib_code=e.ib_code,
                                       ib_message=e.ib_message, context=e.context) from None
        except RequestError as e:
            raise broker_error_from_ib(operation=operation, ib_code=e.code,
                                       ib_message=e.message) from None
        except TimeoutError:
            raise self._error(operation, "timeout", "IBKR did not answer in time", True) from None
        except (ConnectionError, OSError) as e:
            raise self._error(operation, "not_connected", f"connection to TWS failed: {e}",
                              True) from None
        except Exception as e:  # anything else is our bug or ib_async's: surface, never retry
            logger.exception("IBKR %s failed unexpectedly", operation)
            raise self._error(operation, "internal_error", f"{type(e).__name__}: {e}",
                              False) from None

    def _error(self, operation: str, code: str, message: str, retryable: bool,
               context: dict[str, Any] | None = None) -> BrokerError:
        return BrokerError(operation=operation, broker=BROKER_NAME, code=code, message=message,
                           retryable=retryable, context=context)

    @property
    def _client(self) -> IB:
        assert self._ib is not None
        return self._ib

    # ------------------------------------------------------------------ connection

    def connect(self) -> None:
        c = self._config
        backoff_total = sum(min(c.connect_backoff_seconds * 2 ** i, _MAX_BACKOFF_SECONDS)
                            for i in range(c.connect_retries))
        budget = (c.connect_retries + 1) * (c.request_timeout_seconds * 2) + backoff_total + 5
        self._wanted = True
        self._run("connect", self._ensure_connected, timeout=budget)

    def disconnect(self) -> None:
        self._wanted = False
        if self._ib is not None:
            self._run("disconnect", self._disconnect_async)
        self._loop_thread.stop()
        self._ib = None

    async def _disconnect_async(self) -> None:
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        self._client.disconnect()

    async def _ensure_connected(self) -> None:
        if not self._wanted:
            raise _Failure("not_connected", "call connect() first", retryable=False)
        if self._ib is None:
            self._ib = IB()
            self._ib.RaiseRequestErrors = True
            self._ib.errorEvent += self._on_ib_error
            self._ib.disconnectedEvent += self._on_disconnected
            self._pacer.install(self._ib.client)
            if self._listener is not None:
                self._ib.orderStatusEvent += self._forward_status
                self._ib.commissionReportEvent += self._forward_fill
            self._reconnect_lock = asyncio.Lock()
            # ib_async keeps one pending request per kind (open and completed orders, positions):
            # a live session's concurrent callers take turns instead of orphaning each other's
            self._snapshot_lock = asyncio.Lock()
        assert self._reconnect_lock is not None
        async with self._reconnect_lock:
            if not self._client.isConnected():
                await self._connect_with_retries()

    async def _connect_with_retries(self) -> None:
        c = self._config
        attempts = c.connect_retries + 1
        self._connecting = True
        try:
            for attempt in range(attempts):
                if await self._connect_once(attempt + 1, attempts):
                    return
                if attempt + 1 < attempts:
                    await asyncio.sleep(min(c.connect_backoff_seconds * 2 ** attempt,
                                            _MAX_BACKOFF_SECONDS))
        finally:
            self._connecting = False
        raise _Failure("connect_failed",
                       f"could not reach TWS/IB Gateway at {c.host}:{c.port} after "
                       f"{attempts} attempt(s)", retryable=True,
                       context={"host": c.host, "port": c.port, "attempts": attempts})

    async def _connect_once(self, attempt: int, attempts: int) -> bool:
        """One connection attempt; on 326 (client id in use) the next ids are tried at once."""
        c = self._config
        for _ in range(max(c.client_id_attempts, 1)):
            # notices heard during this handshake (1100 above all) must survive it
            self.link.connection_started()
            try:
                await self._client.connectAsync(
                    c.host, c.port, self.client_id, timeout=c.request_timeout_seconds,
                    raiseSyncErrors=True, fetchFields=_STARTUP_FETCH, account=c.account)
            except (OSError, TimeoutError, ConnectionError) as e:
                if self.link.client_id_in_use is not None:
                    logger.warning("IBKR client id %d is in use at %s:%d (326); trying %d",
                                   self.client_id, c.host, c.port, self.client_id + 1)
                    self.client_id += 1
                    continue
                logger.warning("IBKR connect attempt %d/%d to %s:%d failed: %s", attempt,
                               attempts, c.host, c.port, e or type(e).__name__)
                return False
            if self.client_id != c.client_id:
                # the startup sync listed this client id's open orders only; ours were placed
                # under the configured one
                await self._resync()
            self._synced = True
            logger.info("IBKR connected to %s:%d as client %d (server version %d)%s", c.host,
                        c.port, self.client_id, self._client.client.serverVersion(),
                        "; link to IB DOWN" if self.link.link_down else "")
            return True
        return False

    def _on_disconnected(self) -> None:
        self._synced = False
        if not self._wanted or self._connecting:
            return
        logger.warning("IBKR connection lost; reconnecting in the background")
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(
                self._reconnect_in_background())

    async def _reconnect_in_background(self) -> None:
        try:
            await self._ensure_connected()
        except _Failure as e:
            logger.warning("IBKR background reconnect gave up: %s; the next call retries",
                           e.message)

    def _on_ib_error(self, req_id: int, code: int, message: str, contract: Contract | None) -> None:
        change = self.link.on_error(code, message)
        if change == "down":
            self._synced = False
            logger.warning("IBKR link down (%d): %s", code, message)
        elif change == "restored":
            logger.info("IBKR link restored (%d); resynchronising", code)
            asyncio.get_running_loop().create_task(self._resync_logged())
        elif code not in INFORMATIONAL_CODES and code != COMPETING_SESSION_CODE and req_id >= 0:
            # (10197 fails no request: the quote comes back empty and the model values the book)
            self._errors_by_req[req_id] = (code, message)

    def _forward_status(self, trade: Trade) -> None:
        """Order status from IB's events, as it happens (the session process journals it)."""
        if trade.order.orderRef and self._listener is not None:
            self._listener.order_status(self._status_from_trade(trade.order.orderRef, trade))

    def _forward_fill(self, trade: Trade, fill: IBFill, report: Any) -> None:
        if fill.contract.secType not in ("FUT", "FOP") or self._listener is None:
            return
        listener = self._listener

        async def forward() -> None:
            try:
                listener.fill(await self._fill_from_ib(fill))
            except Exception:  # the next fills_since serves it from TWS
                logger.exception("IBKR fill %s not forwarded", fill.execution.execId)
        asyncio.get_running_loop().create_task(forward())

    async def _resync_logged(self) -> None:
        try:
            await self._resync()
        except Exception:
            logger.exception("IBKR resynchronisation failed; the next call retries")

    async def _resync(self) -> None:
        """Fetch everything TWS knows that we may have missed while away."""
        ib = self._client
        assert self._snapshot_lock is not None
        async with self._snapshot_lock:
            # every client's open orders: ours may have been placed under another client id
            await asyncio.gather(ib.reqAllOpenOrdersAsync(), ib.reqCompletedOrdersAsync(False),
                                 ib.reqPositionsAsync())
            # executions after the orders, so that each one finds its trade
            await ib.reqExecutionsAsync()
        self._synced = self.link.link_down is None

    def health(self) -> BrokerHealth:
        now = utc_now()
        if not self._wanted or self._ib is None:
            return BrokerHealth(BROKER_NAME, False, "not connected", now)
        try:
            version = self._run("health", self._ping, timeout=5.0)
        except BrokerError as e:
            return BrokerHealth(BROKER_NAME, False, f"{e.code}: {e.message}", now)
        trouble = self.link.describe()
        if self.link.link_down is not None:
            return BrokerHealth(BROKER_NAME, False, trouble, now)
        detail = f"TWS server version {version}, client id {self.client_id}"
        return BrokerHealth(BROKER_NAME, True, f"{detail}; {trouble}" if trouble else detail, now)

    async def _ping(self) -> int:
        await self._ensure_connected()
        await self._client.reqCurrentTimeAsync()
        return self._client.client.serverVersion()

    # ------------------------------------------------------------------ contracts

    def lookup_instrument(self, *, symbol: str, sec_type: SecType, expiry: date | None = None,
                          strike: float | None = None, right: Right | None = None) -> Instrument:
        return self._run("lookup_instrument", lambda: self._lookup(
            symbol.upper(), sec_type, expiry, strike, right))

    async def _lookup(self, symbol: str, sec_type: str, expiry: date | None,
                      strike: float | None, right: str | None) -> Instrument:
        if not self._settings.knows(symbol):
            raise _Failure("unknown_product", f"{symbol} is neither in the product table nor "
                           "routed by this connection", retryable=False, context={"symbol": symbol})
        await self._ensure_connected()
        query = lookup_contract(symbol=symbol, sec_type=sec_type, expiry=expiry, strike=strike,
                                right=right, settings=self._settings)
        details = await self._contract_details(query)
        if sec_type == "FUT" and expiry is None:
            today = utc_now().date()
            live = [d for d in details if parse_ib_expiry(
                d.realExpirationDate or d.contract.lastTradeDateOrContractMonth) >= today]
            details = sorted(live, key=lambda d: d.contract.lastTradeDateOrContractMonth)[:1]
        if len(details) != 1:
            raise _Failure("ambiguous_contract" if details else "unknown_contract",
                           f"{len(details)} IB contracts match {symbol} {sec_type} "
                           f"{expiry or ''} {strike or ''} {right or ''}".strip(),
                           retryable=False, context={"symbol": symbol, "matches": len(details)})
        return await self._instrument_from_details(details[0])

    def settings_resolve(self) -> dict[str, Any]:
        return self._run("connect", self._settings_resolve,
                         timeout=self._config.request_timeout_seconds * 6)

    async def _settings_resolve(self) -> dict[str, Any]:
        c = self._config
        await self._ensure_connected()
        try:
            resolved = await resolve_underlying(
                self._client, self._pacer.room_available, symbol=c.underlying_instrument,
                expiry=c.underlying_expiry, multiplier=c.multiplier,
                trading_class=c.trading_class, settings=self._settings)
        except SettingsRefused as e:
            raise _Failure("invalid_contract_settings", str(e), retryable=False,
                           context={"fields": e.fields}) from None
        return {"underlying_expiry": resolved.expiry, "multiplier": resolved.multiplier,
                "trading_class": resolved.trading_class}

    def listed_futures(self, symbol: str) -> list[Instrument]:
        return self._run("listed_futures", lambda: self._listed_futures(symbol.upper()))

    async def _listed_futures(self, symbol: str) -> list[Instrument]:
        if not self._settings.knows(symbol):
            raise _Failure("unknown_product", f"{symbol} is neither in the product table nor "
                           "routed by this connection", retryable=False, context={"symbol": symbol})
        await self._ensure_connected()
        query = lookup_contract(symbol=symbol, sec_type="FUT", expiry=None, strike=None,
                                right=None, settings=self._settings)
        details = await self._contract_details(query)
        today = utc_now().date()
        live = sorted((d for d in details if parse_ib_expiry(
            d.realExpirationDate or d.contract.lastTradeDateOrContractMonth) >= today),
            key=lambda d: d.contract.lastTradeDateOrContractMonth)
        return [await self._instrument_from_details(d) for d in live]

    def underlying(self) -> Instrument:
        """The future this connection was configured for (`underlying_instrument`/`_expiry`)."""
        c = self._config
        expiry = c.underlying_expiry
        return self._run("underlying", lambda: self._lookup_underlying(
            c.underlying_instrument, expiry))

    async def _lookup_underlying(self, symbol: str, expiry: str) -> Instrument:
        await self._ensure_connected()
        query = lookup_contract(symbol=symbol, sec_type="FUT", expiry=None, strike=None,
                                right=None, settings=self._settings)
        query.lastTradeDateOrContractMonth = expiry  # YYYYMM selects the contract month
        details = await self._contract_details(query)
        if len(details) != 1:
            raise _Failure("ambiguous_contract" if details else "unknown_contract",
                           f"{len(details)} IB futures match {symbol} {expiry}",
                           retryable=False, context={"symbol": symbol, "expiry": expiry})
        return await self._instrument_from_details(details[0])

    async def _contract_details(self, contract: Contract) -> list[Any]:
        return await self._client.reqContractDetailsAsync(contract)

    async def _instrument_from_details(self, details: Any) -> Instrument:
        under = await self._expiry_of(details.underConId) if details.contract.secType == "FOP" \
            else None
        instrument = instrument_from_details(details, underlying_expiry=under)
        if details.contract.conId not in self._instruments:  # once per contract and connection
            for problem in details_disagreements(details):
                logger.warning("IBKR contract %s disagrees with the product table: %s",
                               details.contract.conId, problem)
        self._instruments[details.contract.conId] = instrument
        if details.contract.secType == "FUT":
            self._expiries[details.contract.conId] = instrument.expiry
        return instrument

    async def _expiry_of(self, con_id: int) -> date | None:
        if not con_id:
            return None
        if con_id not in self._expiries:
            details = await self._contract_details(Contract(conId=con_id))
            self._expiries[con_id] = parse_ib_expiry(
                details[0].realExpirationDate or details[0].contract.lastTradeDateOrContractMonth)
        return self._expiries[con_id]

    async def _instrument_for(self, contract: Contract) -> Instrument:
        """The Instrument of a contract seen in a position or an execution (cached by conId)."""
        if contract.conId not in self._instruments:
            details = await self._contract_details(Contract(conId=contract.conId))
            await self._instrument_from_details(details[0])
        return self._instruments[contract.conId]

    async def _qualified(self, instrument: Instrument) -> Contract:
        contract = contract_for(instrument, self._settings)
        if not contract.conId:
            details = await self._contract_details(contract)
            if len(details) != 1:
                raise _Failure("unknown_contract" if not details else "ambiguous_contract",
                               f"{len(details)} IB contracts match {instrument.key}",
                               retryable=False, context={"instrument": instrument.key})
            contract = details[0].contract
        return contract

    def option_chain(self, underlying: Instrument) -> list[Instrument]:
        return self._run("option_chain", lambda: self._option_chain(underlying),
                         timeout=self._config.request_timeout_seconds * 6)  # one lookup per expiry

    async def _option_chain(self, underlying: Instrument) -> list[Instrument]:
        """Every standard option delivering this future, serial months included (see chain.py)."""
        await self._ensure_connected()
        future = await self._qualified(underlying)
        self._expiries[future.conId] = underlying.expiry
        exchange = self._settings.exchange_for(underlying.symbol)
        rows = [ChainRow(r.exchange, int(r.underlyingConId), r.tradingClass, r.multiplier,
                         tuple(r.expirations))
                for r in await self._client.reqSecDefOptParamsAsync(
                    underlying.symbol, exchange, "FUT", future.conId)]
        options: list[Instrument] = []
        for trading_class, expiry in chain_expiries(
                rows, exchange=exchange, underlying_con_id=future.conId,
                trading_class=self._settings.option_trading_class_for(underlying.symbol)):
            query = lookup_contract(symbol=underlying.symbol, sec_type="FOP",
                                    expiry=parse_ib_expiry(expiry), strike=None, right=None,
                                    settings=self._settings)
            query.tradingClass = trading_class
            details = await self._contract_details(query)
            options += [await self._instrument_from_details(d) for d in details
                        if d.underConId == future.conId]
        return sorted(options, key=lambda i: (i.expiry, i.strike or 0.0, i.right or ""))

    # ------------------------------------------------------------------ market data

    def quotes(self, instruments: list[Instrument]) -> list[Quote]:
        c = self._config
        # one wait per batch of lines (twice: a 101 can halve them), and the pacer's time for a
        # subscribe and a cancel per instrument
        batches = -(-len(instruments) // max(1, c.market_data_lines))
        timeout = (c.request_timeout_seconds + 2 * batches * c.market_data_wait_seconds
                   + 2 * len(instruments) * c.pacing_window_seconds / c.pacing_limit)
        return self._run("quotes", lambda: self._quotes(instruments), timeout=timeout)

    async def _quotes(self, instruments: list[Instrument]) -> list[Quote]:
        await self._ensure_connected()
        items = [(i, await self._qualified(i)) for i in instruments]
        try:
            quotes = await quotes_in_batches(self._client, self._pacer.room_available,
                                             self._errors_by_req, items, self._config.market_data)
        except MarketDataFailure as e:
            raise _IBFailure(e.ib_code, e.ib_message, {"instrument": e.instrument}) from None
        if self.link.model_valuation:  # farm down or a competing session: no broker greeks
            quotes = [replace(q, greeks=None) for q in quotes]
        if any(q.bid is not None for q in quotes):
            self.link.market_data_answered()  # live data flows again: no competing session
        return quotes
