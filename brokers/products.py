"""Futures products the platform trades, as data, and the rules of their contracts' lives.

The exchange is the one Interactive Brokers expects today (`CME`, never `GLOBEX`); the option
trading class is the exchange's class for the standard (quarterly or monthly) options.

A contract's life, by product (pure functions, no Django, no I/O):
- `future_last_trade` / `option_last_trade`: the moment trading ends on the last trading day, in
  the exchange's time zone. E-mini quarterly futures and their quarterly options stop at 08:30 CT
  on the third Friday and settle to the Special Opening Quotation; the serial-month (January,
  February, ...) options on them stop at 15:00 CT that day and settle to the future's price then.
  A leg that expires today is valued to that moment, and after it is no longer traded.
- `roll_date`: the day a desk stops hedging with a future and moves to the next one. E-mini
  futures roll on the Thursday eight days before expiry (the day the exchange's volume moves);
  other products by their own rule.
- `hedge_cost_per_contract`: what one future costs to trade one way (half the typical spread plus
  commission), the default cost of the agent's Whalley-Wilmott hedging band.
- `expiry_moment`: the last trading moment of any `Instrument`, by its product's rules (21:00 UTC
  for a product the platform does not know, the convention before these rules existed).

The simulated market lists every product's futures on third Fridays (a simplification for CL and
GC, whose real last trading days fall elsewhere); the rules here follow the simulated listing for
those two and CME's published rules for the equity indices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from brokers.domain import ExerciseStyle

if TYPE_CHECKING:
    from brokers.domain import Instrument

RollRule = Literal["equity_index", "business_days_before"]
DEFAULT_EXPIRY_TIME_UTC = time(21, 0)


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
    zone: str = "America/Chicago"  # the exchange's clock for last trading times
    future_last_trade_time: time = time(8, 30)
    quarterly_option_last_trade_time: time = time(8, 30)  # options expiring with their future
    serial_option_last_trade_time: time = time(15, 0)  # options on a later future (serial months)
    settlement: str = "special opening quotation"  # of the quarterly contracts
    roll_rule: RollRule = "equity_index"
    roll_business_days: int = 0  # for "business_days_before": trading days before the last one
    # What a hedge trade costs, one way: half the future's typical bid-ask spread (in ticks) plus
    # the typical all-in commission (broker, exchange, clearing) per contract, USD.
    future_spread_ticks: float = 1.0
    commission_per_contract: float = 2.25


PRODUCTS: dict[str, Product] = {
    p.symbol: p
    for p in (
        Product("ES", "E-mini S&P 500", "CME", 50.0, 0.25, 0.05, "ES", "american",
                (3, 6, 9, 12), "CME Globex Equity", 6000.0, 0.18),
        Product("NQ", "E-mini Nasdaq-100", "CME", 20.0, 0.25, 0.05, "NQ", "american",
                (3, 6, 9, 12), "CME Globex Equity", 21000.0, 0.22),
        Product("CL", "Crude Oil (WTI)", "NYMEX", 1000.0, 0.01, 0.01, "LO", "american",
                (3, 6, 9, 12), "CMEGlobex_Energy", 70.0, 0.35,
                future_last_trade_time=time(13, 30), quarterly_option_last_trade_time=time(13, 30),
                serial_option_last_trade_time=time(13, 30), settlement="settlement price",
                roll_rule="business_days_before", roll_business_days=5),
        Product("GC", "Gold", "COMEX", 100.0, 0.10, 0.10, "OG", "american",
                (3, 6, 9, 12), "CMEGlobex_Metals", 2600.0, 0.16,
                future_last_trade_time=time(12, 30), quarterly_option_last_trade_time=time(12, 30),
                serial_option_last_trade_time=time(12, 30), settlement="settlement price",
                roll_rule="business_days_before", roll_business_days=10),
    )
}


def product_for(symbol: str) -> Product:
    try:
        return PRODUCTS[symbol.upper()]
    except KeyError:
        raise KeyError(f"unknown product {symbol!r}; known: {', '.join(sorted(PRODUCTS))}") from None


def _at(product: Product, day: date, moment: time) -> datetime:
    return datetime.combine(day, moment, ZoneInfo(product.zone)).astimezone(UTC)


def future_last_trade(product: Product, expiry: date) -> datetime:
    """When trading in the future expiring on `expiry` ends (UTC)."""
    return _at(product, expiry, product.future_last_trade_time)


def option_last_trade(product: Product, expiry: date, underlying_expiry: date | None) -> datetime:
    """When trading in an option expiring on `expiry` ends (UTC): the quarterly time when it expires
    with its future, the serial time when its future expires later."""
    quarterly = underlying_expiry is None or underlying_expiry == expiry
    moment = product.quarterly_option_last_trade_time if quarterly else product.serial_option_last_trade_time
    return _at(product, expiry, moment)


def expiry_moment(instrument: Instrument) -> datetime:
    """The last trading moment of an instrument by its product's rules (UTC)."""
    product = PRODUCTS.get(instrument.symbol)
    if product is None:
        return datetime.combine(instrument.expiry, DEFAULT_EXPIRY_TIME_UTC, tzinfo=UTC)
    if instrument.is_option:
        return option_last_trade(product, instrument.expiry, instrument.underlying_expiry)
    return future_last_trade(product, instrument.expiry)


def _business_days_before(day: date, count: int) -> date:
    while count > 0:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day


def roll_date(product: Product, future_expiry: date) -> date:
    """The first day on which a desk hedges with the next future instead of this one."""
    if product.roll_rule == "equity_index":
        # The Thursday eight days before a Friday expiry; for another weekday, eight days before.
        return future_expiry - timedelta(days=8)
    return _business_days_before(future_expiry, product.roll_business_days)


def hedge_cost_per_contract(product: Product) -> float:
    """The one-way cost of trading one future of `product`, USD: half its typical spread in ticks
    x the tick's value + commission (ES: 0.5 x 0.25 x 50 + 2.25 = 8.50, as the simulated market
    charges, one tick wide and 2.25 a contract)."""
    half_spread = 0.5 * product.future_spread_ticks * product.future_tick * product.multiplier
    return half_spread + product.commission_per_contract


def contract_disagreements(
    product: Product, *, option: bool, exchange: str | None = None, multiplier: float | str | None = None,
    min_tick: float | None = None, trading_class: str | None = None,
) -> list[str]:
    """Where a broker's own contract details (IBKR's `ContractDetails`: `contract.exchange`,
    `contract.multiplier`, `minTick`, `contract.tradingClass`) disagree with the product table, one
    sentence each; empty when they agree. A detail the broker did not give (None) is not compared.
    Pure: the caller fetches the details and reports what this returns."""
    kind = "option" if option else "future"
    problems = []
    if exchange is not None and exchange.upper() != product.exchange:
        problems.append(f"{product.symbol} {kind}: exchange {exchange!r}, the table says {product.exchange!r}")
    if multiplier is not None and not math.isclose(float(multiplier), product.multiplier, rel_tol=1e-9):
        problems.append(f"{product.symbol} {kind}: multiplier {float(multiplier):g}, the table says "
                        f"{product.multiplier:g}")
    tick = product.option_tick if option else product.future_tick
    if min_tick is not None and not math.isclose(float(min_tick), tick, rel_tol=1e-9, abs_tol=1e-12):
        problems.append(f"{product.symbol} {kind}: minimum tick {float(min_tick):g}, the table says {tick:g}")
    expected_class = product.option_trading_class if option else product.symbol
    if trading_class is not None and trading_class != expected_class:
        problems.append(f"{product.symbol} {kind}: trading class {trading_class!r}, the table says "
                        f"{expected_class!r}")
    return problems
