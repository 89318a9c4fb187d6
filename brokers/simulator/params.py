"""The simulated market's per-product parameters and the vol smile they define.

`MarketParams` / `MARKET_PARAMS` (carry, strike grid, smile shape, scan ranges, one per product),
`smile_vol` (the market's implied vol) and `true_delta` (the market's own delta, with the smile
moving with the future). Pure: numpy and Black-76, no market state; `brokers.simulator.market`
prices with them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from risk.greeks import black76


@dataclass(frozen=True, slots=True)
class MarketParams:
    """How the simulated market of one product behaves, beyond `brokers.products.Product`."""

    carry: float  # annual log basis of the futures over the index (negative: backwardation)
    strike_step: float
    strikes_each_side: int  # shown in the chain around the money
    skew: float  # vol change per unit of log-moneyness
    curvature: float  # vol change per unit of log-moneyness squared
    vol_floor: float
    price_scan: float  # SPAN-like price scan range, a fraction of the price
    vol_scan: float  # SPAN-like vol scan range, in vol (0.04 = 4 points)


# One per product of `brokers.products.PRODUCTS` (a test fails when one is missing). Strike steps
# are the exchange's usual near-the-money intervals, in the product's quoted unit (cents for grains
# and livestock, points of par for Treasuries); skews are negative for equity indices, mildly
# positive for metals, grains and gas (calls bid).
MARKET_PARAMS: dict[str, MarketParams] = {
    "ES": MarketParams(0.010, 25.0, 20, -0.60, 1.00, 0.05, 0.06, 0.04),
    "MES": MarketParams(0.010, 25.0, 20, -0.60, 1.00, 0.05, 0.06, 0.04),
    "NQ": MarketParams(0.010, 100.0, 20, -0.50, 1.00, 0.06, 0.07, 0.04),
    "MNQ": MarketParams(0.010, 100.0, 20, -0.50, 1.00, 0.06, 0.07, 0.04),
    "YM": MarketParams(0.010, 100.0, 20, -0.60, 1.00, 0.05, 0.06, 0.04),
    "RTY": MarketParams(0.010, 10.0, 20, -0.50, 1.00, 0.07, 0.08, 0.05),
    "CL": MarketParams(-0.020, 1.0, 15, -0.15, 1.20, 0.10, 0.10, 0.06),
    "NG": MarketParams(0.050, 0.05, 20, 0.20, 1.00, 0.20, 0.15, 0.10),
    "GC": MarketParams(0.035, 25.0, 20, 0.08, 0.80, 0.06, 0.06, 0.03),
    "SI": MarketParams(0.035, 0.25, 20, 0.10, 0.80, 0.10, 0.08, 0.04),
    "HG": MarketParams(0.020, 0.05, 20, 0.05, 0.80, 0.08, 0.07, 0.04),
    "ZN": MarketParams(-0.005, 0.5, 20, 0.05, 0.50, 0.02, 0.04, 0.02),
    "ZB": MarketParams(-0.005, 1.0, 20, 0.05, 0.50, 0.03, 0.06, 0.03),
    "ZF": MarketParams(-0.005, 0.25, 20, 0.05, 0.50, 0.015, 0.03, 0.015),
    "ZT": MarketParams(-0.002, 0.125, 20, 0.05, 0.50, 0.008, 0.015, 0.01),
    "ZC": MarketParams(0.030, 10.0, 20, 0.20, 1.00, 0.10, 0.08, 0.05),
    "ZS": MarketParams(0.020, 20.0, 20, 0.15, 1.00, 0.08, 0.07, 0.05),
    "ZW": MarketParams(0.040, 10.0, 20, 0.20, 1.00, 0.12, 0.09, 0.06),
    "6E": MarketParams(0.015, 0.005, 20, 0.00, 0.80, 0.03, 0.04, 0.02),
    "6J": MarketParams(0.030, 0.00005, 20, 0.10, 0.80, 0.04, 0.05, 0.03),
    "LE": MarketParams(0.000, 2.0, 15, 0.00, 0.80, 0.06, 0.05, 0.03),
    "HE": MarketParams(0.000, 2.0, 15, 0.10, 0.80, 0.10, 0.08, 0.05),
}


def smile_vol(symbol: str, strike: np.ndarray | float, forward: np.ndarray, atm: np.ndarray | float) -> np.ndarray:
    """The simulated market's implied vol: a parabola in log-moneyness ln(K/F), floored."""
    params = MARKET_PARAMS[symbol]
    moneyness = np.log(strike / forward)
    return np.maximum(params.vol_floor, atm + params.skew * moneyness + params.curvature * moneyness**2)


def true_delta(
    symbol: str, *, forward: np.ndarray | float, strike: np.ndarray | float, years: np.ndarray | float,
    rate: float, atm_vol: np.ndarray | float, is_call: np.ndarray | bool,
) -> np.ndarray:
    """The market's own delta: d price / dF with the smile moving with the future (the vol is a
    function of ln(K/F)), i.e. Black-76 delta + dV/dsigma x dsigma/dF, where dsigma/dF is
    -(skew + 2 curvature m) / F above the vol floor and 0 on it. The best any hedge on the
    future can do in this market; the hedging benchmark and the delta models' tests use it."""
    params = MARKET_PARAMS[symbol]
    f = np.asarray(forward, dtype=np.float64)
    k = np.asarray(strike, dtype=np.float64)
    moneyness = np.log(k / f)
    raw = atm_vol + params.skew * moneyness + params.curvature * moneyness**2
    vol = np.maximum(params.vol_floor, raw)
    model = black76(f, k, years, rate, vol, is_call)
    dvol_df = np.where(raw > params.vol_floor, -(params.skew + 2.0 * params.curvature * moneyness) / f, 0.0)
    return model.delta + 100.0 * model.vega * dvol_df
