"""The volatility smile of one option expiry, fitted to the chain's own quotes.

Pure: quotes in, a frozen `SmileFit` (or a `SmileFailure` saying why none) out; no Django.

The model is a parabola in log-moneyness m = ln(K/F):

    sigma(m) = atm_vol + skew * m + curvature * m^2

the shape of most listed index and commodity smiles near the money (and exactly the simulated
market's, `brokers.simulator.params`, away from its vol floor). A smile that is a function of m
moves with the future: this is what the sticky-moneyness delta (`risk.delta_models`) needs, through
d sigma / dF = -sigma'(m) / F.

The fit, per expiry:
- a quote is used only when it is two-sided, its bid is above zero and not above its ask (missing,
  one-sided, zero-bid and crossed quotes say nothing reliable about the price), and its mid has a
  Black-76 implied volatility;
- of a strike's call and put, the out-of-the-money one is used (its price is all time value), the
  other only when the out-of-the-money one is unusable;
- weighted least squares in vol, each point weighted by vega / half-spread: the vol error a
  quote's spread leaves is half-spread / vega, so wide or vega-poor quotes count less;
- one pass of outlier rejection: points more than 5 robust deviations (and at least 1 vol point)
  off the first fit are dropped and the rest refitted;
- fewer than `MIN_POINTS` distinct usable strikes, a singular system or a fit that goes
  non-positive across the quoted strikes is a `SmileFailure` with the reason, and the caller falls
  back to sticky-strike and says so.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from risk.greeks import black76, implied_vol

MIN_POINTS = 3
OUTLIER_DEVIATIONS = 5.0
OUTLIER_MIN_VOL = 0.01


@dataclass(frozen=True, slots=True)
class SmileQuote:
    """One option's quote as the fit reads it (None: that side is missing)."""

    strike: float
    is_call: bool
    bid: float | None
    ask: float | None


@dataclass(frozen=True, slots=True)
class SmileFit:
    """sigma(m) = atm_vol + skew m + curvature m^2 with m = ln(K / F), for one expiry."""

    atm_vol: float
    skew: float
    curvature: float
    points: int  # quotes used
    rms_error: float  # weighted root-mean-square vol residual of the used points

    def vol(self, strike: np.ndarray | float, forward: np.ndarray | float) -> np.ndarray:
        m = np.log(np.asarray(strike, dtype=np.float64) / np.asarray(forward, dtype=np.float64))
        return self.atm_vol + self.skew * m + self.curvature * m * m

    def slope(self, strike: np.ndarray | float, forward: np.ndarray | float) -> np.ndarray:
        """d sigma / d m at each strike."""
        m = np.log(np.asarray(strike, dtype=np.float64) / np.asarray(forward, dtype=np.float64))
        return self.skew + 2.0 * self.curvature * m

    def dvol_dforward(self, strike: np.ndarray | float, forward: np.ndarray | float) -> np.ndarray:
        """d sigma / dF with the smile moving with the future (sticky moneyness): -sigma'(m) / F."""
        return -self.slope(strike, forward) / np.asarray(forward, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class SmileFailure:
    reason: str


def usable_quotes(quotes: Sequence[SmileQuote]) -> list[SmileQuote]:
    """The quotes the fit may use: two-sided, bid > 0, bid <= ask, all finite."""
    usable = []
    for quote in quotes:
        bid, ask = quote.bid, quote.ask
        if bid is None or ask is None or not (math.isfinite(bid) and math.isfinite(ask)):
            continue
        if bid <= 0.0 or bid > ask or not (quote.strike > 0.0 and math.isfinite(quote.strike)):
            continue
        usable.append(quote)
    return usable


def fit_smile(
    quotes: Sequence[SmileQuote], *, forward: float, years: float, rate: float
) -> SmileFit | SmileFailure:
    """The smile of one expiry from its options' quotes; see the module docstring."""
    if not (math.isfinite(forward) and forward > 0.0):
        return SmileFailure("no usable forward")
    if not (math.isfinite(years) and years > 0.0):
        return SmileFailure("expired")
    usable = usable_quotes(quotes)
    if not usable:
        return SmileFailure("no two-sided quote with a bid above zero")
    strikes = np.array([q.strike for q in usable])
    is_call = np.array([q.is_call for q in usable])
    bid = np.array([q.bid for q in usable], dtype=np.float64)
    ask = np.array([q.ask for q in usable], dtype=np.float64)
    mid = 0.5 * (bid + ask)
    vols = implied_vol(mid, forward, strikes, years, rate, is_call)
    out_of_money = np.where(is_call, strikes >= forward, strikes <= forward)
    keep: dict[float, int] = {}
    for i in np.flatnonzero(np.isfinite(vols) & (vols > 0.0)).tolist():
        current = keep.get(strikes[i])
        if current is None or (out_of_money[i] and not out_of_money[current]):
            keep[strikes[i]] = i
    if len(keep) < MIN_POINTS:
        return SmileFailure(
            f"{len(keep)} strike(s) with a usable quote and implied vol; at least {MIN_POINTS} are needed"
        )
    rows = np.array(sorted(keep.values()))
    k, v = strikes[rows], vols[rows]
    vega = black76(forward, k, years, rate, v, is_call[rows]).vega * 100.0  # dV/dsigma
    half_spread = np.maximum(0.5 * (ask[rows] - bid[rows]), 1e-12)
    weight = vega / half_spread
    m = np.log(k / forward)
    design = np.column_stack([np.ones_like(m), m, m * m])

    fitted = _weighted_fit(design, v, weight)
    if fitted is None:
        return SmileFailure("the quoted strikes do not determine a parabola")
    residual = v - design @ fitted
    spread = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    inliers = np.abs(residual) <= max(OUTLIER_DEVIATIONS * spread, OUTLIER_MIN_VOL)
    if not inliers.all() and int(inliers.sum()) >= MIN_POINTS:
        refitted = _weighted_fit(design[inliers], v[inliers], weight[inliers])
        if refitted is not None:
            fitted, design, v, weight = refitted, design[inliers], v[inliers], weight[inliers]
    atm_vol, skew, curvature = (float(x) for x in fitted)
    smile = SmileFit(atm_vol=atm_vol, skew=skew, curvature=curvature, points=len(v), rms_error=0.0)
    if not (all(math.isfinite(x) for x in (atm_vol, skew, curvature)) and np.min(smile.vol(k, forward)) > 0.0):
        return SmileFailure("the fitted smile is not positive across the quoted strikes")
    final = v - design @ fitted
    rms = float(np.sqrt(np.sum(weight**2 * final**2) / np.sum(weight**2)))
    return SmileFit(atm_vol=atm_vol, skew=skew, curvature=curvature, points=len(v), rms_error=rms)


def _weighted_fit(design: np.ndarray, values: np.ndarray, weight: np.ndarray) -> np.ndarray | None:
    if len(values) < MIN_POINTS or not np.all(np.isfinite(weight)) or np.max(weight) <= 0.0:
        return None
    scaled = design * weight[:, None]
    if np.linalg.matrix_rank(scaled) < design.shape[1]:
        return None
    solution, *_ = np.linalg.lstsq(scaled, values * weight, rcond=None)
    return solution
