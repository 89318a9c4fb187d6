"""Throughput and latency of risk.greeks on one core, with QuantLib beside it.

Run from the repository root: `python -m bench.greeks_bench` (about 20 seconds). Figures and the
machine they came from are recorded in bench/README.md.
"""
from __future__ import annotations

import os

# Before numpy is imported: one thread for every math library, so the figures are one core's.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import date  # noqa: E402

import numpy as np  # noqa: E402
import QuantLib as ql  # noqa: E402

from bench.governor_bench import machine as host_machine  # noqa: E402
from risk.greeks import black76, implied_vol  # noqa: E402

BookArrays = dict[str, np.ndarray]


def random_book(n: int, seed: int = 0) -> BookArrays:
    """A mixed chain: several underlyings, strikes +-40% around the money, 1 day to 2 years."""
    rng = np.random.default_rng(seed)
    forward = rng.choice([70.0, 2600.0, 6000.0, 21000.0], n) * rng.uniform(0.95, 1.05, n)
    return {
        "forward": forward,
        "strike": forward * np.exp(rng.uniform(-0.4, 0.4, n)),
        "time_to_expiry": rng.uniform(1.0 / 365.0, 2.0, n),
        "rate": rng.uniform(0.0, 0.05, n),
        "vol": rng.uniform(0.1, 0.6, n),
        "is_call": rng.random(n) < 0.5,
    }


def seconds_per_call(run: Callable[[], object], calls: int) -> list[float]:
    run()  # warm caches and allocator
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def throughput_rows() -> list[tuple[str, str, str]]:
    rows = []
    for n, calls in ((1_000, 2_000), (100_000, 60), (1_000_000, 15)):
        book = random_book(n)
        times = seconds_per_call(lambda book=book: black76(**book), calls)
        median = statistics.median(times)
        rows.append((
            f"black76 price + 5 greeks, N={n:,}",
            f"{n / median / 1e6:,.1f} M options/s (best {n / min(times) / 1e6:,.1f})",
            f"{median * 1e3:,.3f} ms per call",
        ))
    book = random_book(100_000, seed=1)
    prices = black76(**book).price
    times = seconds_per_call(
        lambda: implied_vol(prices, book["forward"], book["strike"], book["time_to_expiry"],
                            book["rate"], book["is_call"]),
        10,
    )
    median = statistics.median(times)
    rows.append(("implied_vol, N=100,000", f"{100_000 / median / 1e6:,.2f} M options/s",
                 f"{median * 1e3:,.1f} ms per call"))
    return rows


def latency_rows() -> list[tuple[str, str, str]]:
    rows = []
    book = random_book(100, seed=2)
    with_expired = {name: values.copy() for name, values in book.items()}
    with_expired["time_to_expiry"][0] = 0.0
    for label, legs in (("100-leg book", book), ("100-leg book, one leg expired", with_expired)):
        times_us = np.array(seconds_per_call(lambda legs=legs: black76(**legs), 20_000)) * 1e6
        rows.append((
            f"black76 latency, {label}",
            f"median {np.median(times_us):,.1f} us",
            f"p99 {np.percentile(times_us, 99):,.1f} us",
        ))
    return rows


def quantlib_rows(n: int = 3_000) -> list[tuple[str, str, str]]:
    book = random_book(n, seed=3)
    today = ql.Date(15, ql.January, 2025)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    days = np.maximum(1, np.rint(book["time_to_expiry"] * 365.0)).astype(int)

    def engine_route() -> None:
        # The usual QuantLib set-up for an option on a future: a BlackProcess per option.
        for i in range(n):
            process = ql.BlackProcess(
                ql.QuoteHandle(ql.SimpleQuote(float(book["forward"][i]))),
                ql.YieldTermStructureHandle(ql.FlatForward(today, float(book["rate"][i]), day_count)),
                ql.BlackVolTermStructureHandle(
                    ql.BlackConstantVol(today, ql.NullCalendar(), float(book["vol"][i]), day_count)
                ),
            )
            option_type = ql.Option.Call if book["is_call"][i] else ql.Option.Put
            option = ql.VanillaOption(
                ql.PlainVanillaPayoff(option_type, float(book["strike"][i])),
                ql.EuropeanExercise(today + int(days[i])),
            )
            option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
            option.NPV(), option.delta(), option.gamma(), option.vega(), option.thetaPerDay()
            option.rho()

    def calculator_route() -> None:
        for i in range(n):
            t = float(book["time_to_expiry"][i])
            option_type = ql.Option.Call if book["is_call"][i] else ql.Option.Put
            calculator = ql.BlackCalculator(
                ql.PlainVanillaPayoff(option_type, float(book["strike"][i])),
                float(book["forward"][i]),
                float(book["vol"][i]) * math.sqrt(t),
                math.exp(-float(book["rate"][i]) * t),
            )
            calculator.value(), calculator.deltaForward(), calculator.gammaForward()
            calculator.vega(t)

    rows = []
    for label, route in (
        ("QuantLib AnalyticEuropeanEngine + BlackProcess, price + 5 greeks", engine_route),
        ("QuantLib BlackCalculator, price + delta, gamma, vega", calculator_route),
    ):
        per_option = statistics.median(seconds_per_call(route, 3)) / n
        rows.append((f"{label} ({n:,} options)", f"{1 / per_option / 1e3:,.1f} k options/s",
                     f"{per_option * 1e6:,.2f} us per option"))
    return rows


def machine() -> str:
    return f"{host_machine()}, numpy {np.__version__}, QuantLib {ql.__version__}"


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rows = throughput_rows() + latency_rows() + quantlib_rows()
    width = max(len(row[0]) for row in rows)
    print(f"risk.greeks benchmark, {date.today().isoformat()}, one core of: {machine()}")
    print()
    for name, first, second in rows:
        print(f"{name:<{width}}  {first:<40}  {second}")


if __name__ == "__main__":
    main()
