"""What the book makes or loses if the market moves: the risk graph, with the platform's own pricing.

Pure: valued legs in, P&L in USD out. Each leg is repriced at a shifted underlying (its forward
times 1 + shift), a shifted implied vol (its own, plus `vol_shift` in vol points) and a later
moment (`days` ahead), with Black-76 from risk.greeks; a future moves one for one. "At expiry"
reprices at the book's nearest option expiry: the options expiring then are worth their intrinsic
value, later ones keep their time value. P&L is against each leg's current mark, so the curve
passes through zero at no shift with no vol change and no time passed.

A pending proposal's legs are valued the same way (`scenario_leg` over their quotes) and added to
the book's, so the graph can show the book as it would be after the trade.

A leg without a mark, a forward or a vol cannot be repriced: the result says which (`unpriced`)
and leaves them out, rather than drawing a curve that is silently wrong.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from brokers.products import expiry_moment
from risk.book import SECONDS_PER_YEAR, InstrumentRisk, LegValuation
from risk.greeks import black76

DEFAULT_SHIFTS = tuple(round(-0.10 + 0.01 * i, 2) for i in range(21))  # -10 % .. +10 % in 1 % steps


@dataclass(frozen=True, slots=True)
class ScenarioLeg:
    """A leg as the scenario needs it (also what a pending proposal adds to the book)."""

    key: str
    is_option: bool
    is_call: bool
    strike: float
    quantity: int
    multiplier: float
    mark: float | None  # per contract, in points
    forward: float | None
    vol: float | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class ScenarioCurve:
    shifts: tuple[float, ...]
    pnl: tuple[float, ...]  # USD, one per shift
    unpriced: tuple[str, ...]  # legs left out, and why


def scenario_leg(risk: InstrumentRisk, quantity: int) -> ScenarioLeg:
    """A valued instrument held (or to be traded) in `quantity` contracts, signed."""
    instrument = risk.instrument
    return ScenarioLeg(
        key=instrument.key, is_option=instrument.is_option, is_call=instrument.right == "C",
        strike=float(instrument.strike or 0.0), quantity=quantity, multiplier=instrument.multiplier,
        mark=risk.mark, forward=risk.forward if instrument.is_option else risk.mark,
        vol=risk.implied_vol, expires_at=expiry_moment(instrument),
    )


def scenario_legs(legs: Sequence[LegValuation]) -> list[ScenarioLeg]:
    return [scenario_leg(leg.risk, leg.quantity) for leg in legs]


def pnl_curve(
    legs: Sequence[ScenarioLeg], *, now: datetime, rate: float, shifts: Sequence[float] = DEFAULT_SHIFTS,
    vol_shift: float = 0.0, days: float = 0.0, at_expiry: bool = False,
) -> ScenarioCurve:
    """The book's P&L (USD) at each relative shift of the underlying."""
    shift_array = np.asarray(shifts, dtype=np.float64)
    total = np.zeros_like(shift_array)
    unpriced: list[str] = []
    option_expiries = [leg.expires_at for leg in legs if leg.is_option and leg.quantity and leg.expires_at]
    horizon = now + timedelta(days=days)
    if at_expiry and option_expiries:
        horizon = max(horizon, min(option_expiries))
    for leg in legs:
        if not leg.quantity:
            continue
        if leg.mark is None or leg.forward is None or not math.isfinite(leg.mark) or not math.isfinite(leg.forward):
            unpriced.append(f"{leg.key}: no mark or forward")
            continue
        forward = leg.forward * (1.0 + shift_array)
        if not leg.is_option:
            value = forward
        else:
            years = (leg.expires_at - horizon).total_seconds() / SECONDS_PER_YEAR if leg.expires_at else float("nan")
            if not math.isfinite(years):
                unpriced.append(f"{leg.key}: no expiry")
                continue
            if years <= 0.0:
                value = np.maximum(0.0, (forward - leg.strike) if leg.is_call else (leg.strike - forward))
            elif leg.vol is None or not math.isfinite(leg.vol):
                unpriced.append(f"{leg.key}: no implied vol")
                continue
            else:
                vol = max(leg.vol + vol_shift, 0.01)
                value = black76(forward, leg.strike, years, rate, vol, leg.is_call).price
        total += (np.asarray(value, dtype=np.float64) - leg.mark) * leg.quantity * leg.multiplier
    return ScenarioCurve(shifts=tuple(float(s) for s in shift_array), pnl=tuple(float(v) for v in total),
                         unpriced=tuple(unpriced))
