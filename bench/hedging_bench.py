"""How well each delta model hedges: simulated days, one-minute steps, several books and seeds.

Pure (no database): the simulated market (`brokers.simulator`) gives every option's and the
future's quotes minute by minute (`SimulatedMarket.price_path`, exactly what `quotes` would show);
the platform values the book from those quotes as it does live (`risk.book.instruments_risk`:
the broker's greeks, the smile fitted to the chain's quotes, the chosen delta model) and hedges
with the policy's band rule (`agents.policy.band_half_width`, default fixed band of 1 contract,
trade `round(target - net delta)` futures when |net delta - target| exceeds it). Each minute's P&L
is the change of the book's fair value (options and futures at the market's fair prices) less the
hedge trades' cost (half the future's spread plus commission per contract).

Strategies per book and seed:
- `sticky_strike`, `sticky_moneyness`, `minimum_variance`: the band rule on that model's delta
  (minimum variance with a, b, c estimated from the `WARMUP_DAYS` before, sampled every
  `WARMUP_STEP_MINUTES`: the platform's own history of chain quotes);
- `market_delta`: the band rule on the simulator's own delta (`brokers.simulator.params.true_delta`),
  the best any futures hedge can do in this market: the reference of the ratios;
- `hedge_once`: hedged on the market's own delta at the start, never again.

Reported per book and strategy (pooled over seeds): the per-minute P&L standard deviation and its
ratio to `market_delta`'s, the share of minutes the market's own net delta is inside the band after
the minute's hedge, hedge trades and contracts per day and their cost per day.

    .venv/bin/python -m bench.hedging_bench            # about 10 minutes on a shared 2-core host
    .venv/bin/python -m bench.hedging_bench --quick    # one seed, one day
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from agents.parameters import Band  # noqa: E402
from agents.policy import band_half_width  # noqa: E402
from brokers.domain import Greeks, Instrument, Quote  # noqa: E402
from brokers.products import PRODUCTS, hedge_cost_per_contract  # noqa: E402
from brokers.simulator import SimConfig, SimulatedMarket  # noqa: E402
from brokers.simulator.clock import SimClock  # noqa: E402
from brokers.simulator.market import PricePath  # noqa: E402
from brokers.simulator.params import true_delta  # noqa: E402
from risk.book import instruments_risk, smile_chain  # noqa: E402
from risk.delta_models import (  # noqa: E402
    DeltaModel,
    EstimateFailure,
    HedgeObservation,
    estimate_minimum_variance,
)
from risk.greeks import black76, implied_vol  # noqa: E402

SYMBOL = "ES"
RATE = 0.04
START = datetime(2025, 2, 3, tzinfo=UTC)  # a Monday; the simulator's anchor is 2025-01-01
DAYS = 2
SEEDS = (1, 2, 3, 4, 5)
WARMUP_DAYS = 5
WARMUP_STEP_MINUTES = 30
BAND = Band()  # the agent's default: fixed, 1 contract either side
MODELS = ("sticky_strike", "sticky_moneyness", "minimum_variance")
STRATEGIES = (*MODELS, "market_delta", "hedge_once")
TARGET_RATIO = 1.5


@dataclass(frozen=True, slots=True)
class Leg:
    instrument: Instrument
    quantity: int


@dataclass
class Outcome:
    pnl: list[np.ndarray]
    inside: int = 0
    minutes: int = 0
    trades: int = 0
    contracts: int = 0
    cost: float = 0.0


def _quotes_at(paths: dict[str, PricePath], future: PricePath, minute: int, now: datetime) -> dict[str, Quote]:
    """What the broker would show at `minute`: every path's quote, options with broker greeks."""
    quotes = {}
    fbid, fask = future.bid[minute], future.ask[minute]
    fmid = 0.5 * (fbid + fask)
    quotes[future.instrument.key] = Quote(
        instrument=future.instrument, bid=float(fbid), ask=float(fask), last=None, bid_size=50, ask_size=50,
        time=now, underlying_price=None, greeks=None)
    for key, path in paths.items():
        option = path.instrument
        model = black76(path.forward[minute], option.strike, path.years[minute], RATE, path.vol[minute],
                        option.right == "C")
        bid, ask = path.bid[minute], path.ask[minute]
        quotes[key] = Quote(
            instrument=option, bid=None if np.isnan(bid) else float(bid), ask=None if np.isnan(ask) else float(ask),
            last=None, bid_size=25, ask_size=25, time=now, underlying_price=float(fmid),
            greeks=Greeks(delta=float(model.delta), gamma=float(model.gamma), vega=float(model.vega),
                          theta=float(model.theta), rho=float(model.rho), implied_vol=float(path.vol[minute]),
                          source="broker", time=now))
    return quotes


def _pick(options: list[Instrument], deltas: dict[str, float], right: str, target: float) -> Instrument:
    return min((o for o in options if o.right == right), key=lambda o: abs(abs(deltas[o.key]) - target))


def _books(market: SimulatedMarket, future: Instrument, when: datetime) -> tuple[dict[str, list[Leg]], list]:
    chain = market.option_chain(future)
    expiries = sorted({o.expiry for o in chain if (o.expiry - when.date()).days >= 14})
    near, far = expiries[0], expiries[-1]
    quotes = {q.instrument.key: q for q in market.quotes(chain)}
    deltas = {key: q.greeks.delta for key, q in quotes.items()}
    forward = quotes[chain[0].key].underlying_price

    def at(expiry):
        return [o for o in chain if o.expiry == expiry]

    atm_call = min((o for o in at(far) if o.right == "C"), key=lambda o: abs(o.strike - forward))
    books = {
        "50 short 20-delta strangles": [Leg(_pick(at(far), deltas, "C", 0.20), -50),
                                        Leg(_pick(at(far), deltas, "P", 0.20), -50)],
        "40 long ATM calls": [Leg(atm_call, 40)],
        "mixed (2 expiries)": [Leg(_pick(at(near), deltas, "P", 0.25), -30), Leg(_pick(at(far), deltas, "C", 0.30), 20),
                               Leg(_pick(at(near), deltas, "C", 0.10), -10)],
    }
    # The chain quoted for the smile fit, as the book sync chooses it (`risk.book.smile_chain`).
    smile = smile_chain([leg.instrument for legs in books.values() for leg in legs], chain, forward)
    return books, smile


def _estimate(market: SimulatedMarket, options: list[Instrument], future: Instrument, start: datetime):
    """Hull & White's a, b, c from the chain's quotes over the warm-up days (mids, sticky-strike
    greeks from each mid's implied vol), as the platform would from its stored history."""
    minutes = WARMUP_DAYS * 1440
    begin = start - timedelta(minutes=minutes)
    observations = []
    future_path = market.price_path(future, begin, minutes + 1)
    fmid = 0.5 * (future_path.bid + future_path.ask)[::WARMUP_STEP_MINUTES]
    for option in options:
        path = market.price_path(option, begin, minutes + 1)
        mid = (0.5 * (path.bid + path.ask))[::WARMUP_STEP_MINUTES]
        years = path.years[::WARMUP_STEP_MINUTES]
        vol = implied_vol(mid, fmid, option.strike, years, RATE, option.right == "C")
        model = black76(fmid, option.strike, years, RATE, vol, option.right == "C")
        for i in range(len(mid) - 1):
            observations.append(HedgeObservation(
                delta=float(model.delta[i]), vega=float(model.vega[i]), forward=float(fmid[i]),
                strike=option.strike, years=float(years[i]), is_call=option.right == "C",
                price_change=float(mid[i + 1] - mid[i]), forward_change=float(fmid[i + 1] - fmid[i])))
    return estimate_minimum_variance(observations, rate=RATE)


def run_seed(seed: int, days: int, results: dict, notes: list[str]) -> None:
    start = START
    market = SimulatedMarket(SimConfig(seed=seed), clock=SimClock.manual(start))
    future = market.listed_futures(SYMBOL)[0]
    books, smile_options = _books(market, future, start)
    coefficients = _estimate(market, smile_options, future, start)
    if isinstance(coefficients, EstimateFailure):
        notes.append(f"seed {seed}: minimum-variance coefficients not estimated ({coefficients.reason})")
        coefficients = None
    else:
        notes.append(f"seed {seed}: a={coefficients.a:+.3f} b={coefficients.b:+.3f} c={coefficients.c:+.3f} "
                     f"({coefficients.observations} observations)")
    models = {
        "sticky_strike": DeltaModel("sticky_strike"),
        "sticky_moneyness": DeltaModel("sticky_moneyness"),
        "minimum_variance": DeltaModel("minimum_variance", coefficients),
    }
    minutes = days * 1440
    legs = list(dict.fromkeys(leg.instrument for legs in books.values() for leg in legs))
    wanted = list(dict.fromkeys([*smile_options, *legs]))
    paths = {o.key: market.price_path(o, start, minutes) for o in wanted}
    fpath = market.price_path(future, start, minutes)
    leg_paths = {o.key: paths[o.key] for o in legs}
    # Per leg, per minute: each model's delta (the platform's valuation) and the market's own.
    deltas = {name: {o.key: np.empty(minutes) for o in legs} for name in (*MODELS, "market_delta")}
    for minute in range(minutes):
        now = start + timedelta(minutes=minute)
        quotes = _quotes_at(paths, fpath, minute, now)
        for name, model in models.items():
            for option, risk in zip(legs, instruments_risk(legs, quotes, now=now, rate=RATE, delta_models=model),
                                    strict=True):
                deltas[name][option.key][minute] = risk.delta
    for option in legs:
        path = leg_paths[option.key]
        deltas["market_delta"][option.key][:] = true_delta(
            SYMBOL, forward=path.forward, strike=option.strike, years=path.years, rate=RATE,
            atm_vol=path.atm_vol, is_call=option.right == "C")
    multiplier = PRODUCTS[SYMBOL].multiplier
    cost_per_contract = hedge_cost_per_contract(PRODUCTS[SYMBOL])
    half_width = band_half_width(BAND, net_gamma=0.0, future_multiplier=multiplier)
    for book_name, book in books.items():
        option_value = sum(leg.quantity * multiplier * leg_paths[leg.instrument.key].fair for leg in book)
        for strategy in STRATEGIES:
            source = "market_delta" if strategy in ("market_delta", "hedge_once") else strategy
            seen = sum(leg.quantity * deltas[source][leg.instrument.key] for leg in book)
            truth = sum(leg.quantity * deltas["market_delta"][leg.instrument.key] for leg in book)
            outcome = results.setdefault((book_name, strategy), Outcome(pnl=[]))
            hedge = 0
            costs = np.zeros(minutes)
            held = np.empty(minutes)
            for minute in range(minutes):
                if strategy != "hedge_once" or minute == 0:
                    deviation = seen[minute] + hedge
                    wanted_trade = round(-deviation) if abs(deviation) > half_width else 0
                    if wanted_trade:
                        hedge += wanted_trade
                        costs[minute] = abs(wanted_trade) * cost_per_contract
                        outcome.trades += 1
                        outcome.contracts += abs(wanted_trade)
                held[minute] = hedge
                outcome.inside += int(abs(truth[minute] + hedge) <= half_width)
            pnl = np.diff(option_value) + held[:-1] * multiplier * np.diff(fpath.fair) - costs[1:]
            outcome.pnl.append(pnl)
            outcome.minutes += minutes
            outcome.cost += float(costs.sum())


def report(results: dict, seeds: int, days: int) -> str:
    lines = []
    books = list(dict.fromkeys(book for book, _ in results))
    total_days = seeds * days
    for book in books:
        reference = float(np.std(np.concatenate(results[(book, "market_delta")].pnl)))
        never = float(np.std(np.concatenate(results[(book, "hedge_once")].pnl)))
        lines.append(f"\n{book} ({seeds} seeds x {days} days, one-minute steps)")
        lines.append("| delta model | P&L std per minute (USD) | ratio to market delta | minutes inside band "
                     "| hedge trades per day | contracts per day | hedge cost per day (USD) | beats hedge-once |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for strategy in STRATEGIES:
            outcome = results[(book, strategy)]
            std = float(np.std(np.concatenate(outcome.pnl)))
            ratio = std / reference if reference > 0 else math.nan
            beats = "-" if strategy == "hedge_once" else ("yes" if std < never else "NO")
            lines.append(
                f"| {strategy} | {std:,.1f} | {ratio:.2f}x | {100.0 * outcome.inside / outcome.minutes:.1f}% | "
                f"{outcome.trades / total_days:.1f} | {outcome.contracts / total_days:.1f} | "
                f"{outcome.cost / total_days:,.0f} | {beats} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one day")
    args = parser.parse_args(argv)
    seeds = SEEDS[:1] if args.quick else SEEDS
    days = 1 if args.quick else DAYS
    results: dict = {}
    notes: list[str] = []
    began = time.perf_counter()
    for seed in seeds:
        run_seed(seed, days, results, notes)
    print(report(results, len(seeds), days))
    print("\nMinimum-variance coefficients (Hull & White), estimated per seed over the warm-up days:")
    for note in notes:
        print(f"- {note}")
    misses = []
    for (book, strategy), outcome in results.items():
        if strategy not in MODELS:
            continue
        std = float(np.std(np.concatenate(outcome.pnl)))
        reference = float(np.std(np.concatenate(results[(book, "market_delta")].pnl)))
        never = float(np.std(np.concatenate(results[(book, "hedge_once")].pnl)))
        if std > TARGET_RATIO * reference or std >= never:
            misses.append(f"{strategy} on {book}")
    print(f"\nTarget: within {TARGET_RATIO}x of the market delta's P&L std and better than hedge-once. "
          + ("Missed by: " + "; ".join(misses) if misses else "Met by every model."))
    print(f"({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
