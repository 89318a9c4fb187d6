"""The broker interface: plain frozen dataclasses and one abstract class.

Nothing here touches Django or a network. Every adapter (simulated market, Interactive Brokers,
PhillipCapital) implements `Broker`; the rest of the platform sees only these types.

Conventions:
- prices are per unit of the instrument (an ES option quoted 12.25 is worth 12.25 x 50 USD);
- quantities are whole contracts; `Position.quantity` is signed (short < 0), `OrderLeg.quantity`
  is positive with the direction in `side`;
- times are timezone-aware UTC datetimes.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

SecType = Literal["FUT", "FOP"]
Right = Literal["C", "P"]
Side = Literal["BUY", "SELL"]
ExerciseStyle = Literal["american", "european"]
GreeksSource = Literal["broker", "model"]
MarketDataType = Literal["live", "frozen", "delayed", "delayed_frozen", "none"]
OrderState = Literal[
    "pending_submit", "submitted", "partially_filled", "filled", "cancelled", "rejected", "unknown"
]


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str  # product root, e.g. "ES"
    sec_type: SecType
    expiry: date  # last trading day of this contract
    exchange: str  # "CME", "CBOT", "NYMEX", "COMEX"
    multiplier: float  # USD per point
    currency: str = "USD"
    strike: float | None = None  # options only
    right: Right | None = None  # options only
    trading_class: str = ""
    exercise_style: ExerciseStyle | None = None  # options only
    underlying_expiry: date | None = None  # options: expiry of the future delivered
    broker_ref: str = ""  # the broker's own id (IB conId, ...) when known

    @property
    def is_option(self) -> bool:
        return self.sec_type == "FOP"

    def underlying_future(self) -> Instrument:
        """The future an option is written on (a future is its own)."""
        if not self.is_option:
            return self
        return Instrument(
            symbol=self.symbol, sec_type="FUT", expiry=self.underlying_expiry or self.expiry,
            exchange=self.exchange, multiplier=self.multiplier, currency=self.currency,
        )

    @property
    def key(self) -> str:
        """Stable text id, unique per contract, used as the position key everywhere."""
        if self.is_option:
            return f"{self.symbol} FOP {self.expiry:%Y%m%d} {self.strike:g} {self.right}"
        return f"{self.symbol} FUT {self.expiry:%Y%m%d}"


@dataclass(frozen=True, slots=True)
class Greeks:
    """Per one contract unit, in the units of risk/greeks.py (vega per vol point, theta per day)."""

    delta: float
    gamma: float
    vega: float
    theta: float
    rho: float
    implied_vol: float | None
    source: GreeksSource
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    instrument: Instrument
    bid: float | None
    ask: float | None
    last: float | None
    bid_size: int
    ask_size: int
    time: datetime
    underlying_price: float | None = None  # options: the future's mid when known
    greeks: Greeks | None = None  # the broker's model greeks when it has them
    # What kind of market data the prices are (IB's market data types 1-4): "live", "frozen" (the
    # last live values, market closed), "delayed" (typically 10-20 minutes old), "delayed_frozen",
    # or "none" when the broker sent no data at all for the instrument (no subscription).
    data_type: MarketDataType = "live"

    @property
    def mid(self) -> float | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2.0


@dataclass(frozen=True, slots=True)
class OrderLeg:
    instrument: Instrument
    side: Side
    quantity: int  # > 0

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "BUY" else -self.quantity


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order: a single leg, or a multi-leg combo sent as one unit.

    `client_order_id` is ours, deterministic and recorded before the broker is called, so a retry
    after an unknown outcome asks `order_status(client_order_id)` instead of sending again.
    For a combo, `limit_price` is the net price per combo unit (positive = debit).
    """

    client_order_id: str
    legs: tuple[OrderLeg, ...]
    order_type: Literal["MKT", "LMT"] = "LMT"
    limit_price: float | None = None
    time_in_force: Literal["DAY", "GTC", "IOC"] = "DAY"

    @property
    def is_combo(self) -> bool:
        return len(self.legs) > 1


@dataclass(frozen=True, slots=True)
class OrderStatus:
    client_order_id: str
    broker_order_id: str
    state: OrderState
    filled_quantity: int = 0
    remaining_quantity: int = 0
    average_fill_price: float | None = None
    message: str = ""
    time: datetime | None = None
    broker_perm_id: str = ""  # IB's permId: survives client ids and restarts, unlike the order id


@dataclass(frozen=True, slots=True)
class Fill:
    fill_id: str  # the broker's execution id: unique, used to deduplicate
    client_order_id: str
    instrument: Instrument
    side: Side
    quantity: int
    price: float
    commission: float
    time: datetime
    realized_pnl: float | None = None  # when the broker reports it for a closing fill


@dataclass(frozen=True, slots=True)
class Position:
    instrument: Instrument
    quantity: int  # signed
    average_price: float  # per unit


@dataclass(frozen=True, slots=True)
class AccountSummary:
    currency: str
    net_liquidation: float
    initial_margin: float
    maintenance_margin: float
    available_funds: float
    realized_pnl: float | None = None
    unrealized_pnl: float | None = None


@dataclass(frozen=True, slots=True)
class BrokerHealth:
    broker: str
    connected: bool
    detail: str = ""
    checked_at: datetime | None = None


class BrokerError(Exception):
    """The one failure type of every broker call.

    `payload()` is the structured form of the API contract; API views answer it as `detail`
    (503 when `retryable`, 502 otherwise). `message` and `context` must never hold a secret.
    """

    def __init__(
        self,
        *,
        operation: str,
        broker: str,
        code: str,
        message: str,
        retryable: bool,
        context: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{broker} {operation} failed [{code}]: {message}")
        self.operation = operation
        self.broker = broker
        self.code = code
        self.message = message
        self.retryable = retryable
        self.context = dict(context or {})

    def payload(self) -> dict[str, Any]:
        return {
            "type": "broker_error",
            "operation": self.operation,
            "broker": self.broker,
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "context": self.context,
        }


class Broker(abc.ABC):
    """What the platform asks of a broker. Synchronous: callers are Django views and Celery tasks.

    Every method raises `BrokerError` and nothing else.
    """

    name: str

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    @abc.abstractmethod
    def health(self) -> BrokerHealth: ...

    @abc.abstractmethod
    def lookup_instrument(
        self,
        *,
        symbol: str,
        sec_type: SecType,
        expiry: date | None = None,
        strike: float | None = None,
        right: Right | None = None,
    ) -> Instrument:
        """The one contract matching the description (`expiry=None` for a future: the front one)."""

    @abc.abstractmethod
    def quotes(self, instruments: list[Instrument]) -> list[Quote]:
        """One quote per instrument, in the same order."""

    @abc.abstractmethod
    def listed_futures(self, symbol: str) -> list[Instrument]:
        """The product's futures still trading, nearest expiry first."""

    @abc.abstractmethod
    def option_chain(self, underlying: Instrument) -> list[Instrument]:
        """Every listed option whose underlying is the given future (serial months included)."""

    @abc.abstractmethod
    def positions(self) -> list[Position]: ...

    @abc.abstractmethod
    def place_order(self, order: OrderRequest) -> OrderStatus: ...

    @abc.abstractmethod
    def cancel_order(self, client_order_id: str) -> OrderStatus: ...

    @abc.abstractmethod
    def order_status(self, client_order_id: str) -> OrderStatus | None:
        """The order we sent under this id, or None when the broker never received it."""

    @abc.abstractmethod
    def fills_since(self, since: datetime) -> list[Fill]: ...

    @abc.abstractmethod
    def account_summary(self) -> AccountSummary: ...

    def quote(self, instrument: Instrument) -> Quote:
        return self.quotes([instrument])[0]

    def settings_resolve(self) -> dict[str, Any]:
        """At connect: check the connection's product settings against the broker's own contract
        data. Returns the credential values it resolved (to keep), or raises BrokerError with code
        `invalid_contract_settings` and `context["fields"]` (field -> messages). Brokers whose
        credentials name no product have nothing to check."""
        return {}

