"""Which delta a book is hedged on: three models of how an option's value moves with its future.

Pure: arrays in, arrays out; no Django. Each model starts from the Black-76 greeks at the option's
own implied vol (the broker's when fresh, else the local model's: `risk.book`) and differs in what
it assumes the implied vol does when the future moves:

- `sticky_strike`: nothing (each strike keeps its vol). Delta is plain Black-76, what brokers
  (Interactive Brokers' model greeks included) report.
- `sticky_moneyness`: the smile moves with the future, sigma = s(ln(K/F)) with s fitted per
  expiry to the chain's own quotes (`risk.smile`). Delta is the total derivative of the price
  along the smile: delta_BS + dV/dsigma x dsigma/dF, with dsigma/dF = -s'(m) / F. Where no smile
  could be fitted for a leg's expiry the leg keeps its sticky-strike delta, and its greeks' source
  says so.
- `minimum_variance`: Hull & White (2017, "Optimal delta hedging for options", Journal of Banking
  & Finance 82): delta_BS + dV/dsigma / (F sqrt(T)) x (a + b delta_C + c delta_C^2), the delta that
  minimizes the variance of the hedged position's changes given how implied vols have moved with
  the future in the past. `a, b, c` are estimated by `estimate_minimum_variance` from observed
  pairs (option price change, future change). delta_C is the Black-76 call delta of the leg's
  strike (a put's delta plus e^-rT): put-call parity makes a call's and a put's adjustment at one
  strike equal. Without coefficients the leg keeps its sticky-strike delta, and its source says so.

Units: `vega` arguments are black76's (price change per volatility point, dV/dsigma / 100).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from risk.greeks import black76
from risk.smile import SmileFit

DeltaModelName = Literal["sticky_strike", "sticky_moneyness", "minimum_variance"]
DELTA_MODELS: tuple[str, ...] = ("sticky_strike", "sticky_moneyness", "minimum_variance")
# The benchmark (bench/hedging_bench.py) measures it best: see the README's "Which delta the agent
# hedges on".
DEFAULT_DELTA_MODEL: DeltaModelName = "sticky_moneyness"
MIN_OBSERVATIONS = 30

# What a leg's greeks' source gains when its delta was adjusted, by model.
ADJUSTED_SUFFIX = {"sticky_moneyness": "+smile", "minimum_variance": "+mv"}


@dataclass(frozen=True, slots=True)
class MinimumVarianceCoefficients:
    """Hull & White's a, b, c and where they came from."""

    a: float
    b: float
    c: float
    observations: int  # how many observations they were estimated from (0: set by hand)

    def __post_init__(self) -> None:
        if not all(math.isfinite(x) for x in (self.a, self.b, self.c)):
            raise ValueError("minimum-variance coefficients must be finite")


@dataclass(frozen=True, slots=True)
class DeltaModel:
    """The delta model chosen for one underlying, with what it needs besides the quotes."""

    name: DeltaModelName = DEFAULT_DELTA_MODEL
    coefficients: MinimumVarianceCoefficients | None = None  # minimum_variance only

    def __post_init__(self) -> None:
        if self.name not in DELTA_MODELS:
            raise ValueError(f"delta model is one of {', '.join(DELTA_MODELS)}")


STICKY_STRIKE = DeltaModel("sticky_strike")


@dataclass(frozen=True, slots=True)
class ModelDeltas:
    delta: np.ndarray
    adjusted: np.ndarray  # bool per leg: the model's adjustment was applied (else sticky-strike)


def _call_delta(delta: np.ndarray, is_call: np.ndarray, years: np.ndarray, rate: ArrayLike) -> np.ndarray:
    return np.where(is_call, delta, delta + np.exp(-np.asarray(rate, dtype=np.float64) * years))


def model_deltas(
    model: DeltaModel,
    *,
    delta: ArrayLike,
    vega: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    years: ArrayLike,
    rate: float,
    is_call: ArrayLike,
    smiles: Sequence[SmileFit | None] | None = None,
) -> ModelDeltas:
    """Each leg's delta under `model`, from its sticky-strike `delta` and `vega` (black76 units).

    `smiles[i]` is the fitted smile of leg i's expiry (sticky_moneyness; None: not fitted). A leg
    the model cannot adjust keeps `delta` with `adjusted` False; NaN inputs stay NaN.
    """
    d = np.asarray(delta, dtype=np.float64).copy()
    dv_dsigma = 100.0 * np.asarray(vega, dtype=np.float64)
    f = np.broadcast_to(np.asarray(forward, dtype=np.float64), d.shape)
    k = np.broadcast_to(np.asarray(strike, dtype=np.float64), d.shape)
    t = np.broadcast_to(np.asarray(years, dtype=np.float64), d.shape)
    call = np.broadcast_to(np.asarray(is_call, dtype=bool), d.shape)
    adjusted = np.zeros(d.shape, dtype=bool)
    live = np.isfinite(d) & np.isfinite(dv_dsigma) & (f > 0.0) & (t > 0.0)
    with np.errstate(all="ignore"):
        if model.name == "sticky_moneyness" and smiles is not None:
            for i, smile in enumerate(smiles):
                if smile is not None and live[i]:
                    d[i] = d[i] + dv_dsigma[i] * float(smile.dvol_dforward(k[i], f[i]))
                    adjusted[i] = True
        elif model.name == "minimum_variance" and model.coefficients is not None:
            co = model.coefficients
            dc = _call_delta(d, call, t, rate)
            shift = dv_dsigma / (f * np.sqrt(t)) * (co.a + co.b * dc + co.c * dc * dc)
            d = np.where(live, d + shift, d)
            adjusted = live.copy()
    return ModelDeltas(delta=d, adjusted=adjusted)


def smile_delta(
    *, forward: ArrayLike, strike: ArrayLike, years: ArrayLike, rate: float, is_call: ArrayLike, smile: SmileFit
) -> np.ndarray:
    """The sticky-moneyness delta of options priced on `smile` (Black-76 at sigma(ln K/F))."""
    vol = smile.vol(strike, forward)
    model = black76(forward, strike, years, rate, vol, is_call)
    return model.delta + 100.0 * model.vega * smile.dvol_dforward(strike, forward)


# ---------------------------------------------------------------------------------------------
# Estimating Hull & White's coefficients


@dataclass(frozen=True, slots=True)
class HedgeObservation:
    """One option over one interval: its Black-76 delta and vega at the start (black76 units,
    sticky-strike), the future at the start, and the changes of its price and of the future."""

    delta: float
    vega: float
    forward: float
    strike: float
    years: float
    is_call: bool
    price_change: float
    forward_change: float


@dataclass(frozen=True, slots=True)
class EstimateFailure:
    reason: str


def _usable(observations: Sequence[HedgeObservation]) -> list[HedgeObservation]:
    return [o for o in observations if all(math.isfinite(x) for x in (
        o.delta, o.vega, o.forward, o.strike, o.years, o.price_change, o.forward_change))
        and o.forward > 0.0 and o.years > 0.0]


def _regression(rows: Sequence[HedgeObservation], rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Hull & White's design matrix (one column per coefficient) and target (the sticky-strike
    hedge's error) over `rows`."""
    delta = np.array([o.delta for o in rows])
    vega = 100.0 * np.array([o.vega for o in rows])
    forward = np.array([o.forward for o in rows])
    years = np.array([o.years for o in rows])
    call = np.array([o.is_call for o in rows])
    change = np.array([o.forward_change for o in rows])
    target = np.array([o.price_change for o in rows]) - delta * change
    dc = _call_delta(delta, call, years, rate)
    base = vega / (forward * np.sqrt(years)) * change
    return np.column_stack([base, base * dc, base * dc * dc]), target


def estimate_minimum_variance(
    observations: Sequence[HedgeObservation], *, rate: float, min_observations: int = MIN_OBSERVATIONS
) -> MinimumVarianceCoefficients | EstimateFailure:
    """Hull & White's regression, least squares without intercept:

        dV - delta_BS dF = dV/dsigma / (F sqrt(T)) dF (a + b delta_C + c delta_C^2) + e

    over the observations that are finite and live. Too few of them, or regressors that do not
    determine a, b, c (no movement of the future, one delta only), is an `EstimateFailure`."""
    rows = _usable(observations)
    if len(rows) < min_observations:
        return EstimateFailure(f"{len(rows)} usable observations; at least {min_observations} are needed")
    design, target = _regression(rows, rate)
    if np.linalg.matrix_rank(design) < 3:
        return EstimateFailure("the observations do not determine a, b and c")
    (a, b, c), *_ = np.linalg.lstsq(design, target, rcond=None)
    return MinimumVarianceCoefficients(a=float(a), b=float(b), c=float(c), observations=len(rows))


def minimum_variance_r_squared(
    observations: Sequence[HedgeObservation], coefficients: MinimumVarianceCoefficients, *, rate: float
) -> float:
    """The fit's quality over the usable observations: 1 - SSE(minimum variance) / SSE(sticky
    strike), the share of the sticky-strike hedge's squared error the coefficients remove (Hull &
    White's "Gain"; the R^2 of their regression, which has no intercept). NaN without error to
    remove."""
    rows = _usable(observations)
    if not rows:
        return float("nan")
    design, target = _regression(rows, rate)
    total = float(target @ target)
    if total <= 0.0:
        return float("nan")
    residual = target - design @ np.array([coefficients.a, coefficients.b, coefficients.c])
    return 1.0 - float(residual @ residual) / total


@dataclass(frozen=True, slots=True)
class OptionSnapshot:
    """One option's two-sided quote at one book sync, as the platform stores it
    (`risk.models.OptionQuotePoint`)."""

    at: datetime
    key: str
    strike: float
    years: float
    is_call: bool
    forward: float
    mid: float
    implied_vol: float


def observations_from_snapshots(snapshots: Sequence[OptionSnapshot], *, rate: float) -> list[HedgeObservation]:
    """Hull & White's observations from stored quotes: one per option quoted at two consecutive
    syncs (consecutive among the distinct times of `snapshots`; an option missing from a sync
    gives no observation across it). Its greeks are Black-76's at the first quote's implied vol
    (sticky-strike), the changes those of its mid and of the future to the second."""
    times = sorted({s.at for s in snapshots})
    following = dict(zip(times, times[1:], strict=False))
    by_time = {(s.key, s.at): s for s in snapshots}
    firsts = [s for s in snapshots if s.at in following and (s.key, following[s.at]) in by_time]
    if not firsts:
        return []
    greeks = black76(np.array([s.forward for s in firsts]), np.array([s.strike for s in firsts]),
                     np.array([s.years for s in firsts]), rate, np.array([s.implied_vol for s in firsts]),
                     np.array([s.is_call for s in firsts]))
    observations = []
    for i, first in enumerate(firsts):
        second = by_time[(first.key, following[first.at])]
        observations.append(HedgeObservation(
            delta=float(greeks.delta[i]), vega=float(greeks.vega[i]), forward=first.forward, strike=first.strike,
            years=first.years, is_call=first.is_call, price_change=second.mid - first.mid,
            forward_change=second.forward - first.forward))
    return observations
