"""risk.strike_window: only the strikes a delta-targeting structure can choose are quoted."""
from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from brokers.domain import Instrument
from risk.book import years_to_expiry
from risk.greeks import black76
from risk.strike_window import atm_options, options_near_deltas

NOW = datetime(2027, 2, 10, 15, 0, tzinfo=UTC)
EXPIRY = date(2027, 3, 19)
FUTURE = Instrument("ES", "FUT", EXPIRY, "CME", 50.0)
STRIKES = [4000.0 + 25 * i for i in range(161)]  # 4000-8000: 161 strikes, 322 options


def _chain() -> list[Instrument]:
    return [Instrument("ES", "FOP", EXPIRY, "CME", 50.0, strike=k, right=r, trading_class="ES",
                       underlying_expiry=EXPIRY) for k in STRIKES for r in "CP"]


def test_the_at_the_money_pair_is_the_strike_nearest_the_forward() -> None:
    pair = atm_options(_chain(), {FUTURE.key: 6010.0})
    assert [(o.strike, o.right) for o in pair] == [(6000.0, "C"), (6000.0, "P")]
    assert atm_options(_chain(), {}) == []  # no forward, no choice


@pytest.mark.parametrize("true_vol", [0.11, 0.18, 0.30])
def test_the_strike_the_policy_would_choose_is_always_among_the_few_quoted(true_vol: float) -> None:
    chain = _chain()
    chosen = options_near_deltas(chain, forwards={FUTURE.key: 6000.0},
                                 atm_vols={(FUTURE.key, EXPIRY): 0.18}, now=NOW, rate=0.04,
                                 targets=(0.20, 0.05))
    assert len(chosen) < 80  # of 322
    years = years_to_expiry(chain[0], NOW)
    for right in "CP":
        strikes = np.array(STRIKES)
        deltas = np.abs(black76(6000.0, strikes, years, 0.04, true_vol, right == "C").delta)
        for target in (0.20, 0.05):
            best = STRIKES[int(np.argmin(np.abs(deltas - target)))]
            assert any(o.strike == best and o.right == right for o in chosen)


def test_straddles_keep_both_rights_and_unknown_expiries_keep_everything() -> None:
    chain = _chain()
    straddle = options_near_deltas(chain, forwards={FUTURE.key: 6000.0},
                                   atm_vols={(FUTURE.key, EXPIRY): 0.18}, now=NOW, rate=0.04,
                                   targets=(0.5,), pair_rights=True)
    calls = {o.strike for o in straddle if o.right == "C"}
    assert calls == {o.strike for o in straddle if o.right == "P"} and 6000.0 in calls
    assert options_near_deltas(chain, forwards={}, atm_vols={}, now=NOW, rate=0.04,
                               targets=(0.2,)) == chain
