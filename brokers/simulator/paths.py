"""Price paths: the index's random walk on the one-minute grid, and tick arithmetic.

The walk is a function of (seed, product, step) only (see the package docstring): daily log
increments come from a counter-based generator keyed by (seed, product, chunk of `DAYS_PER_CHUNK`
days), and each day is filled in with a Brownian bridge keyed by (seed, product, day), so a price a
year after the anchor costs one day's bridge, not a year of minutes. Everything here is a pure
function of its arguments, so the caches are module-level and shared by every `SimulatedMarket`;
shocks, carry and the smile are applied on top by `brokers.simulator.market`.

The tick helpers turn model prices into prices on a contract's tick grid (floor for bids, ceiling
for asks, nearest for marks), with `_EPS` absorbing float noise at the grid points.
"""
from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache

import numpy as np

from brokers.products import PRODUCTS

STEP = timedelta(minutes=1)
STEPS_PER_DAY = 1440
DAYS_PER_CHUNK = 1024
_EPS = 1e-9


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
