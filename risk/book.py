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
- delta follows the underlying's chosen delta model (`risk.delta_models`: sticky-strike, the
  default sticky-moneyness, or Hull & White's minimum variance): the broker's or the local
  Black-76 delta is adjusted by the model, and the leg's `greeks_source` gains "+smile" or "+mv"
  when it was (a leg the model could not adjust, e.g. no smile fitted for its expiry, keeps its
  sticky-strike delta, its source unsuffixed and `delta_note` saying why). The smile of each
  expiry is fitted (`risk.smile`) to every option quote of that expiry in `quotes`, so a caller
  passes the chain's quotes along with the legs' own;
- greeks per contract are in the units of risk/greeks.py; `delta_equivalent` converts a leg to
  underlying futures contracts: quantity x delta x multiplier / future multiplier (a future: its
  quantity). A leg whose greeks cannot be computed has NaN greeks, and every net figure it takes
  part in is NaN: the governor treats that as unknown risk and rejects.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from brokers.domain import Instrument, Position, Quote
from brokers.products import PRODUCTS, expiry_moment
from risk.delta_models import ADJUSTED_SUFFIX, STICKY_STRIKE, DeltaModel, model_deltas
from risk.greeks import NetGreeks, black76, book_net_greeks, implied_vol, select_leg_greeks
from risk.smile import SmileFailure, SmileFit, SmileQuote, fit_smile

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
    greeks_source: str  # "broker", "model" (+"+smile"/"+mv": delta model applied), "expired" or "none"
    delta_model: str = "sticky_strike"  # the delta model this leg's delta follows
    delta_note: str | None = None  # why the chosen model could not be applied to this leg
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
    delta_model: str = "sticky_strike"  # the delta model chosen for this underlying


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


def book_delta_model(valuation: BookValuation) -> str:
    """The delta model(s) a book's net delta is counted in: one name, or "ES: x, NQ: y" when its
    underlyings differ (sticky-strike for an empty book)."""
    models = {entry.symbol: entry.delta_model for entry in valuation.net}
    if len(set(models.values())) <= 1:
        return next(iter(models.values()), "sticky_strike")
    return ", ".join(f"{symbol}: {name}" for symbol, name in sorted(models.items()))


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


DeltaModels = DeltaModel | Mapping[str, DeltaModel] | None


def delta_model_for(models: DeltaModels, symbol: str) -> DeltaModel:
    """The model for one underlying: one for all, a mapping by symbol (the platform's default
    model, `risk.delta_models.DEFAULT_DELTA_MODEL`, for a symbol it does not name), or None
    (sticky-strike, plain Black-76: what a caller that chose nothing has always had)."""
    if models is None:
        return STICKY_STRIKE
    if isinstance(models, DeltaModel):
        return models
    return models.get(symbol) or DeltaModel()


SMILE_POINTS = 13  # strikes quoted per held expiry for its smile
SMILE_MIN_RANGE = 0.03  # |ln(K/F)| the quoted strikes reach at least


def smile_chain(
    held: Sequence[Instrument], chain: Sequence[Instrument], forward: float, *, points: int = SMILE_POINTS
) -> list[Instrument]:
    """The options of `chain` to quote for the smile of each held option's expiry: per expiry,
    up to `points` strikes spread evenly in log-moneyness over the range the held strikes span
    (widened by a fifth, and at least +-`SMILE_MIN_RANGE`), each its out-of-the-money side (a
    call at or above `forward`, a put below), whatever the listing's strike step. One request's
    worth of quotes per expiry, however fine the strike grid."""
    chosen: list[Instrument] = []
    for expiry in sorted({option.expiry for option in held if option.is_option}):
        reach = max([SMILE_MIN_RANGE, *(1.2 * abs(math.log(o.strike / forward)) for o in held
                                        if o.is_option and o.expiry == expiry and o.strike > 0)])
        candidates = [o for o in chain if o.is_option and o.expiry == expiry and o.strike > 0
                      and (o.right == "C") == (o.strike >= forward)]
        strikes = sorted({o.strike for o in candidates})
        if not strikes:
            continue
        logs = [math.log(strike / forward) for strike in strikes]
        wanted = set()
        for i in range(points):
            target = -reach + 2.0 * reach * i / (points - 1)
            wanted.add(strikes[min(range(len(strikes)), key=lambda j, target=target: abs(logs[j] - target))])
        chosen.extend(o for o in candidates if o.strike in wanted)
    return chosen


def expiry_smiles(
    options: Sequence[Instrument], quotes: Mapping[str, Quote], *, now: datetime, rate: float
) -> dict[tuple[str, object, object], SmileFit | SmileFailure]:
    """The fitted smile of each (symbol, expiry, underlying expiry) among `options`, from every
    option quote of that expiry in `quotes`."""
    wanted = {(o.symbol, o.expiry, o.underlying_expiry): o for o in options}
    grouped: dict[tuple[str, object, object], list[Quote]] = {key: [] for key in wanted}
    for quote in quotes.values():
        instrument = quote.instrument
        if instrument.is_option:
            key = (instrument.symbol, instrument.expiry, instrument.underlying_expiry)
            if key in grouped:
                grouped[key].append(quote)
    smiles: dict[tuple[str, object, object], SmileFit | SmileFailure] = {}
    for key, group in grouped.items():
        option = wanted[key]
        forward = next((q.underlying_price for q in group if q.underlying_price is not None), None)
        if forward is None:
            forward = _mark(quotes.get(option.underlying_future().key))
        smiles[key] = fit_smile(
            [SmileQuote(strike=q.instrument.strike, is_call=q.instrument.right == "C", bid=q.bid, ask=q.ask)
             for q in group],
            forward=forward if forward is not None else float("nan"),
            years=years_to_expiry(option, now), rate=rate,
        )
    return smiles


def instruments_risk(
    instruments: Sequence[Instrument],
    quotes: Mapping[str, Quote],
    *,
    now: datetime,
    rate: float,
    broker_greeks_max_age: timedelta = DEFAULT_BROKER_GREEKS_MAX_AGE,
    delta_models: DeltaModels = None,
) -> list[InstrumentRisk]:
    """Per-contract mark and greeks of each instrument, from quotes keyed by `Instrument.key`;
    each option's delta by its underlying's model in `delta_models` (see `delta_model_for`)."""
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
        leg_models = [delta_model_for(delta_models, option.symbol) for option in options]
        smile_options = [o for o, m in zip(options, leg_models, strict=True) if m.name == "sticky_moneyness"]
        smiles = expiry_smiles(smile_options, quotes, now=now, rate=rate) if smile_options else {}
        deltas = np.array(chosen.delta, dtype=np.float64)
        adjusted = np.zeros(len(options), dtype=bool)
        notes: list[str | None] = [None] * len(options)
        for chosen_model in dict.fromkeys(m for m in leg_models if m.name != "sticky_strike"):
            name = chosen_model.name
            rows = [row for row, m in enumerate(leg_models) if m == chosen_model]
            leg_smiles = [smiles.get((options[row].symbol, options[row].expiry, options[row].underlying_expiry))
                          for row in rows]
            result = model_deltas(
                chosen_model,
                delta=chosen.delta[rows], vega=chosen.vega[rows], forward=forwards[rows], strike=strikes[rows],
                years=years[rows], rate=rate, is_call=is_call[rows],
                smiles=[smile if isinstance(smile, SmileFit) else None for smile in leg_smiles],
            )
            deltas[rows] = result.delta
            adjusted[rows] = result.adjusted
            for j, row in enumerate(rows):
                if not result.adjusted[j] and np.isfinite(chosen.delta[row]):
                    smile = leg_smiles[j]
                    notes[row] = (f"no smile fitted for this expiry ({smile.reason}): sticky-strike delta"
                                  if isinstance(smile, SmileFailure) else
                                  "no minimum-variance coefficients estimated: sticky-strike delta"
                                  if name == "minimum_variance" else "sticky-strike delta")
        for row, (i, option, quote) in enumerate(zip(option_rows, options, option_quotes, strict=True)):
            if years[row] <= 0.0:
                results[i] = _expired_option_risk(option, quote, forwards[row])
                continue
            source = chosen.source[row] if np.isfinite(chosen.delta[row]) else "none"
            if adjusted[row] and source != "none":
                source += ADJUSTED_SUFFIX[leg_models[row].name]
            valued = bool(modelled[row]) and bool(np.isfinite(model.price[row]))
            results[i] = InstrumentRisk(
                instrument=option, mark=float(model.price[row]) if valued else marks[i],
                mark_source="model" if valued else "quote",
                quote_time=quote.time if quote else None,
                forward=float(forwards[row]) if np.isfinite(forwards[row]) else None,
                implied_vol=float(vols[row]) if np.isfinite(vols[row]) else None,
                delta=float(deltas[row]), gamma=float(chosen.gamma[row]),
                vega=float(chosen.vega[row]), theta=float(chosen.theta[row]), rho=float(chosen.rho[row]),
                greeks_source=source,
                delta_model=leg_models[row].name if adjusted[row] else "sticky_strike",
                delta_note=notes[row],
            )
    return [result for result in results if result is not None]


def value_book(
    positions: Sequence[Position],
    quotes: Mapping[str, Quote],
    *,
    now: datetime,
    rate: float,
    broker_greeks_max_age: timedelta = DEFAULT_BROKER_GREEKS_MAX_AGE,
    delta_models: DeltaModels = None,
) -> BookValuation:
    held = _held(positions)
    risks = instruments_risk(
        [position.instrument for position in held], quotes, now=now, rate=rate,
        broker_greeks_max_age=broker_greeks_max_age, delta_models=delta_models,
    )
    return _book_valuation(held, risks, now, delta_models)


def value_books(
    books: Mapping[str, Sequence[Position]],
    quotes: Mapping[str, Quote],
    *,
    now: datetime,
    rate: float,
    broker_greeks_max_age: timedelta = DEFAULT_BROKER_GREEKS_MAX_AGE,
    delta_models: DeltaModels = None,
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
        instruments_risk(distinct, quotes, now=now, rate=rate, broker_greeks_max_age=broker_greeks_max_age,
                         delta_models=delta_models),
        strict=True,
    ))
    return {
        name: _book_valuation(positions, [risks[position.instrument] for position in positions], now, delta_models)
        for name, positions in held.items()
    }


def _held(positions: Sequence[Position]) -> list[Position]:
    return [position for position in positions if position.quantity]


def _book_valuation(
    held: Sequence[Position], risks: Sequence[InstrumentRisk], now: datetime, delta_models: DeltaModels = None
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
                delta_model=delta_model_for(delta_models, symbol).name,
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
