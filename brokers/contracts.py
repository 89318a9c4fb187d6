"""Which contracts a desk trades today: the hedge future, and the futures whose options it looks at.

The agent, the demo bootstrap and the tests all choose through here.

Pure: listed futures and a date in, choices and the reason out. A desk that trades through every
expiry never hedges with a future in its last week, and never goes blind to the options of the
next quarter while the front one runs off:

- the hedge future is the nearest listed one whose roll date (`brokers.products.roll_date`: for
  the E-minis the Thursday eight days before expiry) is still ahead. From the roll date on, the
  agent hedges with the next contract and its journal says so. A hedge future the owner chose
  (`hedge_future_expiry`) is kept whatever the date: that is their decision, and the journal
  says when it is past its roll date;
- options come from the hedge future and from each later future while the days-to-expiry
  window reaches past the previous one's expiry: the structure window of 20-60 days three weeks
  before a quarterly expiry finds January's options, which deliver the March future.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from brokers.domain import Instrument
from brokers.products import PRODUCTS, roll_date


@dataclass(frozen=True, slots=True)
class HedgeChoice:
    future: Instrument
    note: str  # empty when nothing needs saying


def hedge_future_select(futures: list[Instrument], *, today: date, chosen_expiry: date | None) -> HedgeChoice:
    """The future to hedge with among the listed ones (nearest first; at least one)."""
    if not futures:
        raise ValueError("no listed future to hedge with")
    futures = sorted(futures, key=lambda future: future.expiry)
    if chosen_expiry is not None:
        pinned = next((f for f in futures if f.expiry == chosen_expiry), None)
        if pinned is None:
            raise ValueError(f"no listed future expires on {chosen_expiry.isoformat()}")
        rolled = roll_date(PRODUCTS[pinned.symbol], pinned.expiry) if pinned.symbol in PRODUCTS else None
        note = ""
        if rolled is not None and today >= rolled:
            note = (f"The hedge future {pinned.key} was chosen in the parameters; it is past its roll date "
                    f"{rolled.isoformat()}.")
        return HedgeChoice(future=pinned, note=note)
    front = futures[0]
    if front.symbol not in PRODUCTS:
        return HedgeChoice(future=front, note="")
    product = PRODUCTS[front.symbol]
    # The first future not yet at its roll date (the last listed one when all are).
    index = next((i for i, future in enumerate(futures) if today < roll_date(product, future.expiry)),
                 len(futures) - 1)
    future = futures[index]
    if index == 0:
        return HedgeChoice(future=future, note="")
    previous = futures[index - 1]
    return HedgeChoice(future=future, note=(
        f"Hedging with {future.key}: {previous.key} rolled on {roll_date(product, previous.expiry).isoformat()}, "
        f"ahead of its expiry on {previous.expiry.isoformat()}."))


def option_underlyings(futures: list[Instrument], *, hedge: Instrument, today: date, dte_max: int) -> list[Instrument]:
    """The futures whose options may fall in a window ending `dte_max` days out: the hedge future,
    then each later one while the one before it expires inside the window."""
    later = sorted((f for f in futures if f.expiry >= hedge.expiry and f.key != hedge.key),
                   key=lambda future: future.expiry)
    chosen = [hedge]
    for future in later:
        if (chosen[-1].expiry - today).days >= dte_max:
            break
        chosen.append(future)
    return chosen
