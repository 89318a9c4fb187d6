"""What a product is (`Product`, `TickRule`) and the arithmetic of its price grid.

Prices on CME are not one grid: an E-mini S&P 500 option trades in 0.05 up to a 5.00 premium
and in 0.25 above it; a 10-year note future in halves of a thirty-second. A `TickRule` is such a
grid: a regular tick, and optionally a reduced tick that applies at or below a premium threshold
(the threshold itself lies on both grids, so "below" and "at or below" give the same grid).
Its `floor`/`ceil`/`nearest`/`step` work on a float or on a numpy array alike, so the simulator's
vectorised quotes and the platform's single limit prices round with the same code.

Pure: no Django, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from typing import Literal

import numpy as np

from brokers.domain import ExerciseStyle

Exchange = Literal["CME", "CBOT", "NYMEX", "COMEX"]
PriceKind = Literal["future", "option"]
PriceFormat = Literal["decimal", "32nds"]
Settlement = Literal["cash", "physical"]
RollRule = Literal["equity_index", "business_days_before", "before_first_notice"]
FutureLastTradeRule = Literal[
    "third_friday",  # equity index: the 3rd Friday of the contract month
    "crude",  # 3 business days before the 25th of the month before (4 if the 25th is not one)
    "natural_gas",  # 3 business days before the first calendar day of the contract month
    "third_last_business_day",  # metals
    "seventh_before_last_business_day",  # 10-year note, bond
    "last_business_day",  # 5-year and 2-year notes, live cattle
    "before_fifteenth",  # grains: the business day before the 15th of the contract month
    "fx",  # 2 business days before the 3rd Wednesday of the contract month
    "tenth_business_day",  # lean hogs
]
OptionExpiryRule = Literal[
    "third_friday",  # equity index: the 3rd Friday of the option month
    "crude",  # 3 business days before the underlying future's last trading day
    "natural_gas",  # the business day before the underlying future's last trading day
    "metals",  # 4th last business day of the month before; a Friday or pre-holiday moves back a day
    "cbot_friday",  # last Friday at least 2 business days before the last business day of the month before
    "fx",  # the 2nd Friday before the 3rd Wednesday of the option month
    "first_friday",  # live cattle: the first Friday of the option month
    "with_future",  # lean hogs: the future's own last trading day
]

_GRID_EPS = 1e-9  # in ticks: absorbs float noise at grid points


def _decimals(step: float) -> int:
    return max(0, -Decimal(repr(step)).normalize().as_tuple().exponent)


def _floor_to(values: np.ndarray, step: float) -> np.ndarray:
    return np.floor(values / step + _GRID_EPS) * step


def _ceil_to(values: np.ndarray, step: float) -> np.ndarray:
    return np.ceil(values / step - _GRID_EPS) * step


@dataclass(frozen=True, slots=True)
class TickRule:
    """A price grid: `tick`, or `reduced_tick` for prices at or below `reduced_up_to`."""

    tick: float
    reduced_tick: float | None = None
    reduced_up_to: float = 0.0

    def __post_init__(self) -> None:
        if not self.tick > 0:
            raise ValueError("a tick is positive")
        if self.reduced_tick is not None:
            for step in (self.tick, self.reduced_tick):
                ratio = self.reduced_up_to / step
                if abs(ratio - round(ratio)) > 1e-9:
                    raise ValueError(f"the reduced-tick threshold {self.reduced_up_to} is not on the {step} grid")
            ratio = self.tick / self.reduced_tick
            if not 0 < self.reduced_tick < self.tick or abs(ratio - round(ratio)) > 1e-9:
                raise ValueError("the regular tick is a whole multiple of the reduced tick")

    @property
    def minimum(self) -> float:
        """The smallest increment anywhere on the grid (IB's `minTick`)."""
        return self.reduced_tick if self.reduced_tick is not None else self.tick

    @property
    def decimals(self) -> int:
        return max(_decimals(self.tick), _decimals(self.minimum))

    def _reduced(self, values: np.ndarray) -> np.ndarray:
        if self.reduced_tick is None:
            return np.zeros(values.shape, dtype=bool)
        return values <= self.reduced_up_to + self.reduced_tick * _GRID_EPS

    def tick_at(self, price: float) -> float:
        """The increment in force at `price` (the reduced one at the threshold itself)."""
        return self.reduced_tick if bool(self._reduced(np.asarray(price, dtype=float))) else self.tick  # type: ignore[return-value]

    def floor(self, values):  # float | np.ndarray -> same
        """The highest grid price at or below each value."""
        v = np.asarray(values, dtype=float)
        out = _floor_to(v, self.tick)
        if self.reduced_tick is not None:
            out = np.where(self._reduced(v), _floor_to(v, self.reduced_tick), out)
        return np.round(out, self.decimals)[()]

    def ceil(self, values):
        """The lowest grid price at or above each value."""
        v = np.asarray(values, dtype=float)
        out = _ceil_to(v, self.tick)
        if self.reduced_tick is not None:
            out = np.where(self._reduced(v), _ceil_to(v, self.reduced_tick), out)
        return np.round(out, self.decimals)[()]

    def nearest(self, values):
        """The nearest grid price (half-way rounds up)."""
        v = np.asarray(values, dtype=float)
        low, high = np.asarray(self.floor(v)), np.asarray(self.ceil(v))
        return np.where(v - low < high - v - self.minimum * _GRID_EPS, low, high)[()]

    def step(self, values, ticks: int):
        """Each value moved `ticks` grid steps (negative: down), from its nearest grid price."""
        out = np.asarray(self.nearest(values), dtype=float)
        for _ in range(abs(int(ticks))):
            if ticks > 0:
                up = self.tick if self.reduced_tick is None else np.where(
                    out < self.reduced_up_to - self.reduced_tick * _GRID_EPS, self.reduced_tick, self.tick)
                out = np.round(out + up, self.decimals)
            else:
                down = np.where(self._reduced(out), self.minimum, self.tick)
                out = np.round(out - down, self.decimals)
        return out[()]

    def on_grid(self, price: float) -> bool:
        return abs(float(self.nearest(price)) - price) <= self.minimum * 1e-6

    def describe(self) -> str:
        if self.reduced_tick is None:
            return f"{self.tick:g}"
        return f"{self.reduced_tick:g} up to {self.reduced_up_to:g}, {self.tick:g} above"


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    """One futures product and its options, as CME specifies them (see `table.py` for sources)."""

    symbol: str
    description: str
    exchange: Exchange  # as Interactive Brokers names it (`CME`, never `GLOBEX`)
    multiplier: float  # USD per unit of the quoted price, futures and options alike
    price_unit: str  # what the quoted price counts: "index points", "USD/bbl", "cents/bu", ...
    future_tick: float
    option_tick_rule: TickRule
    futures_months: tuple[int, ...]  # the listing cycle a desk trades (1 = January)
    future_last_trade_rule: FutureLastTradeRule
    future_last_trade_time: time  # in `zone`, on the last trading day
    option_trading_class: str  # CME Globex code of the standard options (IB's trading class)
    option_expiry_rule: OptionExpiryRule
    quarterly_option_last_trade_time: time  # options in a futures month (their "quarterly" series)
    serial_options: bool  # options also in the months between futures months, on the next future
    exercise_style: ExerciseStyle  # of the options in a futures month
    settlement: Settlement  # of the future at expiry; options always exercise into the future
    calendar: str  # the `risk.sessions` calendar of its trading sessions
    reference_price: float  # a plausible starting level for the simulated market
    reference_vol: float  # at-the-money implied volatility of the simulated market
    source: str  # the CME contract specification page
    currency: str = "USD"
    price_magnifier: int = 1  # IB's: its multiplier is `multiplier * price_magnifier` (cents: 100)
    price_format: PriceFormat = "decimal"
    serial_option_last_trade_time: time | None = None  # None: as the quarterly ones
    serial_exercise_style: ExerciseStyle | None = None  # None: as the quarterly ones
    serial_option_trading_class: str | None = None  # None: as the quarterly ones
    zone: str = "America/Chicago"  # the exchange's clock for last trading times
    roll_rule: RollRule = "equity_index"
    roll_business_days: int = 0  # for the business-day rules
    # What a hedge trade costs, one way: half the future's typical bid-ask spread (in ticks) plus
    # the typical all-in commission (broker, exchange, clearing) per contract, USD.
    future_spread_ticks: float = 1.0
    commission_per_contract: float = 2.25

    def __hash__(self) -> int:  # the symbol identifies a product; cheap for the calendar's caches
        return hash(self.symbol)

    @property
    def option_tick(self) -> float:
        """The smallest option increment (IB's `minTick` of the options)."""
        return self.option_tick_rule.minimum

    @property
    def future_tick_rule(self) -> TickRule:
        return TickRule(self.future_tick)

    @property
    def broker_multiplier(self) -> float:
        """The multiplier Interactive Brokers reports and expects (5000 for corn quoted in cents)."""
        return self.multiplier * self.price_magnifier

    def tick_rule(self, kind: PriceKind) -> TickRule:
        if kind == "future":
            return self.future_tick_rule
        if kind == "option":
            return self.option_tick_rule
        raise ValueError(f"a price is of a 'future' or an 'option', not {kind!r}")

    def serial_time(self) -> time:
        return self.serial_option_last_trade_time or self.quarterly_option_last_trade_time


def price_kind(is_option: bool) -> PriceKind:
    return "option" if is_option else "future"


def price_round(product: Product, price: float, *, kind: PriceKind = "future", side: str | None = None,
                passive: bool = False) -> float:
    """`price` on the product's real grid (tiered option ticks, 32nds and their fractions).

    - no side: the nearest grid price (marks, reference levels, limits with a price unit);
    - a BUY or SELL limit the platform means to be marketable (far touch plus protection ticks,
      the agent's orders): rounded away from the touch, a BUY up and a SELL down, so that rounding
      never turns a marketable order into a resting one;
    - `passive=True` (a price the caller does not want to improve on): a BUY down and a SELL up,
      so the order never pays more, or receives less, than asked.

    An option price is never below the smallest tick (a zero or negative premium is not a price).
    """
    rule = product.tick_rule(kind)
    if side is None:
        rounded = float(rule.nearest(price))
    elif side not in ("BUY", "SELL"):
        raise ValueError(f"side is BUY or SELL, not {side!r}")
    elif (side == "BUY") != passive:
        rounded = float(rule.ceil(price))
    else:
        rounded = float(rule.floor(price))
    return max(rounded, rule.minimum) if kind == "option" else rounded


def price_add_ticks(product: Product, price: float, ticks: int, *, kind: PriceKind = "future") -> float:
    """`price` (first put on the grid) moved `ticks` steps of the grid, each of the size in force
    where it goes: ES options 4.95 + 2 ticks = 5.25 (5.00, then 5.25)."""
    return float(product.tick_rule(kind).step(price, ticks))


def on_price_grid(product: Product, price: float, *, kind: PriceKind = "future") -> bool:
    return product.tick_rule(kind).on_grid(price)


_EIGHTHS = {0: "0", 1: "1", 2: "2", 3: "3", 4: "5", 5: "6", 6: "7", 7: "8"}  # CME's eighth-of-a-32nd digits


def price_text(product: Product, price: float, *, kind: PriceKind = "future") -> str:
    """The price as the exchange writes it: decimals, or Treasury points and 32nds.

    Treasury futures: `110-16` (16/32), `110-165` (16.5/32), ZF `108-167` (16.75/32), ZT
    `103-031` (3.125/32); their options in 64ths: `1-23` (1 23/64)."""
    rule = product.tick_rule(kind)
    price = float(rule.nearest(price))
    if product.price_format != "32nds":
        return f"{price:.{rule.decimals}f}"
    sign = "-" if price < 0 else ""
    points = int(abs(price) + 1e-12)
    fraction = abs(price) - points
    if kind == "option":
        return f"{sign}{points}-{round(fraction * 64):02d}"
    eighths = round(fraction * 256)  # in 1/8 of a 32nd
    thirty_seconds, rest = divmod(eighths, 8)
    return f"{sign}{points}-{thirty_seconds:02d}{_EIGHTHS[rest] if rest else ''}"
