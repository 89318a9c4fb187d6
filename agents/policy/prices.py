"""Small price and date helpers of the policy: a quote's mid, a price rounded up to its tick, the
UTC date of `now`."""
from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal

from agents.policy.model import QuotedInstrument


def _mid(quoted: QuotedInstrument) -> float:
    """The middle of the quote; a missing bid counts as zero (no one pays anything for it)."""
    bid = quoted.bid or 0.0
    ask = quoted.ask if quoted.ask is not None else bid
    return (bid + ask) / 2.0


def _round_up_to_tick(price: float, tick: float) -> float:
    steps = math.ceil(price / tick - 1e-9)  # 12.35 / 0.05 is 246.99999999999997 in floats
    decimals = max(0, -Decimal(repr(tick)).normalize().as_tuple().exponent)
    return round(steps * tick, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0


def _today(now: datetime) -> date:
    return now.astimezone(UTC).date()
