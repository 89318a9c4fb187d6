"""A deterministic simulated futures-options market and one trading account on it.

Pure: no Django, no I/O. `SimulatedMarket` is what the mock broker runs on, in development, tests
and benchmarks; everything it knows survives `to_state()` / `from_state()` as a JSON-compatible
dict, exactly.

The market
- Underlyings are the products of `brokers.products`. Each product has one random-walk index; its
  futures are the index times a carry factor `exp(carry * time to the future's expiry)`, so every
  future converges to the index at its expiry.
- The walk lives on a fixed grid of one-minute steps counted from `SimConfig.anchor` (where the
  index equals the product's reference price). Prices are constant within a step. The path is a
  function of (seed, anchor, product, step) only, never of how often or when anyone asked:
  daily log increments come from a counter-based generator keyed by (seed, product, chunk of
  1024 days), and each day is filled in with a Brownian bridge keyed by (seed, product, day).
  So a price a year after the anchor costs one day's bridge, not a year of minutes.
- Price shocks (`shock`) multiply the index and/or shift the at-the-money vol from the step that
  holds their time onwards; they are part of the state, so history is never rewritten (a shock
  may not be dated before the last moment the account was brought up to date).
- Futures: the next `LISTED_FUTURES` quarterly contracts of the product's listed months, expiring
  on the third Friday (holidays are ignored) at the product's last trading time
  (`brokers.products.future_last_trade`: 08:30 CT for the E-minis). Bid/ask one tick wide around the fair
  price, times the spread multiplier.
- Options on each listed future: the quarterly expiry (same day and time as the future) and the
  serial months before it (up to `SERIAL_OPTION_MONTHS`; CME's January and February ES options
  deliver the March future), which stop at the product's serial time (15:00 CT for the E-minis). Every strike on the product's grid exists; the
  chain shows `strikes_each_side` strikes either side of the money. Vol smile:
  `max(floor, atm + skew * k + curvature * k^2)` with `k = ln(K / F)`. Prices are Black-76 from
  `risk.greeks` (the products are American-style; the simulated market prices them as European,
  which for options on futures is within a few ticks), bid/ask `max(1 tick, 0.25% of value)`
  either side of it times the spread multiplier, rounded outwards to the option tick; a bid below
  one tick is no bid.
- Quotes carry the model greeks with `source="broker"` (as Interactive Brokers does) unless
  `SimConfig.broker_greeks` is false, in which case `Quote.greeks` is None and the platform
  computes its own.
- Quote modes per product (for tests of the spread and staleness guards): "normal", "stale"
  (quotes keep the prices and time of the moment stale mode was set; orders still execute at the
  live market), "bid_only", "ask_only", "no_quote" (these three also bind execution).

The account
- Execution at the touch: buys at the ask, sells at the bid, plus `slippage_ticks` against the
  order (a sell never below one tick), commission `commission_per_contract` per contract.
- Market orders fill at once (or are rejected "no_liquidity" when the side they need is missing).
  Limit orders fill at once when marketable; otherwise DAY and GTC limit orders rest as working
  orders and are matched at every later step, in time order, when the clock moves: they fill at
  that step's touch (never worse than the limit). DAY ends at the next 21:00 UTC, GTC at the
  first leg's expiry; IOC never rests.
- Partial fills: with a fill ratio r < 1 an incoming marketable order fills floor(units * r)
  units; the rest of a limit order rests (and fills in full when next matched), the rest of a
  market or IOC order is cancelled.
- Combos (several legs) fill atomically, each leg at its own touch. The combo unit is the gcd of
  the leg quantities; `OrderStatus` quantities count units and its average price is the net
  price per unit (positive = debit), like `OrderRequest.limit_price`.
- Positions are average-cost. A closing fill reports `realized_pnl` in USD (after multiplier,
  before commission, rounded to cents); commissions are tracked apart. Cash is
  initial cash + realized P&L - commissions; net liquidation adds the unrealized P&L of the open
  positions marked at the model's fair values. `AccountSummary.realized_pnl` is net of
  commissions (as Interactive Brokers reports it), unlike `Fill.realized_pnl`. Margin is
  SPAN-like: the worst loss per product over price moves of +-`price_scan` and vol moves of
  +-`vol_scan` (maintenance), times 1.1 (initial).
- Expiry: at its expiry time a future settles at its fair price rounded to the tick, an option
  at its intrinsic value against its future's settlement price, cash-settled into realized P&L
  through a settlement fill (commission 0, `client_order_id` ""), so the position disappears.
- Client order ids are idempotent: the same id again returns the existing order and never fills
  twice; the same id with a different order is refused ("duplicate_client_order_id").
- Injected faults: the next N orders rejected with a code; a disconnect (the broker adapter
  refuses every call until a reconnect, optionally after a number of failed reconnects); a fill
  ratio.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache, reduce
from typing import Any, Literal

import numpy as np

from brokers.codec import instrument_from_json, instrument_to_json
from brokers.domain import (
    AccountSummary,
    Fill,
    Greeks,
    Instrument,
    OrderLeg,
    OrderRequest,
    OrderState,
    OrderStatus,
    Position,
    Quote,
    Right,
    SecType,
    Side,
)
from brokers.products import PRODUCTS, Product, expiry_moment, future_last_trade, option_last_trade
from risk.greeks import Black76, black76

UTC = timezone.utc
STEP = timedelta(minutes=1)
STEPS_PER_DAY = 1440
DAYS_PER_CHUNK = 1024
SECONDS_PER_YEAR = 365.0 * 86400.0
DAY_END_UTC = time(21, 0)  # DAY orders end at 21:00 UTC; contracts expire by their product's rules
LISTED_FUTURES = 4
SERIAL_OPTION_MONTHS = 2
MIN_TIME_TO_EXPIRY = 60.0 / SECONDS_PER_YEAR  # keeps Black-76 finite in the last minute
OPTION_HALF_SPREAD_FRACTION = 0.0025
FUTURE_QUOTE_SIZE = 50
OPTION_QUOTE_SIZE = 25
INITIAL_MARGIN_FACTOR = 1.1
MAX_LEGS = 8
MATCH_CHUNK_STEPS = 20_000
STATE_VERSION = 1

DEFAULT_SEED = 0
DEFAULT_ANCHOR = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_COMMISSION_PER_CONTRACT = 2.25
DEFAULT_INITIAL_CASH = 1_000_000.0
DEFAULT_RATE = 0.04

QuoteMode = Literal["normal", "stale", "bid_only", "ask_only", "no_quote"]
QUOTE_MODES: tuple[str, ...] = ("normal", "stale", "bid_only", "ask_only", "no_quote")
TERMINAL_STATES: frozenset[str] = frozenset({"filled", "cancelled", "rejected"})
_EPS = 1e-9


class SimulationError(Exception):
    """A request the simulated market refuses; the broker adapter turns it into a BrokerError."""

    def __init__(
        self, code: str, message: str, *, retryable: bool = False, context: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.context = dict(context or {})


@dataclass(frozen=True, slots=True)
class MarketParams:
    """How the simulated market of one product behaves, beyond `brokers.products.Product`."""

    carry: float  # annual log basis of the futures over the index (negative: backwardation)
    strike_step: float
    strikes_each_side: int  # shown in the chain around the money
    skew: float  # vol change per unit of log-moneyness
    curvature: float  # vol change per unit of log-moneyness squared
    vol_floor: float
    price_scan: float  # SPAN-like price scan range, a fraction of the price
    vol_scan: float  # SPAN-like vol scan range, in vol (0.04 = 4 points)


MARKET_PARAMS: dict[str, MarketParams] = {
    "ES": MarketParams(0.010, 25.0, 20, -0.60, 1.00, 0.05, 0.06, 0.04),
    "NQ": MarketParams(0.010, 100.0, 20, -0.50, 1.00, 0.06, 0.07, 0.04),
    "CL": MarketParams(-0.020, 1.0, 15, -0.15, 1.20, 0.10, 0.10, 0.06),
    "GC": MarketParams(0.035, 25.0, 20, 0.08, 0.80, 0.06, 0.06, 0.03),
}


# ---------------------------------------------------------------------------------------------
# Clock


class SimClock:
    """The simulated market's time: manual (tests move it) or following the wall clock."""

    def __init__(self, start: datetime | None = None, *, follow_wall: bool = False) -> None:
        if follow_wall == (start is not None):
            raise ValueError("give either a start time (manual clock) or follow_wall=True")
        self._follow_wall = follow_wall
        self._now = _utc(start) if start is not None else None

    @classmethod
    def manual(cls, start: datetime) -> SimClock:
        return cls(start)

    @classmethod
    def wall(cls) -> SimClock:
        return cls(follow_wall=True)

    @property
    def is_manual(self) -> bool:
        return not self._follow_wall

    def now(self) -> datetime:
        if self._now is None:
            return datetime.now(UTC)
        return self._now

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the clock never goes back")
        return self.jump(self._manual_now() + timedelta(seconds=seconds))

    def jump(self, to: datetime) -> datetime:
        to = _utc(to)
        if to < self._manual_now():
            raise ValueError("the clock never goes back")
        self._now = to
        return to

    def _manual_now(self) -> datetime:
        if self._now is None:
            raise ValueError("a clock that follows the wall clock cannot be moved")
        return self._now

    def to_state(self) -> dict[str, Any]:
        if self._now is None:
            return {"mode": "wall"}
        return {"mode": "manual", "now": self._now.isoformat()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SimClock:
        if state["mode"] == "wall":
            return cls.wall()
        return cls.manual(datetime.fromisoformat(state["now"]))


# ---------------------------------------------------------------------------------------------
# Configuration and calendar


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: int = DEFAULT_SEED
    anchor: datetime = DEFAULT_ANCHOR  # the index equals each product's reference price here
    always_open: bool = True  # False: orders only during the product's exchange sessions
    slippage_ticks: int = 0
    commission_per_contract: float = DEFAULT_COMMISSION_PER_CONTRACT
    initial_cash: float = DEFAULT_INITIAL_CASH
    rate: float = DEFAULT_RATE
    broker_greeks: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError("seed must be a non-negative integer")
        if self.anchor.tzinfo is None:
            raise ValueError("anchor must be timezone-aware")
        if self.slippage_ticks < 0:
            raise ValueError("slippage_ticks must be >= 0")
        if not (self.commission_per_contract >= 0 and math.isfinite(self.commission_per_contract)):
            raise ValueError("commission_per_contract must be >= 0")

    def to_state(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "anchor": self.anchor.isoformat(),
            "always_open": self.always_open,
            "slippage_ticks": self.slippage_ticks,
            "commission_per_contract": self.commission_per_contract,
            "initial_cash": self.initial_cash,
            "rate": self.rate,
            "broker_greeks": self.broker_greeks,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SimConfig:
        return cls(**{**state, "anchor": datetime.fromisoformat(state["anchor"])})


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _next_day_end(moment: datetime) -> datetime:
    end = datetime.combine(moment.date(), DAY_END_UTC, tzinfo=UTC)
    return end if end > moment else end + timedelta(days=1)


class _Sessions:
    """Exchange sessions from pandas_market_calendars, as sorted open/close arrays (UTC seconds)."""

    def __init__(self, calendar_name: str) -> None:
        self._calendar_name = calendar_name
        self._years: set[int] = set()
        self._opens = np.empty(0)
        self._closes = np.empty(0)

    def open_mask(self, epoch_seconds: np.ndarray) -> np.ndarray:
        first = datetime.fromtimestamp(float(epoch_seconds.min()), UTC).year
        last = datetime.fromtimestamp(float(epoch_seconds.max()), UTC).year
        self._load_years(range(first, last + 1))
        index = np.searchsorted(self._opens, epoch_seconds, side="right") - 1
        valid = index >= 0
        closes = self._closes[np.clip(index, 0, None)]
        return valid & (epoch_seconds < closes)

    def _load_years(self, years: Iterable[int]) -> None:
        missing = [y for y in years if y not in self._years]
        if not missing:
            return
        import pandas_market_calendars as market_calendars  # heavy import, only when hours matter

        calendar = market_calendars.get_calendar(self._calendar_name)
        self._years.update(missing)
        schedule = calendar.schedule(f"{min(self._years) - 1}-12-25", f"{max(self._years) + 1}-01-05")
        self._opens = schedule["market_open"].map(lambda t: t.timestamp()).to_numpy(dtype=np.float64)
        self._closes = schedule["market_close"].map(lambda t: t.timestamp()).to_numpy(dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# The random walk (module-level caches: pure functions of their arguments)


def _product_code(symbol: str) -> int:
    return int.from_bytes(symbol.encode("ascii"), "big")


def _zigzag(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def _generator(seed: int, symbol: str, kind: int, counter: int) -> np.random.Generator:
    sequence = np.random.SeedSequence([seed, _product_code(symbol), kind, _zigzag(counter)])
    return np.random.Generator(np.random.Philox(sequence))


def _daily_vol(symbol: str) -> float:
    return PRODUCTS[symbol].reference_vol / math.sqrt(365.0)


@lru_cache(maxsize=256)
def _daily_chunk(seed: int, symbol: str, chunk: int) -> np.ndarray:
    """Cumulative log level over one chunk of days, relative to the chunk's start (length +1)."""
    sigma = _daily_vol(symbol)
    increments = sigma * _generator(seed, symbol, 0, chunk).standard_normal(DAYS_PER_CHUNK) - 0.5 * sigma**2
    return np.concatenate(([0.0], np.cumsum(increments)))


@lru_cache(maxsize=256)
def _chunk_start(seed: int, symbol: str, chunk: int) -> float:
    if chunk == 0:
        return 0.0
    if chunk > 0:
        return _chunk_start(seed, symbol, chunk - 1) + float(_daily_chunk(seed, symbol, chunk - 1)[-1])
    return _chunk_start(seed, symbol, chunk + 1) - float(_daily_chunk(seed, symbol, chunk)[-1])


def _day_start_level(seed: int, symbol: str, day: int) -> float:
    chunk, offset = divmod(day, DAYS_PER_CHUNK)
    return _chunk_start(seed, symbol, chunk) + float(_daily_chunk(seed, symbol, chunk)[offset])


@lru_cache(maxsize=1024)
def _intraday_bridge(seed: int, symbol: str, day: int) -> np.ndarray:
    """A Brownian bridge from 0 back to 0 over the day's steps, in log units."""
    sigma = _daily_vol(symbol) / math.sqrt(STEPS_PER_DAY)
    normals = _generator(seed, symbol, 1, day).standard_normal(STEPS_PER_DAY)
    walk = np.concatenate(([0.0], np.cumsum(sigma * normals)))
    fraction = np.arange(STEPS_PER_DAY + 1) / STEPS_PER_DAY
    return (walk - fraction * walk[-1])[:STEPS_PER_DAY]


def index_log_levels(seed: int, symbol: str, steps: np.ndarray) -> np.ndarray:
    """log(index / reference price) at each step (steps counted from the anchor)."""
    days = np.floor_divide(steps, STEPS_PER_DAY)
    offsets = steps - days * STEPS_PER_DAY
    levels = np.empty(steps.shape, dtype=np.float64)
    for day in np.unique(days).tolist():
        mask = days == day
        start = _day_start_level(seed, symbol, day)
        end = _day_start_level(seed, symbol, day + 1)
        within = offsets[mask]
        trend = start + (end - start) * (within / STEPS_PER_DAY)
        levels[mask] = trend + _intraday_bridge(seed, symbol, day)[within]
    return levels


# ---------------------------------------------------------------------------------------------
# Tick arithmetic


def _tick_decimals(tick: float) -> int:
    return max(0, -Decimal(str(tick)).normalize().as_tuple().exponent)


def _ticks_floor(values: np.ndarray, tick: float) -> np.ndarray:
    return np.floor(values / tick + _EPS)


def _ticks_ceil(values: np.ndarray, tick: float) -> np.ndarray:
    return np.ceil(values / tick - _EPS)


def _ticks_round(values: np.ndarray, tick: float) -> np.ndarray:
    return np.floor(values / tick + 0.5)


def _price(ticks: np.ndarray, tick: float) -> np.ndarray:
    return np.round(ticks * tick, _tick_decimals(tick))


def _on_grid(value: float, step: float) -> bool:
    return value > 0 and abs(value / step - round(value / step)) < 1e-9


# ---------------------------------------------------------------------------------------------
# State records


@dataclass(frozen=True, slots=True)
class Shock:
    symbol: str
    at: datetime
    pct: float  # 0.05 = the index jumps 5% up
    vol_points: float  # added to the ATM vol, in vol (0.05 = 5 points)


@dataclass(frozen=True, slots=True)
class QuoteModeSetting:
    mode: QuoteMode
    since: datetime


@dataclass(frozen=True, slots=True)
class _MarketSnapshot:
    fair: np.ndarray
    bid: np.ndarray  # NaN: no bid
    ask: np.ndarray  # NaN: no ask
    vol: np.ndarray | None  # options: the smile vol
    forward: np.ndarray | None  # options: the underlying future's fair price


@dataclass(slots=True)
class _Order:
    request: OrderRequest
    broker_order_id: str
    sequence: int
    placed_at: datetime
    units: int
    state: OrderState
    updated_at: datetime
    filled_units: int = 0
    filled_value: float = 0.0  # sum of units x net price, for the average
    message: str = ""
    next_check_step: int | None = None  # resting orders: first step not yet matched
    ends_at: datetime | None = None  # resting orders: when they are cancelled if unfilled

    @property
    def is_resting(self) -> bool:
        return self.next_check_step is not None and self.state not in TERMINAL_STATES

    def status(self) -> OrderStatus:
        working = self.state not in TERMINAL_STATES
        return OrderStatus(
            client_order_id=self.request.client_order_id,
            broker_order_id=self.broker_order_id,
            state=self.state,
            filled_quantity=self.filled_units,
            remaining_quantity=self.units - self.filled_units if working else 0,
            average_fill_price=self.filled_value / self.filled_units if self.filled_units else None,
            message=self.message,
            time=self.updated_at,
        )


@dataclass(slots=True)
class _Faults:
    disconnected: bool = False
    failed_reconnects: int = 0
    rejections_remaining: int = 0
    rejection_code: str = "rejected"
    rejection_message: str = ""
    fill_ratio: float = 1.0


@dataclass(slots=True)
class _Ledger:
    positions: dict[str, Position] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    realized_pnl: float = 0.0
    commissions: float = 0.0
    fill_sequence: int = 0


# ---------------------------------------------------------------------------------------------
# The market and the account


class SimulatedMarket:
    """The market and one account on it, driven by a `SimClock`.

    Broker-like reads and writes: `lookup`, `listed_futures`, `option_chain`, `quotes`,
    `place_order`, `cancel_order`, `order_status`, `positions`, `fills_since`, `account_summary`.
    Controls: `shock`, `set_spread_multiplier`, `set_quote_mode`, `set_fill_ratio`,
    `inject_rejections`, `inject_disconnect` / `attempt_reconnect`, `update_execution_settings`.
    Every read first brings the account up to the clock (`sync`). `revision` changes whenever
    something happened that a store must keep; pure catching-up does not change it, because
    replaying it from the older state gives the same result.
    """

    def __init__(self, config: SimConfig | None = None, *, clock: SimClock | None = None) -> None:
        self.config = config or SimConfig()
        self.clock = clock or SimClock.wall()
        self.revision = 0  # bumped on every change that must be saved; not part of the state
        self._processed_time = self._anchor_floor(self.clock.now())
        self._shocks: list[Shock] = []
        self._spread_default = 1.0
        self._spread_by_symbol: dict[str, float] = {}
        self._quote_modes: dict[str, QuoteModeSetting] = {}
        self._faults = _Faults()
        self._orders: dict[str, _Order] = {}
        self._order_sequence = 0
        self._ledger = _Ledger()
        self._sessions: dict[str, _Sessions] = {}

    # --- time -----------------------------------------------------------------------------

    def now(self) -> datetime:
        """The clock's time, never earlier than what the account has already seen."""
        return max(self.clock.now(), self._processed_time)

    def _anchor_floor(self, moment: datetime) -> datetime:
        return self.config.anchor + STEP * self._step_of(moment)

    def _step_of(self, moment: datetime) -> int:
        return (_utc(moment) - self.config.anchor) // STEP

    def _step_seconds_to(self, moment: datetime, steps: np.ndarray) -> np.ndarray:
        """Seconds from each step's start until `moment`."""
        return (moment - self.config.anchor).total_seconds() - steps.astype(np.float64) * STEP.total_seconds()

    # --- instruments ----------------------------------------------------------------------

    def listed_futures(self, symbol: str) -> list[Instrument]:
        product = self._product(symbol)
        return [self._future(product, expiry) for expiry in self._listed_future_expiries(product, self.now())]

    def lookup(
        self,
        *,
        symbol: str,
        sec_type: SecType,
        expiry: date | None = None,
        strike: float | None = None,
        right: Right | None = None,
    ) -> Instrument:
        product = self._product(symbol)
        if sec_type == "FUT":
            listed = self._listed_future_expiries(product, self.now())
            chosen = listed[0] if expiry is None else expiry
            if chosen not in listed:
                raise SimulationError(
                    "instrument_not_found",
                    f"no listed {product.symbol} future expiring {chosen}",
                    context={"symbol": product.symbol, "expiry": str(chosen)},
                )
            return self._future(product, chosen)
        if sec_type == "FOP":
            if expiry is None or strike is None or right is None:
                raise SimulationError("invalid_request", "an option lookup needs expiry, strike and right")
            candidate = Instrument(
                symbol=product.symbol, sec_type="FOP", expiry=expiry, exchange=product.exchange,
                multiplier=product.multiplier, strike=float(strike), right=right,
            )
            instrument = self.resolve(candidate)
            self._require_tradable(instrument)
            return instrument
        raise SimulationError("invalid_request", f"unknown security type {sec_type!r}")

    def option_chain(self, underlying: Instrument) -> list[Instrument]:
        future = self.resolve(underlying)
        if future.is_option:
            raise SimulationError("invalid_request", "an option chain is asked of a future")
        self._require_tradable(future)
        product = PRODUCTS[future.symbol]
        params = MARKET_PARAMS[future.symbol]
        now = self.now()
        forward = float(self._future_fair(future, np.array([self._step_of(now)]))[0])
        atm = round(forward / params.strike_step)
        strikes = [
            round((atm + i) * params.strike_step, 10)
            for i in range(-params.strikes_each_side, params.strikes_each_side + 1)
            if atm + i > 0
        ]
        chain = []
        for expiry in self._option_expiries(product, future.expiry):
            if option_last_trade(product, expiry, future.expiry) <= now:
                continue
            for strike in strikes:
                for right in ("C", "P"):
                    chain.append(self._option(product, future.expiry, expiry, strike, right))
        return chain

    def resolve(self, instrument: Instrument) -> Instrument:
        """The canonical contract for a description, or SimulationError when none exists."""
        product = self._product(instrument.symbol)
        not_found = SimulationError(
            "instrument_not_found", f"no such contract: {instrument.key}",
            context={"instrument": instrument.key},
        )
        if instrument.sec_type == "FUT":
            if not self._is_future_expiry(product, instrument.expiry):
                raise not_found
            return self._future(product, instrument.expiry)
        if instrument.sec_type != "FOP" or instrument.strike is None or instrument.right not in ("C", "P"):
            raise not_found
        future_expiry = self._future_expiry_for_option(product, instrument.expiry)
        if future_expiry is None or (
            instrument.underlying_expiry is not None and instrument.underlying_expiry != future_expiry
        ):
            raise not_found
        if not _on_grid(instrument.strike, MARKET_PARAMS[product.symbol].strike_step):
            raise not_found
        strike = float(instrument.strike)
        return self._option(product, future_expiry, instrument.expiry, strike, instrument.right)

    def _product(self, symbol: str) -> Product:
        product = PRODUCTS.get(symbol.upper()) if isinstance(symbol, str) else None
        if product is None:
            raise SimulationError(
                "instrument_not_found", f"unknown product {symbol!r}; known: {', '.join(sorted(PRODUCTS))}"
            )
        return product

    @staticmethod
    def _future(product: Product, expiry: date) -> Instrument:
        instrument = Instrument(
            symbol=product.symbol, sec_type="FUT", expiry=expiry, exchange=product.exchange,
            multiplier=product.multiplier, trading_class=product.symbol,
        )
        return replace(instrument, broker_ref=f"SIM:{instrument.key}")

    @staticmethod
    def _option(
        product: Product, future_expiry: date, expiry: date, strike: float, right: Right
    ) -> Instrument:
        instrument = Instrument(
            symbol=product.symbol, sec_type="FOP", expiry=expiry, exchange=product.exchange,
            multiplier=product.multiplier, strike=strike, right=right,
            trading_class=product.option_trading_class, exercise_style=product.exercise_style,
            underlying_expiry=future_expiry,
        )
        return replace(instrument, broker_ref=f"SIM:{instrument.key}")

    @staticmethod
    def _is_future_expiry(product: Product, expiry: date) -> bool:
        return expiry.month in product.futures_months and expiry == third_friday(expiry.year, expiry.month)

    @staticmethod
    def _listed_future_expiries(product: Product, now: datetime) -> list[date]:
        expiries: list[date] = []
        year, month = now.year, now.month
        while len(expiries) < LISTED_FUTURES:
            if month in product.futures_months:
                expiry = third_friday(year, month)
                if future_last_trade(product, expiry) > now:
                    expiries.append(expiry)
            year, month = _add_months(year, month, 1)
        return expiries

    @staticmethod
    def _option_expiries(product: Product, future_expiry: date) -> list[date]:
        expiries = []
        for back in range(SERIAL_OPTION_MONTHS, 0, -1):
            year, month = _add_months(future_expiry.year, future_expiry.month, -back)
            if month not in product.futures_months:
                expiries.append(third_friday(year, month))
        return [*expiries, future_expiry]

    def _future_expiry_for_option(self, product: Product, expiry: date) -> date | None:
        for ahead in range(SERIAL_OPTION_MONTHS + 1):
            year, month = _add_months(expiry.year, expiry.month, ahead)
            if month in product.futures_months:
                future_expiry = third_friday(year, month)
                return future_expiry if expiry in self._option_expiries(product, future_expiry) else None
        return None

    def _require_tradable(self, instrument: Instrument) -> None:
        now = self.now()
        if expiry_moment(instrument) <= now:
            raise SimulationError(
                "instrument_expired", f"{instrument.key} has expired", context={"instrument": instrument.key}
            )
        future_expiry = instrument.underlying_expiry if instrument.is_option else instrument.expiry
        if future_expiry not in self._listed_future_expiries(PRODUCTS[instrument.symbol], now):
            raise SimulationError(
                "instrument_not_found", f"{instrument.key} is not listed yet",
                context={"instrument": instrument.key},
            )

    # --- prices ---------------------------------------------------------------------------

    def _index(self, symbol: str, steps: np.ndarray) -> np.ndarray:
        level = PRODUCTS[symbol].reference_price * np.exp(index_log_levels(self.config.seed, symbol, steps))
        for shock in self._shocks:
            if shock.symbol == symbol and shock.pct:
                level = level * np.where(steps >= self._step_of(shock.at), 1.0 + shock.pct, 1.0)
        return level

    def _atm_vol(self, symbol: str, steps: np.ndarray) -> np.ndarray:
        vol = np.full(steps.shape, PRODUCTS[symbol].reference_vol)
        for shock in self._shocks:
            if shock.symbol == symbol and shock.vol_points:
                vol = vol + np.where(steps >= self._step_of(shock.at), shock.vol_points, 0.0)
        return vol

    def _future_fair(self, future: Instrument, steps: np.ndarray) -> np.ndarray:
        seconds = np.maximum(self._step_seconds_to(expiry_moment(future), steps), 0.0)
        years = seconds / SECONDS_PER_YEAR
        return self._index(future.symbol, steps) * np.exp(MARKET_PARAMS[future.symbol].carry * years)

    def _smile_vol(self, symbol: str, strike: float, forward: np.ndarray, atm: np.ndarray) -> np.ndarray:
        params = MARKET_PARAMS[symbol]
        moneyness = np.log(strike / forward)
        return np.maximum(params.vol_floor, atm + params.skew * moneyness + params.curvature * moneyness**2)

    def _option_inputs(
        self,
        option: Instrument,
        steps: np.ndarray,
        *,
        vol_shift: float = 0.0,
        price_shift: float | np.ndarray = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forward, years to expiry and smile vol of an option at each step (optionally scenario-shifted)."""
        product = PRODUCTS[option.symbol]
        future = self._future(product, option.underlying_expiry)
        forward = self._future_fair(future, steps) * (1.0 + price_shift)
        seconds = self._step_seconds_to(expiry_moment(option), steps)
        years = np.maximum(seconds / SECONDS_PER_YEAR, MIN_TIME_TO_EXPIRY)
        atm = self._atm_vol(option.symbol, steps) + vol_shift
        vol = self._smile_vol(option.symbol, option.strike, forward, atm)
        return forward, years, vol

    def _fair(self, instrument: Instrument, steps: np.ndarray) -> np.ndarray:
        if not instrument.is_option:
            return self._future_fair(instrument, steps)
        forward, years, vol = self._option_inputs(instrument, steps)
        return self._black76(instrument, forward, years, vol).price

    def _black76(
        self, option: Instrument, forward: np.ndarray, years: np.ndarray, vol: np.ndarray
    ) -> Black76:
        return black76(forward, option.strike, years, self.config.rate, vol, option.right == "C")

    def _spread_multiplier(self, symbol: str) -> float:
        return self._spread_by_symbol.get(symbol, self._spread_default)

    def _quote_mode(self, symbol: str) -> QuoteModeSetting | None:
        return self._quote_modes.get(symbol, self._quote_modes.get("*"))

    def _snapshot(self, instrument: Instrument, steps: np.ndarray, *, for_execution: bool) -> _MarketSnapshot:
        product = PRODUCTS[instrument.symbol]
        multiplier = self._spread_multiplier(instrument.symbol)
        vol = forward = None
        if instrument.is_option:
            forward, years, vol = self._option_inputs(instrument, steps)
            fair = self._black76(instrument, forward, years, vol).price
            tick = product.option_tick
            half = multiplier * np.maximum(tick, OPTION_HALF_SPREAD_FRACTION * fair)
            bid_ticks = _ticks_floor(fair - half, tick)
            ask_ticks = np.maximum(_ticks_ceil(fair + half, tick), 1.0)
            bid = np.where(bid_ticks >= 1.0, _price(bid_ticks, tick), np.nan)
            ask = _price(ask_ticks, tick)
        else:
            fair = self._future_fair(instrument, steps)
            tick = product.future_tick
            width = max(1, int(math.floor(multiplier + 0.5)))
            bid_ticks = _ticks_floor(fair - (width - 1) / 2.0 * tick, tick)
            bid = _price(bid_ticks, tick)
            ask = _price(bid_ticks + width, tick)
        mode = self._quote_mode(instrument.symbol)
        if mode is not None and mode.mode in ("ask_only", "no_quote"):
            bid = np.full(steps.shape, np.nan)
        if mode is not None and mode.mode in ("bid_only", "no_quote"):
            ask = np.full(steps.shape, np.nan)
        if not self.config.always_open and for_execution:
            closed = ~self._open_mask(instrument.symbol, steps)
            bid = np.where(closed, np.nan, bid)
            ask = np.where(closed, np.nan, ask)
        return _MarketSnapshot(fair=fair, bid=bid, ask=ask, vol=vol, forward=forward)

    def _open_mask(self, symbol: str, steps: np.ndarray) -> np.ndarray:
        sessions = self._sessions.get(symbol)
        if sessions is None:
            sessions = self._sessions[symbol] = _Sessions(PRODUCTS[symbol].calendar)
        epoch = self.config.anchor.timestamp() + steps.astype(np.float64) * STEP.total_seconds()
        return sessions.open_mask(epoch)

    def is_open(self, symbol: str) -> bool:
        if self.config.always_open:
            return True
        return bool(self._open_mask(self._product(symbol).symbol, np.array([self._step_of(self.now())]))[0])

    def quotes(self, instruments: list[Instrument]) -> list[Quote]:
        self.sync()
        return [self._quote(self.resolve(instrument)) for instrument in instruments]

    def _quote(self, instrument: Instrument) -> Quote:
        self._require_tradable(instrument)
        quote_time = self.now()
        mode = self._quote_mode(instrument.symbol)
        if mode is not None and mode.mode == "stale":
            quote_time = max(mode.since, self.config.anchor)
        steps = np.array([self._step_of(quote_time)])
        snapshot = self._snapshot(instrument, steps, for_execution=False)
        product = PRODUCTS[instrument.symbol]
        tick = product.option_tick if instrument.is_option else product.future_tick
        bid, ask = _optional(snapshot.bid[0]), _optional(snapshot.ask[0])
        size = OPTION_QUOTE_SIZE if instrument.is_option else FUTURE_QUOTE_SIZE
        underlying_price = greeks = None
        if instrument.is_option:
            future_quote = self._quote(self._future(product, instrument.underlying_expiry))
            underlying_price = future_quote.mid
            if self.config.broker_greeks:
                forward, years, vol = self._option_inputs(instrument, steps)
                model = self._black76(instrument, forward, years, vol)
                greeks = Greeks(
                    delta=float(model.delta[0]), gamma=float(model.gamma[0]), vega=float(model.vega[0]),
                    theta=float(model.theta[0]), rho=float(model.rho[0]), implied_vol=float(vol[0]),
                    source="broker", time=quote_time,
                )
        return Quote(
            instrument=instrument,
            bid=bid,
            ask=ask,
            last=float(_price(_ticks_round(snapshot.fair, tick), tick)[0]),
            bid_size=size if bid is not None else 0,
            ask_size=size if ask is not None else 0,
            time=quote_time,
            underlying_price=underlying_price,
            greeks=greeks,
        )

    def model_vol(self, instrument: Instrument) -> float:
        """The smile vol the market prices an option with now."""
        option = self.resolve(instrument)
        if not option.is_option:
            raise SimulationError("invalid_request", "only options have a smile vol")
        return float(self._option_inputs(option, np.array([self._step_of(self.now())]))[2][0])

    # --- market controls ------------------------------------------------------------------

    def shock(self, symbol: str, pct: float, *, at: datetime | None = None, vol_points: float = 0.0) -> None:
        """From `at` (default now) on, the product's prices are x (1 + pct), its vols + vol_points."""
        product = self._product(symbol)
        self.sync()
        moment = self.now() if at is None else _utc(at)
        if moment < self._processed_time:
            raise SimulationError(
                "invalid_request", "a shock cannot be dated before the account's last update"
            )
        if not (pct > -1.0 and math.isfinite(pct) and math.isfinite(vol_points)):
            raise SimulationError("invalid_request", "a shock needs pct > -1 and finite values")
        self._shocks.append(Shock(product.symbol, moment, float(pct), float(vol_points)))
        self._changed_market()

    def set_spread_multiplier(self, symbol: str | None, multiplier: float) -> None:
        """Widen (or restore, 1.0) the spreads of one product, or of all when symbol is None."""
        if not (multiplier >= 1.0 and math.isfinite(multiplier)):
            raise SimulationError("invalid_request", "a spread multiplier is >= 1")
        self.sync()
        if symbol is None:
            self._spread_default = float(multiplier)
            self._spread_by_symbol.clear()
        else:
            self._spread_by_symbol[self._product(symbol).symbol] = float(multiplier)
        self._changed_market()

    def set_quote_mode(self, symbol: str | None, mode: QuoteMode) -> None:
        """Stale, one-sided or missing quotes for one product, or all when symbol is None."""
        if mode not in QUOTE_MODES:
            raise SimulationError("invalid_request", f"quote mode is one of {', '.join(QUOTE_MODES)}")
        self.sync()
        key = "*" if symbol is None else self._product(symbol).symbol
        if symbol is None:
            self._quote_modes.clear()
        if mode == "normal":
            self._quote_modes.pop(key, None)
        else:
            self._quote_modes[key] = QuoteModeSetting(mode, self.now())
        self._changed_market()

    def set_fill_ratio(self, ratio: float) -> None:
        if not (0.0 <= ratio <= 1.0):
            raise SimulationError("invalid_request", "the fill ratio is between 0 and 1")
        self.sync()
        self._faults.fill_ratio = float(ratio)
        self.revision += 1

    def inject_rejections(
        self, count: int, *, code: str = "rejected", message: str = "rejected by the simulated broker"
    ) -> None:
        """The next `count` orders are rejected with `code`."""
        if count < 0:
            raise SimulationError("invalid_request", "count must be >= 0")
        self._faults.rejections_remaining = int(count)
        self._faults.rejection_code = code
        self._faults.rejection_message = message
        self.revision += 1

    def inject_disconnect(self, *, failed_reconnects: int = 0) -> None:
        """The connection is lost: the adapter refuses every call until a reconnect succeeds,
        and the next `failed_reconnects` reconnects fail."""
        self._faults.disconnected = True
        self._faults.failed_reconnects = max(0, int(failed_reconnects))
        self.revision += 1

    @property
    def disconnected(self) -> bool:
        return self._faults.disconnected

    def attempt_reconnect(self) -> bool:
        """True when the connection is (back) up; consumes one injected failed reconnect."""
        if not self._faults.disconnected:
            return True
        if self._faults.failed_reconnects > 0:
            self._faults.failed_reconnects -= 1
            self.revision += 1
            return False
        self._faults.disconnected = False
        self.revision += 1
        return True

    def _changed_market(self) -> None:
        """A market change at `now` may make resting orders marketable at once."""
        self.revision += 1
        now = self.now()
        step = self._step_of(now)
        self._run_events(self._order_events(step, step, now), now)

    # --- orders ---------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderStatus:
        self.sync()
        existing = self._orders.get(request.client_order_id)
        if existing is not None:
            if _fingerprint(existing.request) != _fingerprint(request):
                raise SimulationError(
                    "duplicate_client_order_id",
                    "an order with this client order id exists and differs from this one",
                    context={"client_order_id": request.client_order_id},
                )
            return existing.status()
        request = self._validated(request)
        now = self.now()
        self._order_sequence += 1
        units = reduce(math.gcd, (leg.quantity for leg in request.legs))
        order = _Order(
            request=request, broker_order_id=f"SIM-{self._order_sequence:08d}", sequence=self._order_sequence,
            placed_at=now, units=units, state="submitted", updated_at=now,
        )
        self._orders[request.client_order_id] = order
        self.revision += 1
        if self._faults.rejections_remaining > 0:
            self._faults.rejections_remaining -= 1
            return self._reject(order, self._faults.rejection_code, self._faults.rejection_message)
        if not all(self.is_open(leg.instrument.symbol) for leg in request.legs):
            return self._reject(order, "market_closed", "the exchange is closed for this product")
        step = self._step_of(now)
        prices = self._execution_prices(request, np.array([step]))
        missing = [
            leg.instrument.key for leg, leg_prices in zip(request.legs, prices) if np.isnan(leg_prices[0])
        ]
        if missing and request.order_type == "MKT":
            return self._reject(order, "no_liquidity", f"no quote to trade against for {', '.join(missing)}")
        marketable = not missing and self._marketable(request, prices)[0]
        fill_units = math.floor(units * self._faults.fill_ratio + _EPS) if marketable else 0
        if fill_units:
            self._fill_order(order, fill_units, [float(p[0]) for p in prices], now)
        if order.filled_units == units:
            return order.status()
        if request.order_type == "MKT" or request.time_in_force == "IOC":
            return self._cancel(order, now, "no liquidity left at the touch for the rest of the order")
        order.next_check_step = step + 1
        order.ends_at = self._resting_end(request, now)
        return order.status()

    def cancel_order(self, client_order_id: str) -> OrderStatus:
        self.sync()
        order = self._orders.get(client_order_id)
        if order is None:
            raise SimulationError(
                "order_not_found", "no order with this client order id",
                context={"client_order_id": client_order_id},
            )
        if order.state not in TERMINAL_STATES:
            self._cancel(order, self.now(), "cancelled on request")
            self.revision += 1
        return order.status()

    def order_status(self, client_order_id: str) -> OrderStatus | None:
        self.sync()
        order = self._orders.get(client_order_id)
        return None if order is None else order.status()

    def _validated(self, request: OrderRequest) -> OrderRequest:
        def invalid(message: str) -> SimulationError:
            context = {"client_order_id": request.client_order_id}
            return SimulationError("invalid_order", message, context=context)

        if not request.client_order_id:
            raise invalid("the client order id is empty")
        if not 1 <= len(request.legs) <= MAX_LEGS:
            raise invalid(f"an order has 1 to {MAX_LEGS} legs")
        legs = []
        for leg in request.legs:
            if leg.side not in ("BUY", "SELL"):
                raise invalid(f"unknown side {leg.side!r}")
            if isinstance(leg.quantity, bool) or not isinstance(leg.quantity, int) or leg.quantity <= 0:
                raise invalid("leg quantities are positive whole contracts")
            instrument = self.resolve(leg.instrument)
            self._require_tradable(instrument)
            legs.append(OrderLeg(instrument=instrument, side=leg.side, quantity=leg.quantity))
        if len({leg.instrument.key for leg in legs}) != len(legs):
            raise invalid("a combo lists each contract once")
        if request.order_type == "MKT":
            if request.limit_price is not None:
                raise invalid("a market order has no limit price")
        elif request.order_type == "LMT":
            limit = request.limit_price
            if limit is None or not math.isfinite(limit):
                raise invalid("a limit order needs a finite limit price")
            if len(legs) == 1:
                product = PRODUCTS[legs[0].instrument.symbol]
                tick = product.option_tick if legs[0].instrument.is_option else product.future_tick
                if not _on_grid(limit, tick):
                    raise invalid(f"the limit price must be a positive multiple of the tick {tick:g}")
        else:
            raise invalid(f"unknown order type {request.order_type!r}")
        if request.time_in_force not in ("DAY", "GTC", "IOC"):
            raise invalid(f"unknown time in force {request.time_in_force!r}")
        return replace(request, legs=tuple(legs))

    def _resting_end(self, request: OrderRequest, now: datetime) -> datetime:
        first_expiry = min(expiry_moment(leg.instrument) for leg in request.legs)
        return min(_next_day_end(now), first_expiry) if request.time_in_force == "DAY" else first_expiry

    def _execution_prices(self, request: OrderRequest, steps: np.ndarray) -> list[np.ndarray]:
        """Per leg, the price each step would fill at (touch + slippage), NaN when it cannot."""
        prices = []
        for leg in request.legs:
            product = PRODUCTS[leg.instrument.symbol]
            tick = product.option_tick if leg.instrument.is_option else product.future_tick
            snapshot = self._snapshot(leg.instrument, steps, for_execution=True)
            slip = self.config.slippage_ticks * tick
            decimals = _tick_decimals(tick)
            if leg.side == "BUY":
                prices.append(np.round(snapshot.ask + slip, decimals))
            else:
                prices.append(np.round(np.maximum(snapshot.bid - slip, tick), decimals))
        return prices

    def _unit_cost(self, request: OrderRequest, prices: list[float] | list[np.ndarray]):
        """What one unit costs (negative: a credit); a single leg's own price keeps its sign convention."""
        units = reduce(math.gcd, (leg.quantity for leg in request.legs))
        return sum((1 if leg.side == "BUY" else -1) * (leg.quantity // units) * price
                   for leg, price in zip(request.legs, prices))

    def _marketable(self, request: OrderRequest, prices: list[np.ndarray]) -> np.ndarray:
        cost = self._unit_cost(request, prices)
        valid = ~np.isnan(cost)
        if request.order_type == "MKT":
            return valid
        limit = request.limit_price
        if not request.is_combo and request.legs[0].side == "SELL":
            limit = -limit
        return valid & (np.nan_to_num(cost, nan=np.inf) <= limit + _EPS)

    def _fill_order(self, order: _Order, units: int, prices: list[float], moment: datetime) -> None:
        request = order.request
        for leg, price in zip(request.legs, prices):
            quantity = leg.quantity // order.units * units
            commission = round(self.config.commission_per_contract * quantity, 2)
            self._book_fill(
                leg.instrument, leg.side, quantity, price, moment, request.client_order_id, commission
            )
        net = prices[0] if not request.is_combo else self._unit_cost(request, prices)
        order.filled_units += units
        order.filled_value += units * net
        order.state = "filled" if order.filled_units == order.units else "partially_filled"
        order.updated_at = moment
        if order.state == "filled":
            order.next_check_step = None
        self.revision += 1

    def _reject(self, order: _Order, code: str, message: str) -> OrderStatus:
        order.state = "rejected"
        order.message = f"{code}: {message}"
        order.next_check_step = None
        return order.status()

    def _cancel(self, order: _Order, moment: datetime, message: str) -> OrderStatus:
        order.state = "cancelled"
        order.message = message
        order.updated_at = moment
        order.next_check_step = None
        return order.status()

    # --- the passage of time --------------------------------------------------------------

    def sync(self) -> None:
        """Bring the account up to the clock: match resting orders step by step, settle expiries."""
        now = self.now()
        step = self._step_of(now)
        events = self._order_events(None, step, None)
        events += self._settlement_events(now, events)
        self._run_events(events, now)
        for order in self._orders.values():
            if order.is_resting:
                order.next_check_step = max(order.next_check_step, step + 1)
        self._processed_time = now

    def _order_events(
        self, first_step: int | None, last_step: int, fill_time: datetime | None
    ) -> list[tuple]:
        """(time, priority, tiebreak, action) for each resting order that fills or ends by `last_step`."""
        events = []
        for order in sorted(self._orders.values(), key=lambda o: o.sequence):
            if not order.is_resting:
                continue
            start = order.next_check_step if first_step is None else first_step
            end_step = min(last_step, self._step_of(order.ends_at - timedelta(microseconds=1)))
            crossing = self._first_crossing(order.request, start, end_step)
            if crossing is not None:
                step, prices = crossing
                moment = fill_time or self.config.anchor + STEP * step
                events.append((moment, 0, order.sequence, ("fill", order, prices)))
            elif fill_time is None and order.ends_at <= self.now():
                events.append((order.ends_at, 0, order.sequence, ("end", order, None)))
        return events

    def _first_crossing(self, request: OrderRequest, first: int, last: int) -> tuple[int, list[float]] | None:
        for chunk_start in range(first, last + 1, MATCH_CHUNK_STEPS):
            steps = np.arange(chunk_start, min(last, chunk_start + MATCH_CHUNK_STEPS - 1) + 1)
            prices = self._execution_prices(request, steps)
            marketable = self._marketable(request, prices)
            if marketable.any():
                index = int(np.argmax(marketable))
                return int(steps[index]), [float(p[index]) for p in prices]
        return None

    def _settlement_events(self, now: datetime, order_events: list[tuple]) -> list[tuple]:
        keys: dict[str, Instrument] = {key: p.instrument for key, p in self._ledger.positions.items()}
        for _, _, _, (kind, order, _) in order_events:
            if kind == "fill":
                keys.update({leg.instrument.key: leg.instrument for leg in order.request.legs})
        return [
            (expiry_moment(instrument), 1, key, ("settle", instrument, None))
            for key, instrument in keys.items()
            if expiry_moment(instrument) <= now
        ]

    def _run_events(self, events: list[tuple], now: datetime) -> None:
        for moment, _, _, (kind, subject, prices) in sorted(events, key=lambda e: e[:3]):
            if kind == "fill":
                self._fill_order(subject, subject.units - subject.filled_units, prices, moment)
            elif kind == "end":
                self._cancel(subject, moment, "expired unfilled at the end of its time in force")
                self.revision += 1
            else:
                self._settle(subject, moment)

    def _settle(self, instrument: Instrument, moment: datetime) -> None:
        position = self._ledger.positions.get(instrument.key)
        if position is None:
            return
        product = PRODUCTS[instrument.symbol]
        step = np.array([self._step_of(moment)])
        tick = product.future_tick
        future_expiry = instrument.underlying_expiry if instrument.is_option else instrument.expiry
        future = self._future(product, future_expiry)
        settlement = float(_price(_ticks_round(self._future_fair(future, step), tick), tick)[0])
        if instrument.is_option:
            sign = 1.0 if instrument.right == "C" else -1.0
            intrinsic = sign * (settlement - instrument.strike)
            settlement = round(max(0.0, intrinsic), _tick_decimals(product.future_tick))
        side: Side = "SELL" if position.quantity > 0 else "BUY"
        self._book_fill(instrument, side, abs(position.quantity), settlement, moment, "", 0.0)
        self.revision += 1

    # --- the ledger -----------------------------------------------------------------------

    def _book_fill(
        self, instrument: Instrument, side: Side, quantity: int, price: float, moment: datetime,
        client_order_id: str, commission: float,
    ) -> Fill:
        ledger = self._ledger
        signed = quantity if side == "BUY" else -quantity
        position = ledger.positions.get(instrument.key)
        held = position.quantity if position else 0
        average = position.average_price if position else 0.0
        realized = None
        if held == 0 or (held > 0) == (signed > 0):
            new_quantity = held + signed
            new_average = (abs(held) * average + quantity * price) / abs(new_quantity)
        else:
            closing = min(quantity, abs(held))
            direction = 1 if held > 0 else -1
            realized = round(closing * (price - average) * direction * instrument.multiplier, 2)
            new_quantity = held + signed
            new_average = average if new_quantity * held > 0 else price
        if new_quantity == 0:
            ledger.positions.pop(instrument.key, None)
        else:
            ledger.positions[instrument.key] = Position(instrument, new_quantity, new_average)
        ledger.fill_sequence += 1
        fill = Fill(
            fill_id=f"SIMF-{ledger.fill_sequence:08d}", client_order_id=client_order_id,
            instrument=instrument, side=side, quantity=quantity, price=price, commission=commission,
            time=moment, realized_pnl=realized,
        )
        ledger.fills.append(fill)
        ledger.realized_pnl = round(ledger.realized_pnl + (realized or 0.0), 2)
        ledger.commissions = round(ledger.commissions + commission, 2)
        return fill

    def positions(self) -> list[Position]:
        self.sync()
        return [self._ledger.positions[key] for key in sorted(self._ledger.positions)]

    def fills_since(self, since: datetime) -> list[Fill]:
        self.sync()
        since = _utc(since)
        return [fill for fill in self._ledger.fills if fill.time >= since]

    def account_summary(self) -> AccountSummary:
        self.sync()
        step = np.array([self._step_of(self.now())])
        unrealized = 0.0
        for position in self._ledger.positions.values():
            mark = float(self._fair(position.instrument, step)[0])
            unrealized += position.quantity * (mark - position.average_price) * position.instrument.multiplier
        cash = self.config.initial_cash + self._ledger.realized_pnl - self._ledger.commissions
        net_liquidation = cash + unrealized
        maintenance = self._scan_margin(step)
        initial = INITIAL_MARGIN_FACTOR * maintenance
        return AccountSummary(
            currency="USD",
            net_liquidation=round(net_liquidation, 2),
            initial_margin=round(initial, 2),
            maintenance_margin=round(maintenance, 2),
            available_funds=round(net_liquidation - initial, 2),
            realized_pnl=round(self._ledger.realized_pnl - self._ledger.commissions, 2),
            unrealized_pnl=round(unrealized, 2),
        )

    def _scan_margin(self, step: np.ndarray) -> float:
        """Worst loss per product over a grid of price and vol moves, summed over products."""
        by_symbol: dict[str, list[Position]] = {}
        for position in self._ledger.positions.values():
            by_symbol.setdefault(position.instrument.symbol, []).append(position)
        total = 0.0
        for symbol, positions in by_symbol.items():
            params = MARKET_PARAMS[symbol]
            moves = np.linspace(-params.price_scan, params.price_scan, 7)
            steps = np.repeat(step, moves.size)
            changes = np.zeros((2, moves.size))
            for position in positions:
                instrument = position.instrument
                now_value = float(self._fair(instrument, step)[0])
                for row, vol_shift in enumerate((-params.vol_scan, params.vol_scan)):
                    if instrument.is_option:
                        forward, years, vol = self._option_inputs(
                            instrument, steps, vol_shift=vol_shift, price_shift=moves
                        )
                        values = self._black76(instrument, forward, years, vol).price
                    else:
                        values = now_value * (1.0 + moves)
                    changes[row] += position.quantity * (values - now_value) * instrument.multiplier
            total += max(0.0, -float(changes.min()))
        return total

    # --- state ----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        ledger = self._ledger
        faults = self._faults
        return {
            "version": STATE_VERSION,
            "config": self.config.to_state(),
            "clock": self.clock.to_state(),
            "processed_time": self._processed_time.isoformat(),
            "shocks": [
                {"symbol": s.symbol, "at": s.at.isoformat(), "pct": s.pct, "vol_points": s.vol_points}
                for s in self._shocks
            ],
            "spread": {
                "default": self._spread_default,
                "by_symbol": dict(sorted(self._spread_by_symbol.items())),
            },
            "quote_modes": {
                key: {"mode": setting.mode, "since": setting.since.isoformat()}
                for key, setting in sorted(self._quote_modes.items())
            },
            "faults": {
                "disconnected": faults.disconnected,
                "failed_reconnects": faults.failed_reconnects,
                "rejections_remaining": faults.rejections_remaining,
                "rejection_code": faults.rejection_code,
                "rejection_message": faults.rejection_message,
                "fill_ratio": faults.fill_ratio,
            },
            "order_sequence": self._order_sequence,
            "orders": [_order_to_state(o) for o in sorted(self._orders.values(), key=lambda o: o.sequence)],
            "positions": [
                {
                    "instrument": instrument_to_json(p.instrument),
                    "quantity": p.quantity,
                    "average_price": p.average_price,
                }
                for _, p in sorted(ledger.positions.items())
            ],
            "fills": [fill_to_state(fill) for fill in ledger.fills],
            "realized_pnl": ledger.realized_pnl,
            "commissions": ledger.commissions,
            "fill_sequence": ledger.fill_sequence,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], *, clock: SimClock | None = None) -> SimulatedMarket:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported simulator state version {state.get('version')!r}")
        clock = clock or SimClock.from_state(state["clock"])
        market = cls(SimConfig.from_state(state["config"]), clock=clock)
        market._processed_time = datetime.fromisoformat(state["processed_time"])
        market._shocks = [
            Shock(s["symbol"], datetime.fromisoformat(s["at"]), s["pct"], s["vol_points"])
            for s in state["shocks"]
        ]
        market._spread_default = state["spread"]["default"]
        market._spread_by_symbol = dict(state["spread"]["by_symbol"])
        market._quote_modes = {
            key: QuoteModeSetting(value["mode"], datetime.fromisoformat(value["since"]))
            for key, value in state["quote_modes"].items()
        }
        market._faults = _Faults(**state["faults"])
        market._order_sequence = state["order_sequence"]
        market._orders = {}
        for data in state["orders"]:
            order = _order_from_state(data)
            market._orders[order.request.client_order_id] = order
        market._ledger = _Ledger(
            positions={
                (instrument := instrument_from_json(p["instrument"])).key: Position(
                    instrument, p["quantity"], p["average_price"]
                )
                for p in state["positions"]
            },
            fills=[fill_from_state(f) for f in state["fills"]],
            realized_pnl=state["realized_pnl"],
            commissions=state["commissions"],
            fill_sequence=state["fill_sequence"],
        )
        return market

    def update_execution_settings(
        self, *, always_open: bool, slippage_ticks: int, commission_per_contract: float
    ) -> None:
        """Apply new execution settings (the market's seed and anchor stay: they are its identity)."""
        config = replace(
            self.config, always_open=always_open, slippage_ticks=slippage_ticks,
            commission_per_contract=commission_per_contract,
        )
        if config != self.config:
            self.sync()
            self.config = config
            self._changed_market()


# ---------------------------------------------------------------------------------------------
# Serialization helpers (JSON-compatible dicts; floats round-trip exactly through json)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(UTC)


def _fingerprint(request: OrderRequest) -> tuple:
    """What makes two requests the same order, whatever optional instrument fields they carry."""
    return (
        request.order_type,
        request.limit_price,
        request.time_in_force,
        tuple((leg.instrument.key, leg.side, leg.quantity) for leg in request.legs),
    )


def _optional(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def fill_to_state(fill: Fill) -> dict[str, Any]:
    return {
        "fill_id": fill.fill_id,
        "client_order_id": fill.client_order_id,
        "instrument": instrument_to_json(fill.instrument),
        "side": fill.side,
        "quantity": fill.quantity,
        "price": fill.price,
        "commission": fill.commission,
        "time": fill.time.isoformat(),
        "realized_pnl": fill.realized_pnl,
    }


def fill_from_state(data: dict[str, Any]) -> Fill:
    return Fill(**{
        **data,
        "instrument": instrument_from_json(data["instrument"]),
        "time": datetime.fromisoformat(data["time"]),
    })


def order_request_to_state(request: OrderRequest) -> dict[str, Any]:
    return {
        "client_order_id": request.client_order_id,
        "legs": [
            {"instrument": instrument_to_json(leg.instrument), "side": leg.side, "quantity": leg.quantity}
            for leg in request.legs
        ],
        "order_type": request.order_type,
        "limit_price": request.limit_price,
        "time_in_force": request.time_in_force,
    }


def order_request_from_state(data: dict[str, Any]) -> OrderRequest:
    return OrderRequest(
        client_order_id=data["client_order_id"],
        legs=tuple(
            OrderLeg(instrument_from_json(leg["instrument"]), leg["side"], leg["quantity"])
            for leg in data["legs"]
        ),
        order_type=data["order_type"],
        limit_price=data["limit_price"],
        time_in_force=data["time_in_force"],
    )


def _order_to_state(order: _Order) -> dict[str, Any]:
    return {
        "request": order_request_to_state(order.request),
        "broker_order_id": order.broker_order_id,
        "sequence": order.sequence,
        "placed_at": order.placed_at.isoformat(),
        "units": order.units,
        "state": order.state,
        "updated_at": order.updated_at.isoformat(),
        "filled_units": order.filled_units,
        "filled_value": order.filled_value,
        "message": order.message,
        "next_check_step": order.next_check_step,
        "ends_at": order.ends_at.isoformat() if order.ends_at else None,
    }


def _order_from_state(data: dict[str, Any]) -> _Order:
    return _Order(
        request=order_request_from_state(data["request"]),
        broker_order_id=data["broker_order_id"],
        sequence=data["sequence"],
        placed_at=datetime.fromisoformat(data["placed_at"]),
        units=data["units"],
        state=data["state"],
        updated_at=datetime.fromisoformat(data["updated_at"]),
        filled_units=data["filled_units"],
        filled_value=data["filled_value"],
        message=data["message"],
        next_check_step=data["next_check_step"],
        ends_at=datetime.fromisoformat(data["ends_at"]) if data["ends_at"] else None,
    )
