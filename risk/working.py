"""Working orders as risk: what the broker may still fill counts like what is already held.

An order sent and not finished (submitted, partly filled, or of an outcome still being asked) may
fill at any moment, so its *remaining* quantity counts in the net delta the policy hedges and in
the governor's limits; its filled part is in the positions already. A cancelled, rejected,
expired or filled order counts no more.

Pure: order legs and quotes in, frozen dataclasses out; each leg valued by `risk.book`'s
`instruments_risk`, exactly as a position in the same contract would be.

Quantities: a combo's filled quantity is in combo units (the legs' greatest common divisor), as
every broker adapter reports it; `remaining_legs` turns it into contracts per leg.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce

from brokers.domain import Instrument, Quote
from risk.book import DeltaModels, InstrumentRisk, instruments_risk


@dataclass(frozen=True, slots=True)
class WorkingLeg:
    client_order_id: str
    instrument: Instrument
    quantity: int  # signed contracts still to fill: buy > 0, sell < 0


def remaining_legs(
    *, client_order_id: str, legs: Sequence[tuple[Instrument, str, int]], filled_units: int,
    filled_contracts: Mapping[str, int] | None = None,
) -> list[WorkingLeg]:
    """The legs of an order still to fill: `legs` as (instrument, side, total contracts), of which
    `filled_units` combo units are filled. `filled_contracts` (instrument key -> contracts, from
    the fills recorded for this order) wins where it says more has filled: a fill seen in the
    book before the order's status caught up is not counted twice."""
    quantities = [quantity for _, _, quantity in legs if quantity > 0]
    if not quantities or len(quantities) != len(legs):
        return []
    units = reduce(math.gcd, quantities)
    remaining_units = min(max(units - filled_units, 0), units)
    result = []
    for instrument, side, quantity in legs:
        remaining = quantity // units * remaining_units
        if filled_contracts:
            remaining = min(remaining, max(quantity - filled_contracts.get(instrument.key, 0), 0))
        if remaining:
            result.append(WorkingLeg(client_order_id, instrument, remaining if side == "BUY" else -remaining))
    return result


@dataclass(frozen=True, slots=True)
class WorkingLegValuation:
    leg: WorkingLeg
    risk: InstrumentRisk

    @property
    def delta_equivalent(self) -> float:
        """In underlying futures contracts; NaN when the contract's delta is unknown."""
        return self.leg.quantity * self.risk.delta_per_contract


@dataclass(frozen=True, slots=True)
class WorkingExposure:
    """Every working order's remaining legs, valued."""

    legs: tuple[WorkingLegValuation, ...] = ()

    @property
    def order_ids(self) -> tuple[str, ...]:
        return tuple(sorted({leg.leg.client_order_id for leg in self.legs}))

    def without(self, client_order_id: str) -> WorkingExposure:
        """The exposure apart from one order (an order is never counted against itself)."""
        return WorkingExposure(tuple(leg for leg in self.legs if leg.leg.client_order_id != client_order_id))

    def for_symbol(self, symbol: str) -> WorkingExposure:
        return WorkingExposure(tuple(leg for leg in self.legs if leg.leg.instrument.symbol == symbol))

    def quantities(self) -> dict[str, int]:
        """Signed remaining contracts per instrument key, every order summed (zeros dropped)."""
        totals: dict[str, int] = {}
        for leg in self.legs:
            key = leg.leg.instrument.key
            totals[key] = totals.get(key, 0) + leg.leg.quantity
        return {key: quantity for key, quantity in totals.items() if quantity}

    @property
    def delta(self) -> float:
        """Net delta of the remaining quantities, underlying contracts; NaN when one is unknown."""
        return float(sum(leg.delta_equivalent for leg in self.legs))

    def as_json(self) -> dict:
        """For the live state, the `greeks` event and status: what works, and its delta apart."""
        by_symbol: dict[str, float] = {}
        for leg in self.legs:
            symbol = leg.leg.instrument.symbol
            by_symbol[symbol] = by_symbol.get(symbol, 0.0) + leg.delta_equivalent
        return {
            "orders": len(self.order_ids),
            "net_delta": _finite(self.delta),
            "by_underlying": [{"underlying": symbol, "delta": _finite(delta)}
                              for symbol, delta in sorted(by_symbol.items())],
            "legs": [{"client_order_id": leg.leg.client_order_id, "instrument_key": leg.leg.instrument.key,
                      "quantity": leg.leg.quantity, "delta": _finite(leg.delta_equivalent)}
                     for leg in sorted(self.legs, key=lambda v: (v.leg.client_order_id, v.leg.instrument.key))],
        }


NO_WORKING_ORDERS = WorkingExposure()


def value_working(legs: Iterable[WorkingLeg], quotes: Mapping[str, Quote], *, now: datetime,
                  rate: float, delta_models: DeltaModels = None) -> WorkingExposure:
    """The remaining quantities of working orders, each leg's delta in its underlying's model (as
    the book's: `risk.book.instruments_risk`)."""
    legs = list(legs)
    if not legs:
        return NO_WORKING_ORDERS
    risks = instruments_risk([leg.instrument for leg in legs], quotes, now=now, rate=rate, delta_models=delta_models)
    return WorkingExposure(tuple(WorkingLegValuation(leg, risk) for leg, risk in zip(legs, risks, strict=True)))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
