"""The hedge band: how far net delta may drift from its target before a hedge (fixed, or the
Whalley-Wilmott band), and the cost per contract and discount factor it uses."""
from __future__ import annotations

import math

from agents.parameters import Band
from agents.policy.model import PolicyInputs
from brokers.products import Product, hedge_cost_per_contract
from risk.book import years_to_expiry


def band_cost_per_contract(band: Band, product: Product) -> float:
    """The one-way cost of one hedge future the band uses, USD: the parameter when set, else the
    product's own (`brokers.products.hedge_cost_per_contract`: half its typical spread plus
    commission; ES 8.50)."""
    if band.cost_per_contract is not None:
        return band.cost_per_contract
    return hedge_cost_per_contract(product)


def band_half_width(
    band: Band, *, net_gamma: float, future_multiplier: float, discount_factor: float = 1.0,
    cost_per_contract: float | None = None,
) -> float:
    """How far net delta may drift from its target before a hedge, in underlying contracts.

    `fixed`: `band.width`. `whalley_wilmott`: the asymptotic band of Whalley & Wilmott (1997)
    for a trader with exponential utility, clamped to [`min_width`, `max_width`] (NaN when
    `net_gamma` is unknown). The cost c is `band.cost_per_contract` when set, else
    `cost_per_contract` (the product's, `band_cost_per_contract`); one of them is required.

    Their formula counts the underlying in shares: with S the share price, lambda the
    proportional one-way cost (trading one share costs lambda S), gamma the absolute risk
    aversion (per USD) and Gamma_s = d2V/dS2 the book's gamma in shares per point,

        H_s = (3 e^(-r tau) lambda S Gamma_s^2 / (2 gamma))^(1/3)   shares.

    A future on S with multiplier M (USD per point) is M such shares, so:
    - one future traded costs c = cost_per_contract USD, hence lambda S = c / M per share
      (lambda = c / (S M));
    - the book's gamma from risk.book is in contracts per point: Gamma_s = M Gamma_c;
    - a band of H_s shares is H_c = H_s / M contracts.
    Substituting, S cancels (the band does not depend on the price level):

        H_c = (3 e^(-r tau) c Gamma_c^2 / (2 gamma M^2))^(1/3)   contracts.

    `discount_factor` is e^(-r tau). Gamma = 0 gives 0, hence `min_width`.
    """
    if band.method == "fixed":
        return band.width
    cost = band.cost_per_contract if band.cost_per_contract is not None else cost_per_contract
    if cost is None:
        raise ValueError("the Whalley-Wilmott band needs a cost per contract (the band's or the product's)")
    if not math.isfinite(net_gamma):
        return math.nan
    raw = (
        3.0 * discount_factor * cost * net_gamma**2
        / (2.0 * band.risk_aversion * future_multiplier**2)
    ) ** (1.0 / 3.0)
    return min(max(raw, band.min_width), band.max_width)


def _band_discount_factor(inputs: PolicyInputs) -> float:
    """e^(-r tau), tau to the nearest option expiry held on the underlying: the shortest-dated
    options carry most of a book's gamma. 1 without options."""
    underlying = inputs.parameters.underlying
    years = sorted(
        years_to_expiry(leg.risk.instrument, inputs.now)
        for leg in inputs.book.legs
        if leg.quantity and leg.risk.instrument.is_option and leg.risk.instrument.symbol == underlying
    )
    if not years:
        return 1.0
    return math.exp(-inputs.rate * max(years[0], 0.0))
