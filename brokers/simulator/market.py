"""The market side of the simulator: products, contracts, prices, quotes and market controls.

What is here: the market's constants and defaults, `SimulationError`, `SimConfig` (the market's
identity, seed and anchor, plus execution settings), the contract calendar (quarterly futures on the
third Friday, serial options before them, exchange sessions), the records of market state (`Shock`,
`QuoteModeSetting`) and `MarketSide`, the half of `SimulatedMarket` that lists and resolves
contracts and prices them: the index of `brokers.simulator.paths` with shocks and carry for
futures, the vol smile of `brokers.simulator.params` and Black-76 for options, bid/ask around fair
value, quote modes and spread multipliers. `SimulatedMarket` (`brokers.simulator.account`) adds
the account on top; `MarketSide` is not used on its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np

from brokers.domain import Greeks, Instrument, Quote, Right, SecType
from brokers.products import (
    PRODUCTS,
    Product,
    expiry_moment,
    future_contract_month,
    future_expiry,
    future_last_trade,
    future_months_from,
    option_exercise_style,
    option_expiries,
    option_future_month,
    option_last_trade,
    option_trading_class,
    price_kind,
)
from brokers.simulator.clock import UTC, SimClock, _utc
from brokers.simulator.params import MARKET_PARAMS, smile_vol, true_delta
from brokers.simulator.paths import (
    STEP,
    _on_grid,
    _price,
    _ticks_floor,
    index_log_levels,
)
from risk.greeks import Black76, black76
from risk.sessions import MarketHours, SessionTable, shared_market_hours

SECONDS_PER_YEAR = 365.0 * 86400.0
DAY_END_UTC = time(21, 0)  # DAY orders end at 21:00 UTC; contracts expire by their product's rules
LISTED_FUTURES = 4
SERIAL_OPTION_MONTHS = 2  # the most serial option months a product lists before a futures month
MIN_TIME_TO_EXPIRY = 60.0 / SECONDS_PER_YEAR  # keeps Black-76 finite in the last minute
OPTION_HALF_SPREAD_FRACTION = 0.0025
FUTURE_QUOTE_SIZE = 50
OPTION_QUOTE_SIZE = 25

DEFAULT_SEED = 0
DEFAULT_ANCHOR = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_COMMISSION_PER_CONTRACT = 2.25
DEFAULT_INITIAL_CASH = 1_000_000.0
DEFAULT_RATE = 0.04

QuoteMode = Literal["normal", "stale", "bid_only", "ask_only", "no_quote"]
QUOTE_MODES: tuple[str, ...] = ("normal", "stale", "bid_only", "ask_only", "no_quote")


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


def _next_day_end(moment: datetime) -> datetime:
    end = datetime.combine(moment.date(), DAY_END_UTC, tzinfo=UTC)
    return end if end > moment else end + timedelta(days=1)


class _Sessions:
    """Exchange sessions of one calendar as sorted open/close arrays (UTC seconds), vectorised.

    The sessions are the governor's own (`risk.sessions`: pandas_market_calendars with the
    platform's `SESSION_OVERRIDES` applied), so the simulated market is closed exactly when the
    governor says it is.
    """

    def __init__(self, calendar_name: str, hours: MarketHours | None = None) -> None:
        self._calendar_name = calendar_name
        self._hours = hours
        self._table: SessionTable | None = None
        self._opens = np.empty(0)
        self._closes = np.empty(0)
        self._break_starts = np.empty(0)
        self._break_ends = np.empty(0)

    def open_mask(self, epoch_seconds: np.ndarray) -> np.ndarray:
        self._cover(float(epoch_seconds.min()), float(epoch_seconds.max()))
        index = np.searchsorted(self._opens, epoch_seconds, side="right") - 1
        valid = index >= 0
        at = np.clip(index, 0, None)
        in_break = (self._break_starts[at] <= epoch_seconds) & (epoch_seconds < self._break_ends[at])
        return valid & (epoch_seconds < self._closes[at]) & ~in_break

    def _cover(self, first: float, last: float) -> None:
        hours = self._hours or shared_market_hours()
        table = hours.table(self._calendar_name, first)
        if not table.covers(last):
            table = hours.table(self._calendar_name, last)
        if table is not self._table:
            self._table = table
            self._opens = np.asarray(table.opens, dtype=np.float64)
            self._closes = np.asarray(table.closes, dtype=np.float64)
            # No breaks: an empty break at each close.
            self._break_starts = np.asarray(table.break_starts or table.closes, dtype=np.float64)
            self._break_ends = np.asarray(table.break_ends or table.closes, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Market state records


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


@dataclass(frozen=True, slots=True)
class PricePath:
    """One instrument minute by minute (`MarketSide.price_path`); option fields None for a future."""

    instrument: Instrument
    start: datetime
    fair: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    forward: np.ndarray | None
    vol: np.ndarray | None
    atm_vol: np.ndarray | None
    years: np.ndarray | None


# ---------------------------------------------------------------------------------------------
# The market


class MarketSide:
    """The market half of `SimulatedMarket`: contracts, prices, quotes and market controls.

    Holds the clock, the config and the market's state (shocks, spread multipliers, quote modes);
    `SimulatedMarket` subclasses it with the account. `sync` and `_changed_market` belong to the
    account: reads and market changes call them so that resting orders see every price.
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
            trading_class=option_trading_class(product, expiry, future_expiry),
            exercise_style=option_exercise_style(product, expiry, future_expiry),
            underlying_expiry=future_expiry,
        )
        return replace(instrument, broker_ref=f"SIM:{instrument.key}")

    @staticmethod
    def _is_future_expiry(product: Product, expiry: date) -> bool:
        return future_contract_month(product, expiry) is not None

    @staticmethod
    def _listed_future_expiries(product: Product, now: datetime) -> list[date]:
        """The next `LISTED_FUTURES` futures of the product's cycle still trading at `now`."""
        # A monthly contract stops in the month before its own (crude): skip up to two gone ones.
        months = future_months_from(product, (now.year, now.month), LISTED_FUTURES + 3)
        live = [future_expiry(product, *month) for month in months]
        return [expiry for expiry in live if future_last_trade(product, expiry) > now][:LISTED_FUTURES]

    @staticmethod
    def _option_expiries(product: Product, future_expiry: date) -> list[date]:
        """The expiries of the options on a future, the serial months' first (at most
        `SERIAL_OPTION_MONTHS` of them, the nearest to the future)."""
        month = future_contract_month(product, future_expiry)
        if month is None:
            return []
        return option_expiries(product, month)[-(SERIAL_OPTION_MONTHS + 1):]

    def _future_expiry_for_option(self, product: Product, expiry: date) -> date | None:
        month = option_future_month(product, expiry)
        if month is None:
            return None
        underlying = future_expiry(product, *month)
        return underlying if expiry in self._option_expiries(product, underlying) else None

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
        return smile_vol(symbol, strike, forward, atm)

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
            grid = product.option_tick_rule
            half = multiplier * np.maximum(grid.minimum, OPTION_HALF_SPREAD_FRACTION * fair)
            below = np.asarray(grid.floor(fair - half))
            bid = np.where(below >= grid.minimum * (1 - 1e-9), below, np.nan)
            ask = np.maximum(np.asarray(grid.ceil(fair + half)), grid.minimum)
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
        grid = product.tick_rule(price_kind(instrument.is_option))
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
            last=float(np.asarray(grid.nearest(snapshot.fair))[0]),
            bid_size=size if bid is not None else 0,
            ask_size=size if ask is not None else 0,
            time=quote_time,
            underlying_price=underlying_price,
            greeks=greeks,
        )

    def price_path(self, instrument: Instrument, start: datetime, minutes: int) -> PricePath:
        """Fair value, bid, ask (NaN: none; normal quote mode) and, for an option, forward, smile
        vol, ATM vol and years to expiry at each of `minutes` one-minute steps from `start`:
        what `quotes` would show minute by minute, in one vectorised pass (for benchmarks)."""
        resolved = self.resolve(instrument)
        steps = self._step_of(start) + np.arange(minutes)
        snapshot = self._snapshot(resolved, steps, for_execution=False)
        times = self.config.anchor + STEP * int(steps[0])
        years = atm = None
        if resolved.is_option:
            seconds = self._step_seconds_to(expiry_moment(resolved), steps)
            years = np.maximum(seconds / SECONDS_PER_YEAR, MIN_TIME_TO_EXPIRY)
            atm = self._atm_vol(resolved.symbol, steps)
        return PricePath(instrument=resolved, start=times, fair=snapshot.fair, bid=snapshot.bid, ask=snapshot.ask,
                         forward=snapshot.forward, vol=snapshot.vol, atm_vol=atm, years=years)

    def true_delta(self, instrument: Instrument) -> float:
        """The market's own delta of an option now: how its fair value moves with its future,
        the smile moving along (`true_delta`); 1 for a future."""
        resolved = self.resolve(instrument)
        if not resolved.is_option:
            return 1.0
        steps = np.array([self._step_of(self.now())])
        forward, years, _ = self._option_inputs(resolved, steps)
        return float(true_delta(
            resolved.symbol, forward=forward, strike=resolved.strike, years=years, rate=self.config.rate,
            atm_vol=self._atm_vol(resolved.symbol, steps), is_call=resolved.right == "C",
        )[0])

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

    # --- the account's hooks ---------------------------------------------------------------

    def sync(self) -> None:
        """Bring the account up to the clock; `SimulatedMarket` implements it."""
        raise NotImplementedError

    def _changed_market(self) -> None:
        """Record a market change at `now`; `SimulatedMarket` implements it."""
        raise NotImplementedError


def _optional(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
