"""Which option classes and expiries of one future IBKR's chain lists (pure).

An option is chosen by the future it delivers, not by its own expiry: CME's serial months
(January and February options deliver the March future, April and May the June one) expire before
their underlying, so a chain that kept only the options expiring with the future would never show
them, and the agent's 20-60 day window would often find nothing to trade. TWS answers
`reqSecDefOptParams` for one underlying future (by conId) with one row per exchange and trading
class, each listing every expiry whose options deliver that future, serial months included.

The rows kept are those of the connection's exchange and of the product's standard option class
(the table's `option_trading_class`, or the connection's `trading_class`): weekly and
end-of-month classes (ES's EW, EW1-EW4, E1A-E5D) are other products with other expiry times and
settlement, and are not mixed in. Their expiries are then listed one reqContractDetails per
expiry (blank strike and right), never one request per option.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One row of TWS's securityDefinitionOptionParameter answer."""

    exchange: str
    underlying_con_id: int
    trading_class: str
    multiplier: str
    expirations: tuple[str, ...]  # YYYYMMDD


def chain_expiries(rows: list[ChainRow], *, exchange: str, trading_class: str,
                   underlying_con_id: int) -> list[tuple[str, str]]:
    """(trading class, expiry) pairs to list for the future `underlying_con_id`, sorted."""
    wanted = {
        (row.trading_class, expiry)
        for row in rows
        if row.exchange == exchange and row.trading_class == trading_class
        and int(row.underlying_con_id) == underlying_con_id
        for expiry in row.expirations
    }
    return sorted(wanted, key=lambda pair: (pair[1], pair[0]))
