"""Futures products the platform trades, as data, and the rules of their contracts' lives and prices.

- `table`: the products (ES, MES, NQ, MNQ, YM, RTY, CL, NG, GC, SI, HG, ZN, ZB, ZF, ZT, ZC, ZS,
  ZW, 6E, 6J, LE, HE), one frozen `Product` each, with the CME specification it comes from;
- `model`: what a product is, and its price grid (`TickRule`: tiered option ticks, Treasury 32nds)
  with `price_round`, `price_add_ticks`, `on_price_grid` and `price_text`;
- `calendar`: when futures and options stop trading (`future_expiry`, `option_expiry`,
  `future_last_trade`, `option_last_trade`), which options exercise into which future, and
  `roll_date`.

Here: look-ups (`product_get`: None for a symbol the platform does not know; `product_for`:
KeyError naming the known ones), `expiry_moment` of any `Instrument`, and
`contract_disagreements`, which compares a broker's own contract details with the table.

docs/brokers/products.md is the table in prose, with its sources and the rounding rules.
Pure: no Django, no I/O.
"""
from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from brokers.products.calendar import (
    DEFAULT_EXPIRY_TIME_UTC,
    business_days_before,
    first_notice_day,
    future_contract_month,
    future_expiry,
    future_last_trade,
    future_months_from,
    hedge_cost_per_contract,
    is_business_day,
    option_exercise_style,
    option_expiries,
    option_expiry,
    option_future_month,
    option_is_serial,
    option_last_trade,
    option_months,
    option_trading_class,
    roll_date,
    third_friday,
    underlying_month,
)
from brokers.products.model import (
    PriceKind,
    Product,
    RollRule,
    TickRule,
    on_price_grid,
    price_add_ticks,
    price_kind,
    price_round,
    price_text,
)
from brokers.products.table import PRODUCT_LIST, PRODUCTS

if TYPE_CHECKING:
    from brokers.domain import Instrument

__all__ = [
    "DEFAULT_EXPIRY_TIME_UTC", "PRODUCTS", "PRODUCT_LIST", "PriceKind", "Product", "RollRule", "TickRule",
    "business_days_before", "contract_disagreements", "expiry_moment", "first_notice_day",
    "future_contract_month", "future_expiry", "future_last_trade", "future_months_from",
    "hedge_cost_per_contract", "is_business_day", "on_price_grid", "option_exercise_style", "option_expiries",
    "option_expiry", "option_future_month", "option_is_serial", "option_last_trade", "option_months",
    "option_trading_class", "price_add_ticks", "price_kind", "price_round", "price_text", "product_for",
    "product_get", "roll_date", "third_friday", "underlying_month",
]


def product_get(symbol: str) -> Product | None:
    """The product of a symbol (any case), None when the platform does not know it."""
    return PRODUCTS.get(symbol.upper()) if isinstance(symbol, str) else None


def product_for(symbol: str) -> Product:
    product = product_get(symbol)
    if product is None:
        raise KeyError(f"unknown product {symbol!r}; known: {', '.join(sorted(PRODUCTS))}")
    return product


def expiry_moment(instrument: Instrument) -> datetime:
    """The last trading moment of an instrument by its product's rules (UTC; 21:00 UTC on its
    expiry for a product the platform does not know, the convention before these rules existed)."""
    product = PRODUCTS.get(instrument.symbol)
    if product is None:
        return datetime.combine(instrument.expiry, DEFAULT_EXPIRY_TIME_UTC, tzinfo=UTC)
    if instrument.is_option:
        return option_last_trade(product, instrument.expiry, instrument.underlying_expiry)
    return future_last_trade(product, instrument.expiry)


def contract_disagreements(
    product: Product, *, option: bool, exchange: str | None = None, multiplier: float | str | None = None,
    min_tick: float | None = None, trading_class: str | None = None, currency: str | None = None,
    price_magnifier: int | str | None = None,
) -> list[str]:
    """Where a broker's own contract details (IBKR's `ContractDetails`: `contract.exchange`,
    `contract.multiplier`, `minTick`, `contract.tradingClass`, `contract.currency`,
    `priceMagnifier`) disagree with the product table, one sentence each; empty when they agree.

    The broker's multiplier is compared with `Product.broker_multiplier` (ours x the price
    magnifier: 5000 for corn quoted in cents); its minimum tick with the smallest tick of the grid
    (0.05 for ES options); an option's trading class with the standard or the serial class. A
    detail the broker did not give (None or blank) is not compared. Pure: the caller fetches the
    details and reports what this returns."""
    kind = "option" if option else "future"
    problems = []
    if exchange and exchange.upper() != product.exchange:
        problems.append(f"{product.symbol} {kind}: exchange {exchange!r}, the table says {product.exchange!r}")
    if currency and currency.upper() != product.currency:
        problems.append(f"{product.symbol} {kind}: currency {currency!r}, the table says {product.currency!r}")
    if multiplier not in (None, "") and not math.isclose(float(multiplier), product.broker_multiplier, rel_tol=1e-9):
        problems.append(f"{product.symbol} {kind}: multiplier {float(multiplier):g}, the table says "
                        f"{product.broker_multiplier:g}")
    if price_magnifier not in (None, "", 0) and int(price_magnifier) != product.price_magnifier:
        problems.append(f"{product.symbol} {kind}: price magnifier {int(price_magnifier)}, the table says "
                        f"{product.price_magnifier}")
    tick = product.option_tick if option else product.future_tick
    if min_tick is not None and not math.isclose(float(min_tick), tick, rel_tol=1e-9, abs_tol=1e-12):
        problems.append(f"{product.symbol} {kind}: minimum tick {float(min_tick):g}, the table says {tick:g}")
    expected = ((product.option_trading_class, product.serial_option_trading_class) if option
                else (product.symbol, None))
    if trading_class and trading_class not in expected:
        known = " or ".join(repr(name) for name in expected if name)
        problems.append(f"{product.symbol} {kind}: trading class {trading_class!r}, the table says {known}")
    return problems
