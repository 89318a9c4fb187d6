"""Black-76 prices and greeks for options on futures, vectorized over numpy arrays.

Units (per one unit of the option, before the contract multiplier):
- price, delta (dV/dF), gamma (d2V/dF2) in the future's price units;
- vega: change in price for a 1 volatility point move (sigma 0.20 -> 0.21), i.e. dV/dsigma / 100;
- theta: change in price for one calendar day passing, i.e. -dV/dT / 365 (negative for a long option);
- rho: change in price for a 1 percentage point move of the rate, i.e. dV/dr / 100.
`time_to_expiry` is in years (ACT/365), `rate` and `vol` are annual decimals (0.05, 0.20).

Edge cases of `black76`, element by element (a trader's book always holds some of them):
- any NaN input gives NaN in every output: a missing quote must never read as zero risk;
- expired (`time_to_expiry <= 0`): the option is worth its intrinsic value max(+-(F - K), 0),
  undiscounted; delta is +-1 in the money, 0 out of it and +-0.5 exactly at the money (the limit
  of the live formula); gamma, vega, theta and rho are 0;
- no volatility left (`vol == 0`, or vol * sqrt(T) underflowing to 0) or a strike <= 0 (a
  lognormal future never ends below a non-positive strike, so such a call is always exercised and
  such a put never is): the payoff is certain, price = e^-rT max(+-(F - K), 0); delta is
  +-e^-rT in the money, 0 out of it, +-0.5 e^-rT exactly at the money; gamma and vega are 0; theta
  and rho are the discounting's own (theta = r price / 365, rho = -T price / 100);
- outside the lognormal model (live option with `vol < 0` or `forward <= 0`): NaN. Black-76 cannot
  price a negative future (crude oil, April 2020); such books need a normal (Bachelier) model.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr, ndtri

from brokers.domain import Greeks, GreeksSource

_INV_SQRT_2PI = 0.3989422804014327
_DAYS_PER_YEAR = 365.0


@dataclass(frozen=True, slots=True)
class Black76:
    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    rho: np.ndarray


def black76(
    forward: ArrayLike,
    strike: ArrayLike,
    time_to_expiry: ArrayLike,
    rate: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> Black76:
    """Price and greeks of European options on futures; every argument broadcasts.

    Outputs are float64 arrays of the broadcast shape (0-d for scalar inputs); see the module
    docstring for units and edge cases.
    """
    f = np.asarray(forward, dtype=np.float64)
    k = np.asarray(strike, dtype=np.float64)
    t = np.asarray(time_to_expiry, dtype=np.float64)
    r = np.asarray(rate, dtype=np.float64)
    v = np.asarray(vol, dtype=np.float64)
    call = np.asarray(is_call, dtype=bool)
    shape = np.broadcast_shapes(f.shape, k.shape, t.shape, r.shape, v.shape, call.shape)

    with np.errstate(all="ignore"):
        sqrt_t = np.sqrt(t)
        total_std = v * sqrt_t
        result = _black76_live(f, k, t, r, v, call, sqrt_t, total_std, shape)
        # min() is NaN when any element is, so NaN inputs also take the edge path.
        if math.prod(shape) and not (
            np.min(total_std) > 0.0 and np.min(f) > 0.0 and np.min(k) > 0.0
        ):
            edge = ~((total_std > 0.0) & (f > 0.0) & (k > 0.0))
            _overwrite_edge_cases(result, _full(edge, shape), f, k, t, r, v, call)
    return result


def _black76_live(
    f: np.ndarray,
    k: np.ndarray,
    t: np.ndarray,
    r: np.ndarray,
    v: np.ndarray,
    call: np.ndarray,
    sqrt_t: np.ndarray,
    total_std: np.ndarray,
    shape: tuple[int, ...],
) -> Black76:
    """The closed form for F, K, vol * sqrt(T) > 0, into preallocated buffers.

    Every full-size step writes into one of eight buffers: at a million options the cost of
    fresh temporaries (allocation and page faults) is as large as the arithmetic itself.
    Puts use the signed form (N(-d) rather than 1 - N(d)) so deep out-of-the-money prices keep
    their relative precision, which implied_vol relies on.
    """
    sign = call * 2.0 - 1.0
    discount = np.exp(-r * t)
    signed_discount = sign * discount

    d1 = np.divide(f, k, out=np.empty(shape))
    np.log(d1, out=d1)
    d1 += 0.5 * total_std * total_std
    d1 /= total_std
    n_d1 = np.multiply(d1, sign, out=np.empty(shape))
    ndtr(n_d1, out=n_d1)
    scratch = np.subtract(d1, total_std, out=np.empty(shape))
    scratch *= sign
    ndtr(scratch, out=scratch)

    delta = np.multiply(n_d1, signed_discount, out=n_d1)
    scratch *= k
    scratch *= signed_discount
    price = np.multiply(f, delta, out=np.empty(shape))
    price -= scratch

    # d1 becomes F e^-rT phi(d1), the factor shared by gamma, vega and theta.
    pdf_term = d1
    np.square(pdf_term, out=pdf_term)
    pdf_term *= -0.5
    np.exp(pdf_term, out=pdf_term)
    pdf_term *= _INV_SQRT_2PI * discount * f

    gamma = np.divide(pdf_term, f * f * total_std, out=np.empty(shape))
    vega = np.multiply(pdf_term, sqrt_t * 0.01, out=np.empty(shape))
    theta = np.multiply(pdf_term, v / sqrt_t * (-0.5 / _DAYS_PER_YEAR), out=np.empty(shape))
    np.multiply(price, r * (1.0 / _DAYS_PER_YEAR), out=scratch)
    theta += scratch
    rho = np.multiply(price, t * -0.01, out=scratch)
    return Black76(price=price, delta=delta, gamma=gamma, vega=vega, theta=theta, rho=rho)


def _overwrite_edge_cases(
    result: Black76,
    edge: np.ndarray,
    f: np.ndarray,
    k: np.ndarray,
    t: np.ndarray,
    r: np.ndarray,
    v: np.ndarray,
    call: np.ndarray,
) -> None:
    """Replace the closed form's output where it does not apply (rules in the module docstring)."""
    f, k, t, r, v, call = (_full(x, edge.shape)[edge] for x in (f, k, t, r, v, call))
    sign = call * 2.0 - 1.0
    expired = t <= 0.0
    t_left = np.maximum(t, 0.0)
    moneyness = sign * (f - k)
    # 1 in the money, 0.5 at the money, 0 out of it.
    exercised = (np.sign(moneyness) + 1.0) * 0.5
    discount = np.exp(-r * t_left)
    price = discount * np.maximum(moneyness, 0.0)
    theta = r * price / _DAYS_PER_YEAR
    theta[expired] = 0.0
    values = {
        "price": price,
        "delta": sign * discount * exercised,
        "gamma": 0.0,
        "vega": 0.0,
        "theta": theta,
        "rho": -0.01 * t_left * price + 0.0,  # + 0.0 turns -0.0 into 0.0
    }
    # The sum is NaN exactly when one of its terms is (inputs are finite or NaN).
    undefined = np.isnan(f + k + t + r + v) | (~expired & ((v < 0.0) | (f <= 0.0)))
    undefined_index = np.flatnonzero(edge)[undefined]
    for name, value in values.items():
        output = getattr(result, name).reshape(-1)  # a view: the outputs are fresh C arrays
        output[edge.reshape(-1)] = value
        output[undefined_index] = np.nan


def _full(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return x if x.shape == shape else np.broadcast_to(x, shape)


def implied_vol(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    time_to_expiry: ArrayLike,
    rate: ArrayLike,
    is_call: ArrayLike,
    *,
    max_iterations: int = 100,
) -> np.ndarray:
    """The Black-76 volatility that reproduces `price`; every argument broadcasts.

    Returns NaN where no volatility does: the price is at or above the upper bound (e^-rT F for a
    call, e^-rT K for a put) or below the discounted intrinsic value, T <= 0, F <= 0, K <= 0, or an
    input is NaN. A price exactly at the discounted intrinsic value gives 0.

    Method: the price is reduced to the out-of-the-money option's normalized time value
    b = (price e^rT - intrinsic) / sqrt(F K), a function of x = ln(F/K) and s = vol sqrt(T) only.
    Newton's method on ln b(s) - ln b* (which keeps its pace for far out-of-the-money prices,
    where Newton on b itself crawls) runs inside a bracket that every evaluation narrows; a step
    leaving the bracket is replaced by bisection, so each element converges whatever its start.
    The start is s = sqrt(2|x|), where b's vega is largest, or the exact answer when F == K.
    An element still moving after `max_iterations` steps is NaN rather than a guess.
    """
    p = np.asarray(price, dtype=np.float64)
    f = np.asarray(forward, dtype=np.float64)
    k = np.asarray(strike, dtype=np.float64)
    t = np.asarray(time_to_expiry, dtype=np.float64)
    r = np.asarray(rate, dtype=np.float64)
    call = np.asarray(is_call, dtype=bool)
    shape = np.broadcast_shapes(p.shape, f.shape, k.shape, t.shape, r.shape, call.shape)
    p, f, k, t, r, call = (np.broadcast_to(a, shape).ravel() for a in (p, f, k, t, r, call))

    vol = np.full(p.shape, np.nan)
    with np.errstate(all="ignore"):
        discount = np.exp(-r * t)
        intrinsic = np.maximum((call * 2.0 - 1.0) * (f - k), 0.0)
        # Bounds are checked on the price as given, so a price built as e^-rT F is refused
        # whatever the rounding of undoing the discount.
        solvable = (t > 0.0) & (f > 0.0) & (k > 0.0) & (p >= discount * intrinsic) & (
            p < discount * np.where(call, f, k)
        )
        time_value = p / discount - intrinsic
        vol[solvable & (time_value <= 0.0)] = 0.0
        todo = np.flatnonzero(solvable & (time_value > 0.0))
        root_fk = np.sqrt(f[todo] * k[todo])
        total_std = _solve_total_std(
            np.log(f[todo] / k[todo]), time_value[todo] / root_fk, max_iterations
        )
        vol[todo] = total_std / np.sqrt(t[todo])
    return vol.reshape(shape)


def _normalized_otm_price(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """b(s) and db/ds for the out-of-the-money option (a call when x < 0, a put when x > 0)."""
    otm_sign = np.where(x > 0.0, -1.0, 1.0)
    d1 = x / s + 0.5 * s
    d2 = d1 - s
    half_x = np.exp(0.5 * x)
    b = otm_sign * (half_x * ndtr(otm_sign * d1) - ndtr(otm_sign * d2) / half_x)
    db_ds = half_x * _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
    return b, db_ds


def _solve_total_std(x: np.ndarray, target: np.ndarray, max_iterations: int) -> np.ndarray:
    """s = vol sqrt(T) with b(x, s) == target, for 0 < target < e^-|x|/2; NaN if not converged."""
    s = np.where(x == 0.0, 2.0 * ndtri(0.5 * (1.0 + target)), np.sqrt(2.0 * np.abs(x)))
    low = np.zeros_like(s)
    high = np.full_like(s, np.inf)
    log_target = np.log(target)
    solution = np.full_like(s, np.nan)
    active = np.arange(s.size)
    for _ in range(max_iterations):
        if active.size == 0:
            break
        b, db_ds = _normalized_otm_price(x, s)
        above = b > target
        high = np.where(above, s, high)
        low = np.where(above, low, s)
        step = (np.log(b) - log_target) * b / db_ds
        candidate = s - step
        outside = ~((candidate > low) & (candidate < high))
        bisection = np.where(np.isinf(high), 2.0 * s, 0.5 * (low + high))
        candidate = np.where(outside, bisection, candidate)
        done = (np.abs(candidate - s) <= 1e-14 * candidate) | (b == target)
        solution[active[done]] = np.where(b[done] == target[done], s[done], candidate[done])
        keep = ~done
        active = active[keep]
        x, target, log_target = x[keep], target[keep], log_target[keep]
        s, low, high = candidate[keep], low[keep], high[keep]
    return solution


@dataclass(frozen=True, slots=True)
class NetGreeks:
    """A book's greeks for one underlying, as a trader reads them.

    delta: in underlying futures contracts (+3.2 = as long as 3.2 futures);
    gamma: change of that delta, in contracts, for a 1 point rise of the future;
    vega: USD for a 1 volatility point rise of every option's vol;
    theta: USD for one calendar day passing.
    """

    delta: float
    gamma: float
    vega: float
    theta: float


def book_net_greeks(
    *,
    quantity: ArrayLike,
    delta: ArrayLike,
    gamma: ArrayLike,
    vega: ArrayLike,
    theta: ArrayLike,
    multiplier: ArrayLike,
    underlying_multiplier: ArrayLike,
    is_future: ArrayLike,
) -> NetGreeks:
    """Net greeks of the legs of one underlying (group a book by underlying first).

    Per leg: `quantity` signed contracts, per-unit greeks in black76's units, `multiplier` the
    leg's own USD per point (the option's, or the future's for a futures leg) and
    `underlying_multiplier` the USD per point of the future that delta is counted in. A futures
    leg has delta 1 and no other greek, whatever its greek entries hold (NaN is fine there).
    delta = sum(qty x delta x multiplier / underlying_multiplier), and futures held count as
    qty x multiplier / underlying_multiplier contracts (one for one in the same product).
    Legs with quantity 0 contribute nothing; any other NaN greek makes that total NaN, so a
    leg without greeks can never pass for a flat one.
    """
    qty = np.asarray(quantity, dtype=np.float64)
    future = np.asarray(is_future, dtype=bool)
    mult = np.asarray(multiplier, dtype=np.float64)
    contracts_per_unit = mult / np.asarray(underlying_multiplier, dtype=np.float64)

    def net(per_unit: ArrayLike, future_value: float, scale: np.ndarray) -> float:
        per_leg = np.where(future, future_value, np.asarray(per_unit, dtype=np.float64))
        return float(np.sum(np.where(qty == 0.0, 0.0, qty * per_leg * scale)))

    return NetGreeks(
        delta=net(delta, 1.0, contracts_per_unit),
        gamma=net(gamma, 0.0, contracts_per_unit),
        vega=net(vega, 0.0, mult),
        theta=net(theta, 0.0, mult),
    )


_LEG_FIELDS = ("delta", "gamma", "vega", "theta", "rho")


@dataclass(frozen=True, slots=True)
class LegGreeks:
    """Per-unit greeks per leg (black76's units) and where each leg's came from."""

    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    rho: np.ndarray
    source: tuple[GreeksSource, ...]


def select_leg_greeks(
    *,
    broker: Sequence[Greeks | None],
    model: Black76,
    now: datetime,
    max_age: timedelta,
) -> LegGreeks:
    """Per leg, the broker's greeks when present and fresh, else the local model's.

    `broker[i]` is the broker's model greeks for leg i (None when it sent none), `model` the local
    black76 result over the same legs. A leg takes the broker's numbers only if its delta, gamma,
    vega and theta are all finite and `now - time <= max_age`; greeks without a time are stale,
    because their age cannot be shown. `source` names where those four came from: a leg never
    mixes them. Rho, which Interactive Brokers does not send, is the broker's when finite and the
    model's otherwise (it enters no net greek).
    """
    count = len(broker)
    chosen = {
        name: np.array(np.broadcast_to(getattr(model, name), (count,)), dtype=np.float64)
        for name in _LEG_FIELDS
    }
    source: list[GreeksSource] = []
    for i, greeks in enumerate(broker):
        if greeks is not None and _usable(greeks, now, max_age):
            for name in _LEG_FIELDS:
                value = getattr(greeks, name)
                if name != "rho" or np.isfinite(value):
                    chosen[name][i] = value
            source.append("broker")
        else:
            source.append("model")
    return LegGreeks(**chosen, source=tuple(source))


def _usable(greeks: Greeks, now: datetime, max_age: timedelta) -> bool:
    finite = all(np.isfinite(x) for x in (greeks.delta, greeks.gamma, greeks.vega, greeks.theta))
    return finite and greeks.time is not None and now - greeks.time <= max_age
