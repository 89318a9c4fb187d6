"""The option chain a desk looks at: the hedge future's options, quoted and valued.

A selector (it reads the broker and the stored book, and writes nothing). The contracts are the
agent's own choice (`brokers.contracts`): the hedge future by its roll date, and the futures
whose options the structure window (`dte_max` days) reaches, serial months included. Each option
is valued like a leg of the book (`risk.book.instruments_risk`: the broker's greeks when fresh,
Black-76 from the quote's implied volatility otherwise), and legs the client holds are marked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from brokers import contracts
from brokers.codec import instrument_from_json
from brokers.domain import Broker, Instrument, Quote
from brokers.models import Position as PositionRow
from brokers.services import option_chains_list, quotes_for
from risk.book import InstrumentRisk, instruments_risk


class ExpiryNotListed(ValueError):
    def __init__(self, expiry: date, listed: list[date]) -> None:
        super().__init__(f"no listed option expires on {expiry.isoformat()}")
        self.expiry = expiry
        self.listed = listed


@dataclass(frozen=True, slots=True)
class ChainQuote:
    """One option of the chain: its quote, value and greeks per contract unit, and how many the
    client holds (signed; 0 when none)."""

    instrument: Instrument
    bid: float | None
    ask: float | None
    risk: InstrumentRisk
    held: int


@dataclass(frozen=True, slots=True)
class ChainRow:
    strike: float
    call: ChainQuote | None
    put: ChainQuote | None
    at_the_money: bool


@dataclass(frozen=True, slots=True)
class ChainExpiry:
    expiry: date
    days: int
    underlying: Instrument  # the future its options deliver
    held_legs: int  # how many of its options the client holds


@dataclass(frozen=True, slots=True)
class OptionChain:
    underlying: str
    hedge_future: Instrument | None
    note: str
    expiries: list[ChainExpiry]
    expiry: ChainExpiry | None  # the one shown (the nearest by default)
    forward: float | None  # the shown expiry's underlying future, mid
    rows: list[ChainRow] = field(default_factory=list)
    as_of: datetime | None = None


def _held() -> dict[str, int]:
    return {row.instrument_key: row.quantity for row in PositionRow.objects.exclude(quantity=0)}


def _held_expiries() -> dict[date, int]:
    counts: dict[date, int] = {}
    for row in PositionRow.objects.exclude(quantity=0):
        try:
            instrument = instrument_from_json(row.instrument)
        except (KeyError, TypeError, ValueError):
            continue
        if instrument.is_option:
            counts[instrument.expiry] = counts.get(instrument.expiry, 0) + 1
    return counts


def _side(instrument: Instrument, quote: Quote | None, risk: InstrumentRisk, held: dict[str, int]) -> ChainQuote:
    return ChainQuote(instrument=instrument, bid=quote.bid if quote else None, ask=quote.ask if quote else None,
                      risk=risk, held=held.get(instrument.key, 0))


def option_chain_get(*, broker: Broker, underlying: str, chosen_hedge_expiry: date | None, dte_max: int,
                     expiry: date | None, now: datetime, rate: float) -> OptionChain:
    """The chain of one expiry (`expiry`, or the nearest listed) with the list of every expiry
    the desk may trade. Raises ExpiryNotListed for an expiry not in that list, BrokerError when
    the broker cannot be asked."""
    today = now.date()
    futures = broker.listed_futures(underlying)
    try:
        choice = contracts.hedge_future_select(futures, today=today, chosen_expiry=chosen_hedge_expiry)
    except ValueError as exc:
        return OptionChain(underlying=underlying, hedge_future=None, note=str(exc), expiries=[], expiry=None,
                           forward=None, as_of=now)
    options: dict[date, list[Instrument]] = {}
    delivers: dict[date, Instrument] = {}
    underlyings = contracts.option_underlyings(futures, hedge=choice.future, today=today, dte_max=dte_max)
    chains = option_chains_list(broker=broker, futures=underlyings, now=now, raise_errors=True)
    for future in underlyings:
        for option in chains[future.key]:
            options.setdefault(option.expiry, []).append(option)
            delivers.setdefault(option.expiry, future)
    held_by_expiry = _held_expiries()
    expiries = [ChainExpiry(expiry=day, days=(day - today).days, underlying=delivers[day],
                            held_legs=held_by_expiry.get(day, 0)) for day in sorted(options)]
    if expiry is not None and expiry not in options:
        raise ExpiryNotListed(expiry, sorted(options))
    shown = next((item for item in expiries if item.expiry == expiry), expiries[0] if expiries else None)
    if shown is None:
        return OptionChain(underlying=underlying, hedge_future=choice.future, note=choice.note, expiries=[],
                           expiry=None, forward=None, as_of=now)
    instruments = sorted(options[shown.expiry], key=lambda option: (option.strike, option.right))
    quotes = quotes_for(broker=broker, instruments=instruments)
    risks = instruments_risk(instruments, quotes, now=now, rate=rate)
    future_quote = quotes.get(shown.underlying.key)
    forward = future_quote.mid if future_quote is not None else None
    held = _held()
    by_strike: dict[float, dict[str, ChainQuote]] = {}
    for instrument, risk in zip(instruments, risks, strict=True):
        by_strike.setdefault(instrument.strike, {})[instrument.right] = _side(
            instrument, quotes.get(instrument.key), risk, held)
    strikes = sorted(by_strike)
    atm = min(strikes, key=lambda strike: abs(strike - forward)) if forward is not None and strikes else None
    rows = [ChainRow(strike=strike, call=by_strike[strike].get("C"), put=by_strike[strike].get("P"),
                     at_the_money=strike == atm) for strike in strikes]
    return OptionChain(underlying=underlying, hedge_future=choice.future, note=choice.note, expiries=expiries,
                       expiry=shown, forward=forward, rows=rows, as_of=now)

