"""Decision latency of the governor's pure pre-trade check, market-hours bisect included.

Run from the repository root: `python -m bench.governor_bench` (a few seconds). Figures and the
machine they came from are recorded in bench/README.md under "Governor".

Each scenario is a function returning a zero-argument callable that makes one decision; `SCENARIOS`
lists them and `main` times and reports every one the same way. To measure the full pre-trade path
(per-client lock, recorded decision, audit write), add a scenario function that sets up the
database once and returns the callable, and append it to `SCENARIOS`.
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from risk.governor import (
    Book,
    LegQuote,
    ProposedLeg,
    ProposedOrder,
    RecentOrder,
    RiskLimits,
    RiskState,
    evaluate_order,
)
from risk.sessions import MarketHours

CALENDAR = "CME Globex Equity"
# A Tuesday mid-morning: the market is open, so every rule runs to the end.
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("America/Chicago"))

Decide = Callable[[], object]


@dataclass(frozen=True, slots=True)
class Timing:
    name: str
    calls: int
    p50_us: float
    p99_us: float
    mean_us: float


def time_calls(
    name: str, decide: Decide, calls: int = 20_000, warmup: int = 2_000, between: Callable[[], None] | None = None
) -> Timing:
    """Time `calls` single decisions one by one (perf_counter_ns around each call); `between`, when
    given, runs untimed after each call (to reset state a scenario must not accumulate)."""
    for _ in range(warmup):
        decide()
        if between is not None:
            between()
    gc.collect()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        start = clock()
        decide()
        samples.append(clock() - start)
        if between is not None:
            between()
    samples.sort()
    return Timing(
        name=name,
        calls=calls,
        p50_us=samples[calls // 2] / 1e3,
        p99_us=samples[min(calls - 1, int(calls * 0.99))] / 1e3,
        mean_us=statistics.fmean(samples) / 1e3,
    )


def _book(legs: int) -> Book:
    """`legs` open positions: one future and options around the money, short and long."""
    positions = {"ES FUT 20261218": 4}
    for i in range(legs - 1):
        right = "C" if i % 2 else "P"
        positions[f"ES FOP 20261218 {5000 + 5 * i} {right}"] = (i % 7) - 3 or 1
    return Book(
        positions=positions,
        net_delta=3.2,
        realized_pnl_today=Decimal("-412.50"),
        unrealized_pnl=Decimal("180.25"),
        broker_connected=True,
    )


def _leg(key: str, quantity: int, delta: float, is_option: bool) -> ProposedLeg:
    return ProposedLeg(
        instrument_key=key,
        calendar=CALENDAR,
        quantity=quantity,
        delta_per_contract=delta,
        is_option=is_option,
        quote=LegQuote(bid=12.25, ask=12.75, time=NOW - timedelta(seconds=1)),
    )


def _state() -> RiskState:
    recent = tuple(RecentOrder(NOW - timedelta(seconds=10 * i), f"order-{i}") for i in range(5))
    return RiskState(recent_orders=recent)


_LIMITS = RiskLimits(max_net_delta=25.0, max_open_legs=250, max_orders_per_minute=30)
_MARKET = MarketHours(today=date(2026, 11, 24))


def pure_check(book_legs: int, order_legs: int) -> Decide:
    """One order of `order_legs` legs (options plus a futures hedge) against a `book_legs` book."""
    book = _book(book_legs)
    legs = [_leg("ES FUT 20261218", -1, 1.0, False)]
    legs += [_leg(f"ES FOP 20261218 {6000 + 25 * i} C", 1, 0.35, True) for i in range(order_legs - 1)]
    order = ProposedOrder(tuple(legs))
    state = _state()
    _MARKET.is_open(CALENDAR, NOW)  # build the session table outside the timing
    if not evaluate_order(order, book, _LIMITS, state, _MARKET, NOW).accepted:
        raise RuntimeError("the benchmark order should pass every rule")
    return lambda: evaluate_order(order, book, _LIMITS, state, _MARKET, NOW)


def rejected_check(book_legs: int) -> Decide:
    """The worst case for reporting: an order that fails many rules at once, all reported."""
    book = _book(book_legs)
    stale = LegQuote(bid=10.0, ask=14.0, time=NOW - timedelta(minutes=5))
    legs = tuple(
        ProposedLeg(f"ES FOP 20261218 {6000 + 25 * i} C", CALENDAR, 40, 0.5, True, stale) for i in range(4)
    )
    order = ProposedOrder(legs)
    limits = RiskLimits(max_net_delta=5.0, max_open_legs=10)
    state = _state()
    _MARKET.is_open(CALENDAR, NOW)
    if len(evaluate_order(order, book, limits, state, _MARKET, NOW).violations) != 15:
        raise RuntimeError("the benchmark order should fail many rules")
    return lambda: evaluate_order(order, book, limits, state, _MARKET, NOW)


def market_hours_bisect() -> Decide:
    _MARKET.is_open(CALENDAR, NOW)
    return lambda: _MARKET.is_open(CALENDAR, NOW)


SCENARIOS: list[tuple[str, Callable[[], Decide]]] = [
    ("market hours: is_open (bisect)", market_hours_bisect),
    ("pure check, 10-leg book, 2-leg order", lambda: pure_check(10, 2)),
    ("pure check, 200-leg book, 2-leg order", lambda: pure_check(200, 2)),
    ("pure check, 10-leg book, 4-leg combo", lambda: pure_check(10, 4)),
    ("pure check, 200-leg book, 4-leg combo", lambda: pure_check(200, 4)),
    ("pure check, 200-leg book, 4-leg order rejected (15 violations)", lambda: rejected_check(200)),
]


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def report(timings: list[Timing]) -> str:
    width = max(len(t.name) for t in timings)
    lines = [f"{'scenario':<{width}}  {'p50 us':>8}  {'p99 us':>8}  {'mean us':>8}  calls"]
    for t in timings:
        lines.append(f"{t.name:<{width}}  {t.p50_us:8.2f}  {t.p99_us:8.2f}  {t.mean_us:8.2f}  {t.calls:,}")
    return "\n".join(lines)


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    timings = [time_calls(name, build()) for name, build in SCENARIOS]
    print(f"governor benchmark, {date.today().isoformat()}, one core of: {machine()}")
    print()
    print(report(timings))


if __name__ == "__main__":
    main()
