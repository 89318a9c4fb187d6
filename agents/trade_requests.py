"""What a trader asks the agent to trade: explicit legs, or a structure to open, close or roll, or
everything to close. Pure: the chat's intents and the API both describe a request with these, and
`agents.services.proposal_draft` turns one into pending proposals.

A leg names what a desk names: side, quantity, product, future or option, and for an option its
strike and right. The expiry is optional: a future defaults to the agent's hedge future
(`brokers.contracts`), an option to the expiry the agent would choose in its structure window.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Literal


class RequestKind(StrEnum):
    LEGS = "legs"  # the legs as given: one order (a combo when several)
    OPEN_STRUCTURE = "open_structure"  # a structure chosen like the agent's (strikes by delta)
    CLOSE_STRUCTURE = "close_structure"  # the structure the agent holds
    ROLL = "roll"  # the held structure (its close first) and futures held in a rolled contract
    CLOSE_ALL = "close_all"  # every position: the held structure as one order, the rest leg by leg


@dataclass(frozen=True, slots=True)
class LegSpec:
    side: Literal["BUY", "SELL"]
    quantity: int
    symbol: str
    sec_type: Literal["FUT", "FOP"]
    expiry: date | None = None
    strike: float | None = None
    right: Literal["C", "P"] | None = None

    def describe(self) -> str:
        what = "future" if self.sec_type == "FUT" else f"{self.strike:g} {'call' if self.right == 'C' else 'put'}"
        when = f" expiring {self.expiry.isoformat()}" if self.expiry else ""
        return f"{self.side.lower()} {self.quantity} {self.symbol} {what}{when}"

    def as_json(self) -> dict[str, Any]:
        return {"side": self.side, "quantity": self.quantity, "symbol": self.symbol, "sec_type": self.sec_type,
                "expiry": self.expiry.isoformat() if self.expiry else None, "strike": self.strike,
                "right": self.right}


@dataclass(frozen=True, slots=True)
class TradeRequest:
    kind: RequestKind
    legs: tuple[LegSpec, ...] = ()  # LEGS
    structure: str = ""  # OPEN_STRUCTURE: the kind to open; CLOSE_STRUCTURE: the kind named ("" any)
    units: int = 0  # OPEN_STRUCTURE: structure units

    def describe(self) -> str:
        match self.kind:
            case RequestKind.LEGS:
                return ", ".join(leg.describe() for leg in self.legs)
            case RequestKind.OPEN_STRUCTURE:
                return f"open {self.units} {self.structure.replace('_', ' ')}"
            case RequestKind.CLOSE_STRUCTURE:
                return f"close the {self.structure.replace('_', ' ') or 'structure'}"
            case RequestKind.ROLL:
                return "roll"
            case _:
                return "close everything"

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "legs": [leg.as_json() for leg in self.legs],
                "structure": self.structure, "units": self.units}
