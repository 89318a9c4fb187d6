"""Which options of a chain a delta-targeting structure can choose, before quoting them (pure).

A broker quotes each option on one market-data line, and an account has few (IBKR: 100, shared
with TWS's own windows). A structure chosen by |delta| (a 0.20-delta strangle, a condor's 0.05
wings, an at-the-money straddle) can only ever pick strikes near its targets, so only those are
quoted, in two short rounds:

1. `atm_options`: the call and the put nearest the forward, per underlying future and expiry.
   Their price gives that expiry's at-the-money implied volatility.
2. `options_near_deltas`: per underlying, expiry and right, the strikes between the Black-76
   strike nearest each target |delta| at `vol_span[0]` and at `vol_span[1]` times that
   at-the-money volatility (the skew makes far puts dearer, and the market moves between the
   rounds), and one more on each side. The nearest strike moves monotonically with the volatility,
   so whatever the true volatility in that span, the strike the policy picks by the quoted greeks
   is among them, with its neighbours, so "nearest" can still go either way. With `pair_rights`
   (straddles: the put at the call's strike) the other right of every kept strike is kept.

Where the forward or the volatility of an expiry is unknown nothing can be ruled out: its options
are all kept (and the broker quotes them within its line budget).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, datetime

import numpy as np

from brokers.domain import Instrument
from risk.book import years_to_expiry
from risk.greeks import black76

DEFAULT_VOL_SPAN = (0.6, 1.8)  # times the at-the-money implied volatility
_GRID = 9  # volatilities sampled across the span


def _expiry_key(option: Instrument) -> tuple[str, date]:
    return option.underlying_future().key, option.expiry


def atm_options(options: Sequence[Instrument], forwards: Mapping[str, float]) -> list[Instrument]:
    """The call and the put at the strike nearest the forward, per (underlying future, expiry)."""
    by_expiry: dict[tuple[str, date], list[Instrument]] = defaultdict(list)
    for option in options:
        by_expiry[_expiry_key(option)].append(option)
    chosen: list[Instrument] = []
    for (future_key, _), group in by_expiry.items():
        forward = forwards.get(future_key)
        if forward is None:
            continue
        strike = min((o.strike for o in group), key=lambda k: (abs(k - forward), k))
        chosen += [o for o in group if o.strike == strike]
    return chosen


def options_near_deltas(
    options: Sequence[Instrument], *, forwards: Mapping[str, float],
    atm_vols: Mapping[tuple[str, date], float], now: datetime, rate: float,
    targets: Sequence[float], pair_rights: bool = False,
    vol_span: tuple[float, float] = DEFAULT_VOL_SPAN,
) -> list[Instrument]:
    """The options worth quoting for structures targeting |delta| in `targets` (input order)."""
    groups: dict[tuple[str, date, str], list[Instrument]] = defaultdict(list)
    for option in options:
        groups[(*_expiry_key(option), option.right or "")].append(option)
    keep: set[Instrument] = set()
    for (future_key, expiry, right), group in groups.items():
        forward, vol = forwards.get(future_key), atm_vols.get((future_key, expiry))
        years = years_to_expiry(group[0], now)
        if forward is None or vol is None or not np.isfinite(vol) or vol <= 0 or years <= 0:
            keep.update(group)
            continue
        group = sorted(group, key=lambda o: o.strike)
        strikes = np.array([o.strike for o in group], dtype=np.float64)
        vols = np.geomspace(vol * vol_span[0], vol * vol_span[1], _GRID)
        deltas = np.abs(black76(forward, strikes[:, None], years, rate, vols[None, :],
                                right == "C").delta)
        if not np.isfinite(deltas).all():
            keep.update(group)
            continue
        for target in targets:
            # the nearest strike moves monotonically with the volatility: keep the whole stretch
            nearest = np.argmin(np.abs(deltas - target), axis=0)
            keep.update(group[max(int(nearest.min()) - 1, 0):int(nearest.max()) + 2])
    if pair_rights:
        strikes_kept = {(*_expiry_key(o), o.strike) for o in keep}
        keep.update(o for o in options if (*_expiry_key(o), o.strike) in strikes_kept)
    return [o for o in options if o in keep]
