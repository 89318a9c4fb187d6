"""What the fake TWS knows: contracts, orders and their executions, positions, client sessions, and
the actions a test scripts for the next order."""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from brokers.tests.fake_tws.wire import num

LIVE, FROZEN, DELAYED, DELAYED_FROZEN = 1, 2, 3, 4  # market data types (reqMarketDataType)


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
                num(self.strike), self.right, self.multiplier, self.exchange, self.currency,
                self.local_symbol, self.trading_class]


@dataclass(frozen=True)
class ComboLegSpec:
    con_id: int
    ratio: int
    action: str
    exchange: str


@dataclass(frozen=True)
class Fill:
    """Fill the order at `price` (default: its limit price): all that remains of it, or only
    `quantity` of it (a partial fill: the order stays working for the rest)."""

    price: float | None = None
    commission_per_contract: float = 1.25
    leg_prices: dict[int, float] | None = None  # combos: conId -> price per leg
    quantity: float | None = None


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


@dataclass(frozen=True)
class Held:
    """Accept the order and say nothing of it until `release_held_orders()` (then it rests): the
    window in which TWS has an order its client has not yet heard of."""


OrderAction = Fill | Rest | Reject | InactiveButWorking | ErrorButWorking | Held


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
    # The order's cumulative quantity and average price after this execution, as TWS reports them
    # (None: this execution's own, the order's only one).
    cum_quantity: float | None = None
    avg_price: float | None = None


@dataclass
class PositionState:
    quantity: float = 0.0
    average_price: float = 0.0


@dataclass
class Session:
    writer: asyncio.StreamWriter
    client_id: int = -1
    outbox: list[bytes] = field(default_factory=list)
    received_at: deque[float] = field(default_factory=deque)
    market_data_type: int = LIVE  # what reqMarketDataType asked for; TWS starts at live
    tickers: dict[int, int] = field(default_factory=dict)  # reqMktData id -> conId


def month_code(last_trade_date: str) -> str:
    return "FGHJKMNQUVXZ"[int(last_trade_date[4:6]) - 1] + last_trade_date[3]
