"""The policy's records: what a decision reads (`PolicyInputs`, `QuotedInstrument`, `OpenStructure`)
and what it gives (`PolicyDecision`, `ProposedTrade`), and `POLICY_VERSION`. Frozen dataclasses."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from agents.parameters import AgentParameters
from brokers.domain import OrderLeg
from risk.book import BookValuation, InstrumentRisk
from risk.governor import RiskLimits
from risk.working import NO_WORKING_ORDERS, WorkingExposure

POLICY_VERSION = "delta-neutral/4"  # bump when decisions change (4: net delta in the chosen delta model)

TradeAction = Literal["hedge", "roll_hedge", "open_structure", "close_structure"]


@dataclass(frozen=True, slots=True)
class QuotedInstrument:
    """One instrument's current risk and two-sided quote."""

    risk: InstrumentRisk
    bid: float | None
    ask: float | None

    @property
    def two_sided(self) -> bool:
        """Both sides present and positive: a zero bid is no bid."""
        return self.bid is not None and self.ask is not None and 0.0 < self.bid <= self.ask


@dataclass(frozen=True, slots=True)
class OpenStructure:
    """The option structure the agent opened and still holds (from its memory).

    `legs` holds each instrument's signed quantity for the whole structure, `quantity` units of
    it, so a leg's ratio per unit is its quantity / `quantity` (a whole number). `entry_price` is
    per unit, in the combo convention: > 0 a debit paid, < 0 a credit received.
    """

    kind: str
    legs: tuple[tuple[str, int], ...]
    entry_price: float
    quantity: int
    expiry: date
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    """Everything a decision depends on. `now` must be timezone-aware; `rate` (annual, decimal)
    is the one the book was valued with, used for the Whalley-Wilmott band's discount factor."""

    now: datetime
    parameters: AgentParameters
    limits: RiskLimits
    book: BookValuation
    hedge: QuotedInstrument | None
    chain: tuple[QuotedInstrument, ...]
    structure: OpenStructure | None
    rate: float = 0.0
    # Futures of the underlying held in a contract expiring before the hedge future (it rolled):
    # moved into the hedge future as one calendar spread.
    expiring_futures: tuple[QuotedInstrument, ...] = ()
    # The orders sent and not finished, their remaining quantities valued: counted as if filled.
    working: WorkingExposure = NO_WORKING_ORDERS

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if not math.isfinite(self.rate):
            raise ValueError(f"rate must be finite, got {self.rate!r}")


@dataclass(frozen=True, slots=True)
class ProposedTrade:
    action: TradeAction
    legs: tuple[OrderLeg, ...]
    limit_price: float
    rationale: dict[str, Any]
    summary: str


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    policy_version: str
    trades: tuple[ProposedTrade, ...]
    reason: str
    metrics: dict[str, Any]
    inputs_digest: str
