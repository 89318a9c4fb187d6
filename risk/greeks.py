"""Black-76 prices and greeks for options on futures, vectorized over numpy arrays.

Units (per one unit of the option, before the contract multiplier):
- price, delta (dV/dF), gamma (d2V/dF2) in the future's price units;
- vega: change in price for a 1 volatility point move (sigma 0.20 -> 0.21), i.e. dV/dsigma / 100;
- theta: change in price for one calendar day passing, i.e. -dV/dT / 365 (negative for a long option);
- rho: change in price for a 1 percentage point move of the rate, i.e. dV/dr / 100.
`time_to_expiry` is in years (ACT/365), `rate` and `vol` are annual decimals (0.05, 0.20).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

_INV_SQRT_2PI = 0.3989422804014327


@dataclass(frozen=True, slots=True)
class Black76:
    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    rho: np.ndarray


def black76(forward, strike, time_to_expiry, rate, vol, is_call) -> Black76:
    """Price and greeks of European options on futures; every argument broadcasts."""
    forward = np.asarray(forward, dtype=np.float64)
    strike = np.asarray(strike, dtype=np.float64)
    t = np.asarray(time_to_expiry, dtype=np.float64)
    rate = np.asarray(rate, dtype=np.float64)
    vol = np.asarray(vol, dtype=np.float64)
    is_call = np.asarray(is_call, dtype=bool)

    sqrt_t = np.sqrt(t)
    vol_sqrt_t = vol * sqrt_t
    d1 = (np.log(forward / strike) + 0.5 * vol * vol * t) / vol_sqrt_t
    d2 = d1 - vol_sqrt_t
    discount = np.exp(-rate * t)
    sign = np.where(is_call, 1.0, -1.0)
    n_d1 = ndtr(sign * d1)
    n_d2 = ndtr(sign * d2)
    pdf_d1 = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)

    price = sign * discount * (forward * n_d1 - strike * n_d2)
    delta = sign * discount * n_d1
    gamma = discount * pdf_d1 / (forward * vol_sqrt_t)
    vega_per_unit = forward * discount * pdf_d1 * sqrt_t
    theta_per_year = -forward * discount * pdf_d1 * vol / (2.0 * sqrt_t) + rate * price
    rho_per_unit = -t * price
    return Black76(
        price=price,
        delta=delta,
        gamma=gamma,
        vega=vega_per_unit / 100.0,
        theta=theta_per_year / 365.0,
        rho=rho_per_unit / 100.0,
    )
