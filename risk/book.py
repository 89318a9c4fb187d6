"""Valuing a book: marks, unrealized P&L and greeks per leg, net greeks per underlying.

Pure: positions and quotes in, frozen dataclasses out. One vectorized pass over all legs (implied
vol from each option's mid, Black-76 greeks), so a 200-leg book costs one numpy call, not 200;
`value_books` makes that one pass for many clients' books together.

Conventions:
- the mark is the mid of a two-sided quote, else the last trade, else unknown;
- an option's forward is its quote's `underlying_price`, else the mid of its future's quote;
- time to expiry runs to the option's last trading moment by its product's rules
  (`brokers.products.expiry_moment`: 08:30 CT for quarterly E-mini options, 15:00 CT for serial
  ones), ACT/365;
- an option past that moment is expired, not valued by Black-76: it is worth its intrinsic value
  against its future, and its delta is what exercise leaves. A serial option exercises into its
  (still trading) future, so an in-the-money one has delta +-1; a quarterly one settles in cash
  with its future, delta 0. Its other greeks are 0 and its greeks' source is "expired";
- greeks per contract are in the units of risk/greeks.py; `delta_equivalent` converts a leg to
  underlying futures contracts: quantity x delta x multiplier / future multiplier (a future: its
  quantity). A leg whose greeks cannot be computed has NaN greeks, and every net figure it takes
  part in is NaN: the governor treats that as unknown risk and rejects.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from brokers.domain import Instrument, Position, Quote
from brokers.products import PRODUCTS, expiry_moment
from risk.greeks import NetGreeks, black76, book_net_greeks, implied_vol, select_leg_greeks

SECONDS_PER_YEAR = 365.0 * 24 * 3600
DEFAULT_BROKER_GREEKS_MAX_AGE = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class InstrumentRisk:
    """What one contract of an instrument is worth and how it moves, right now."""

    instrument: Instrument
    mark: float | None
    quote_time: datetime | None
    forward: float | None
    implied_vol: float | None
    delta: float
    gamma: float
    vega: float
    theta: float
    rho: float
    greeks_source: str  # "broker", "model", "expired" (past its last trade) or "none" (no usable quote)
    # "quote": the mark is the quote's mid (or last); "model": the broker sent no price, and the
    # platform's Black-76 prices the option at the broker's own implied volatility for it.
    mark_source: str = "quote"

    @property
    def delta_per_contract(self) -> float:
        """Delta of one contract in underlying futures contracts."""
        if not self.instrument.is_option:
            return 1.0
        product = PRODUCTS.get(self.instrument.symbol)
        future_multiplier = product.multiplier if product else self.instrument.multiplier
        return self.delta * self.instrument.multiplier / future_multiplier


@dataclass(frozen=True, slots=True)
class LegValuation:
    risk: InstrumentRisk
    quantity: int
    average_price: float
    unrealized_pnl: float | None  # USD

    @property
    def delta_equivalent(self) -> float:
        return self.quantity * self.risk.delta_per_contract


@dataclass(frozen=True, slots=True)
class UnderlyingNet:
    symbol: str
    greeks: NetGreeks


@dataclass(frozen=True, slots=True)
class BookValuation:
    legs: tuple[LegValuation, ...]
    net: tuple[UnderlyingNet, ...]  # one entry per underlying product
    unrealized_pnl: float | None
    as_of: datetime

    @property
    def net_delta(self) -> float:
        """Net delta across underlyings, in underlying contracts (meaningful per product; the
        governor's limit is per client, as the specification states it)."""
        return float(sum(entry.greeks.delta for entry in self.net))

    def position_quantities(self) -> dict[str, int]:
        return {leg.risk.instrument.key: leg.quantity for leg in self.legs if leg.quantity}


def years_to_expiry(instrument: Instrument, now: datetime) -> float:
    """ACT/365 years from `now` to the instrument's last trading moment (negative once past)."""
    return (expiry_moment(instrument) - now).total_seconds() / SECONDS_PER_YEAR


def _expired_option_risk(option: Instrument, quote: Quote | None, forward: float) -> InstrumentRisk:
    """An option past its last trade: intrinsic value, and the delta its exercise leaves."""
    sign = 1.0 if option.right == "C" else -1.0
    known = np.isfinite(forward)
    intrinsic = max(0.0, sign * (forward - option.strike)) if known else None
    into_future = option.underlying_expiry is not None and option.underlying_expiry > option.expiry
    delta = (sign if into_future and intrinsic else 0.0) if known else float("nan")
    return InstrumentRisk(
        instrument=option, mark=intrinsic, quote_time=quote.time if quote else None,
        forward=float(forward) if known else None, implied_vol=None, delta=delta, gamma=0.0, vega=0.0,
        theta=0.0, rho=0.0, greeks_source="expired" if known else "none",
    )


def _mark(quote: Quote | None) -> float | None:
    if quote is None:
        return None
    if quote.mid is not None:
        return quote.mid
    return quote.last


def instruments_risk(
    instruments: Sequence[Instrument],
    quotes: Mapping[str, Quote],
    *,
    now: datetime,
    rate: float,
    broker_greeks_max_age: timedelta = DEFAULT_BROKER_GREEKS_MAX_AGE,
) -> list[InstrumentRisk]:
    """Per-contract mark and greeks of each instrument, from quotes keyed by `Instrument.key`."""
    marks = [_mark(quotes.get(instrument.key)) for instrument in instruments]
    option_rows = [i for i, instrument in enumerate(instruments) if instrument.is_option]
    results: list[InstrumentRisk | None] = [None] * len(instruments)

    for i, instrument in enumerate(instruments):
        if not instrument.is_option:
            quote = quotes.get(instrument.key)
            usable = marks[i] is not None
            results[i] = InstrumentRisk(
                instrument=instrument, mark=marks[i], quote_time=quote.time if quote else None,
                forward=marks[i], implied_vol=None, delta=1.0, gamma=0.0, vega=0.0, theta=0.0, rho=0.0,
                greeks_source="model" if usable else "none",
            )

    if option_rows:
        options = [instruments[i] for i in option_rows]
        option_quotes = [quotes.get(option.key) for option in options]
        forwards = np.array(
            [
                (quote.underlying_price if quote is not None and quote.underlying_price is not None
                 else _mark(quotes.get(option.underlying_future().key)) or np.nan)
                for option, quote in zip(options, option_quotes, strict=True)
            ],
            dtype=np.float64,
        )
        prices = np.array([marks[i] if marks[i] is not None else np.nan for i in option_rows], dtype=np.float64)
        strikes = np.array([option.strike for option in options], dtype=np.float64)
        years = np.array([years_to_expiry(option, now) for option in options], dtype=np.float64)
        is_call = np.array([option.right == "C" for option in options])
        vols = implied_vol(prices, forwards, strikes, years, rate, is_call)
        # No price at all, but the broker's model gave this option's implied volatility (IB does
        # for illiquid or delayed options): value it with our own model at that volatility.
        broker_vols = np.array(
            [quote.greeks.implied_vol if quote is not None and quote.greeks is not None
             and quote.greeks.implied_vol is not None else np.nan for quote in option_quotes],
            dtype=np.float64,
        )
        modelled = np.isnan(prices) & np.isfinite(broker_vols) & (broker_vols > 0) & np.isfinite(forwards)
        vols = np.where(modelled, broker_vols, vols)
        model = black76(forwards, strikes, years, rate, vols, is_call)
        chosen = select_leg_greeks(
            broker=[quote.greeks if quote is not None else None for quote in option_quotes],
            model=model, now=now, max_age=broker_greeks_max_age,
        )
        for row, (i, option, quote) in enumerate(zip(option_rows, options, option_quotes, strict=True)):
            if years[row] <= 0.0:
                results[i] = _expired_option_risk(option, quote, forwards[row])
                continue
            source = chosen.source[row] if np.isfinite(chosen.delta[row]) else "none"
            valued = bool(modelled[row]) and bool(np.isfinite(model.price[row]))
            results[i] = InstrumentRisk(
                instrument=option, mark=float(model.price[row]) if valued else marks[i],
                mark_source="model" if valued else "quote",
                quote_time=quote.time if quote else None,
                forward=float(forwards[row]) if np.isfinite(forwards[row]) else None,
                implied_vol=float(vols[row]) if np.isfinite(vols[row]) else None,
                delta=float(chosen.delta[row]), gamma=float(chosen.gamma[row]),
                vega=float(chosen.vega[row]), theta=float(chosen.theta[row]), rho=float(chosen.rho[row]),
                greeks_source=source,
            )
    return [result for result in results if result is not None]


def value_book(
    positions: Sequence[Position],
    quotes: Mapping[str, Quote],
    *,
    now: datetime,
    rate: float,
    broker_greeks_max_age: timedelta = DEFAULT_BROKER_GREEKS_MAX_AGE,
) -> BookValuation:
    held = _held(positions)
    risks = instruments_risk(
        [position.instrument for position in held], quotes, now=now, rate=rate,
        broker_greeks_max_age=broker_greeks_max_age,
    )
    return _book_valuation(held, risks, now)


def value_books(
    books: Mapping[str, Sequence[Position]],
    quotes: Mapping[str, Quote],
    *,
    now: datetime,
    rate: float,
    broker_greeks_max_age: timedelta = DEFAULT_BROKER_GREEKS_MAX_AGE,
) -> dict[str, BookValuation]:
    """`value_book` for many books (by any name) at once: one `instruments_risk` pass over the
    distinct instruments of all of them, so a contract many clients hold is valued once and the
    numpy calls are paid once rather than per client. The greeks are computed element by element,
    so each book's valuation is exactly `value_book`'s."""
    held = {name: _held(positions) for name, positions in books.items()}
    distinct = list(dict.fromkeys(
        position.instrument for positions in held.values() for position in positions
    ))
    risks = dict(zip(
        distinct,
        instruments_risk(distinct, quotes, now=now, rate=rate, broker_greeks_max_age=broker_greeks_max_age),
        strict=True,
    ))
    return {
        name: _book_valuation(positions, [risks[position.instrument] for position in positions], now)
        for name, positions in held.items()
    }


def _held(positions: Sequence[Position]) -> list[Position]:
    return [position for position in positions if position.quantity]


def _book_valuation(
    held: Sequence[Position], risks: Sequence[InstrumentRisk], now: datetime
) -> BookValuation:
    """Legs, P&L and net greeks per underlying of `held` (no flat positions), each position
    with its instrument's risk."""
    legs = tuple(
        LegValuation(
            risk=risk,
            quantity=position.quantity,
            average_price=position.average_price,
            unrealized_pnl=(
                (risk.mark - position.average_price) * position.quantity * position.instrument.multiplier
                if risk.mark is not None else None
            ),
        )
        for position, risk in zip(held, risks, strict=True)
    )
    net = []
    for symbol in sorted({leg.risk.instrument.symbol for leg in legs}):
        group = [leg for leg in legs if leg.risk.instrument.symbol == symbol]
        product = PRODUCTS.get(symbol)
        underlying_multiplier = product.multiplier if product else group[0].risk.instrument.multiplier
        net.append(
            UnderlyingNet(
                symbol=symbol,
                greeks=book_net_greeks(
                    quantity=np.array([leg.quantity for leg in group], dtype=np.float64),
                    delta=np.array([leg.risk.delta for leg in group]),
                    gamma=np.array([leg.risk.gamma for leg in group]),
                    vega=np.array([leg.risk.vega for leg in group]),
                    theta=np.array([leg.risk.theta for leg in group]),
                    multiplier=np.array([leg.risk.instrument.multiplier for leg in group]),
                    underlying_multiplier=underlying_multiplier,
                    is_future=np.array([not leg.risk.instrument.is_option for leg in group]),
                ),
            )
        )
    pnls = [leg.unrealized_pnl for leg in legs]
    return BookValuation(
        legs=legs,
        net=tuple(net),
        unrealized_pnl=None if any(p is None for p in pnls) else float(sum(pnls)),
        as_of=now,
    )
