"""Futures products the platform trades, as data.

The exchange is the one Interactive Brokers expects today (`CME`, never `GLOBEX`); the option
trading class is the exchange's class for the standard (quarterly or monthly) options.
"""
from __future__ import annotations

from dataclasses import dataclass

from brokers.domain import ExerciseStyle


@dataclass(frozen=True, slots=True)
class Product:
    symbol: str
    description: str
    exchange: str
    multiplier: float  # USD per point, futures and options alike
    future_tick: float
    option_tick: float
    option_trading_class: str
    exercise_style: ExerciseStyle
    futures_months: tuple[int, ...]  # listed contract months
    calendar: str  # the pandas_market_calendars name for its sessions
    reference_price: float  # a plausible starting level for the simulated market
    reference_vol: float  # at-the-money implied volatility of the simulated market


PRODUCTS: dict[str, Product] = {
    p.symbol: p
    for p in (
        Product("ES", "E-mini S&P 500", "CME", 50.0, 0.25, 0.05, "ES", "american",
                (3, 6, 9, 12), "CME Globex Equity", 6000.0, 0.18),
        Product("NQ", "E-mini Nasdaq-100", "CME", 20.0, 0.25, 0.05, "NQ", "american",
                (3, 6, 9, 12), "CME Globex Equity", 21000.0, 0.22),
        Product("CL", "Crude Oil (WTI)", "NYMEX", 1000.0, 0.01, 0.01, "LO", "american",
                (3, 6, 9, 12), "CMEGlobex_Energy", 70.0, 0.35),
        Product("GC", "Gold", "COMEX", 100.0, 0.10, 0.10, "OG", "american",
                (3, 6, 9, 12), "CMEGlobex_Metals", 2600.0, 0.16),
    )
}


def product_for(symbol: str) -> Product:
    try:
        return PRODUCTS[symbol.upper()]
    except KeyError:
        raise KeyError(f"unknown product {symbol!r}; known: {', '.join(sorted(PRODUCTS))}") from None
