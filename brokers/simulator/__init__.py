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
- Futures: the next `LISTED_FUTURES` contracts of the product's listing cycle (quarterly for the
  equity indices, Treasuries and currencies, monthly for crude and gas, gold's even months, ...),
  each stopping on its real last trading day at its product's time (`brokers.products`:
  `future_expiry`, `future_last_trade`; 08:30 CT on the third Friday for the E-minis, three
  business days before the 25th of the month before for crude oil). Bid/ask one tick wide around
  the fair price, times the spread multiplier.
- Options on each listed future: those of its own month and, where CME lists them, the serial
  months before it (up to `SERIAL_OPTION_MONTHS`; CME's January and February ES options deliver
  the March future), each stopping on its product's option expiry day and time
  (`brokers.products.option_expiry`, `option_last_trade`: 08:30 CT for quarterly E-mini options,
  15:00 CT for serial ones). Every strike on the product's grid exists; the chain shows
  `strikes_each_side` strikes either side of the money. Vol smile:
  `max(floor, atm + skew * k + curvature * k^2)` with `k = ln(K / F)`. Prices are Black-76 from
  `risk.greeks` (the products are American-style; the simulated market prices them as European,
  which for options on futures is within a few ticks), bid/ask `max(1 tick, 0.25% of value)`
  either side of it times the spread multiplier, rounded outwards to the product's option grid
  (tiered: ES options in 0.05 up to 5.00 and 0.25 above); a bid below one tick is no bid.
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

The package (split from one module along its sections; everything is re-exported here, so import
from `brokers.simulator`):
- `clock`: `SimClock` and the UTC helper.
- `paths`: the index's counter-based random walk and Brownian bridges, and tick arithmetic.
- `params`: the per-product `MarketParams` (`MARKET_PARAMS`) and the smile they define (`smile_vol`,
  `true_delta`).
- `market`: constants, `SimulationError`, `SimConfig`, the contract calendar and
  `MarketSide`, the market half of `SimulatedMarket` (contracts, prices, quotes, market controls).
- `state`: the account's state records and their JSON form.
- `account`: `SimulatedMarket` itself: orders, matching, fills, settlement, positions, account
  summary, margin, injected faults, `to_state()` / `from_state()`.
"""

from brokers.products import third_friday
from brokers.simulator.account import (
    INITIAL_MARGIN_FACTOR,
    MATCH_CHUNK_STEPS,
    MAX_LEGS,
    STATE_VERSION,
    SimulatedMarket,
)
from brokers.simulator.clock import UTC, SimClock
from brokers.simulator.market import (
    DAY_END_UTC,
    DEFAULT_ANCHOR,
    DEFAULT_COMMISSION_PER_CONTRACT,
    DEFAULT_INITIAL_CASH,
    DEFAULT_RATE,
    DEFAULT_SEED,
    FUTURE_QUOTE_SIZE,
    LISTED_FUTURES,
    MIN_TIME_TO_EXPIRY,
    OPTION_HALF_SPREAD_FRACTION,
    OPTION_QUOTE_SIZE,
    QUOTE_MODES,
    SECONDS_PER_YEAR,
    SERIAL_OPTION_MONTHS,
    QuoteMode,
    QuoteModeSetting,
    Shock,
    SimConfig,
    SimulationError,
)
from brokers.simulator.params import MARKET_PARAMS, MarketParams
from brokers.simulator.paths import DAYS_PER_CHUNK, STEP, STEPS_PER_DAY, index_log_levels
from brokers.simulator.state import (
    TERMINAL_STATES,
    fill_from_state,
    fill_to_state,
    order_request_from_state,
    order_request_to_state,
)

__all__ = [
    "DAYS_PER_CHUNK",
    "DAY_END_UTC",
    "DEFAULT_ANCHOR",
    "DEFAULT_COMMISSION_PER_CONTRACT",
    "DEFAULT_INITIAL_CASH",
    "DEFAULT_RATE",
    "DEFAULT_SEED",
    "FUTURE_QUOTE_SIZE",
    "INITIAL_MARGIN_FACTOR",
    "LISTED_FUTURES",
    "MARKET_PARAMS",
    "MATCH_CHUNK_STEPS",
    "MAX_LEGS",
    "MIN_TIME_TO_EXPIRY",
    "OPTION_HALF_SPREAD_FRACTION",
    "OPTION_QUOTE_SIZE",
    "QUOTE_MODES",
    "SECONDS_PER_YEAR",
    "SERIAL_OPTION_MONTHS",
    "STATE_VERSION",
    "STEP",
    "STEPS_PER_DAY",
    "TERMINAL_STATES",
    "UTC",
    "MarketParams",
    "QuoteMode",
    "QuoteModeSetting",
    "Shock",
    "SimClock",
    "SimConfig",
    "SimulatedMarket",
    "SimulationError",
    "fill_from_state",
    "fill_to_state",
    "index_log_levels",
    "order_request_from_state",
    "order_request_to_state",
    "third_friday",
]
