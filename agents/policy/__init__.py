"""The agent's policy: from a valued book and quotes to the trades it proposes, and why.

Pure and deterministic: no clock (the caller passes `now`), no randomness, every collection
iterated in a sorted order, so the same inputs give the same decision and `inputs_digest`.

One decision, in this order:
Net delta is the book's, in the delta model chosen for the underlying (`parameters.delta_model`,
`risk.delta_models`; the book is valued in it by `risk.book`); the decision's metrics and a
hedge's rationale name the model the book's delta was counted in (`delta_model`). Structure
strikes are chosen by the chain's deltas as the caller values them (the cycle: the quoted,
sticky-strike Black-76 delta, the market's convention for "a 20-delta strangle").

1. Fail closed: an unknown net delta for the underlying (a leg without greeks) or no two-sided
   quote for the hedge future gives no trade at all, with the reason.
2. The option structure (`parameters.structure`): with none open, open one; with one open, close
   it on its profit target, its stop loss, or when its expiry is `roll_dte` days away or less
   (a roll: the close and the next structure's open in the same decision).
3. A hedge future that has rolled: futures still held in it move into the hedge future as one
   calendar spread (`hedge_rolls`).
4. The delta hedge: when |net delta - target| exceeds the band's half-width, trade the hedge future
   back to the target (rounded to whole contracts, capped by the order and leg size limits).
   The hedge is computed on the book as it is now, not as the structure trades above would leave
   it; the next cycle hedges whatever delta a filled structure trade added.

Working orders (`PolicyInputs.working`: sent, not finished) count as if filled: their remaining
quantities' delta is in the net delta hedged (a resting SELL 5 is not sold again), contracts
already working on the hedge's side use up the size limits with it, and futures already being
rolled are not rolled again. The journal says how much of the net delta is in working orders.

The public API, for callers outside the package (`agents.services.drafts` builds a trader's requested
trade the policy's way with the building blocks); names with a leading underscore are the package's own:
- `decide(inputs)`: the one decision above, pure and deterministic.
- the records of `model`, `band_half_width`, `band_cost_per_contract`, `underlying_delta_model`.
- `Leg(quoted, ratio)`: one leg of a combo, signed contracts per structure unit (> 0 bought, < 0 sold).
- `combo_trade(action, legs, units, capped_by, *, rationale, headline)`: the legs priced as one combo at
  the far touch, limit rounded up to the option tick, the rationale extended with units, legs and prices.
- `open_structure(inputs)`: `(trade, reason)`, the structure of `parameters.structure` with strikes by
  delta in the expiry window, capped by the size limits; the trade is None (and the reason says why)
  when none can be opened.
- `close_structure(inputs, held, triggers, mark, pnl_pct)`: `(trade, reason)`, the held structure bought
  back (or sold) as one combo, capped by the size limits; None when a leg has no price to close at or one unit
  exceeds the limits.
- `structure_problem(held, book)`: why the held structure cannot be traded as remembered (legs missing
  from the book, or not whole multiples of its units); None when it can. Check it before closing.
- `structure_mark(held, book)`: the value of one held unit at the legs' marks (< 0: short); None when
  a mark is unknown.
- `hedge_rolls(inputs, hedge)`: `(trades, reasons)`, one calendar spread per future still held (or
  working) in a contract that has rolled into `hedge`, capped by the size limits; `hedge` two-sided.

The modules:
- `model`: the frozen records (`PolicyInputs`, `QuotedInstrument`, `OpenStructure`, `ProposedTrade`,
  `PolicyDecision`) and `POLICY_VERSION`.
- `band`: the hedge band (`band_half_width`, `band_cost_per_contract`).
- `hedge`: the delta hedge and the hedge future's rolls.
- `structures`: opening and closing option structures, priced as combos.
- `prices`: a quote's mid, rounding to the tick, today's date.
- `digest`: JSON numbers and the inputs digest.
- here: `decide`, and the public API re-exported.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from agents.policy.band import _band_discount_factor, band_cost_per_contract, band_half_width
from agents.policy.digest import _inputs_digest, _number
from agents.policy.hedge import _hedge, _underlying_net, hedge_rolls, underlying_delta_model
from agents.policy.model import (
    POLICY_VERSION,
    OpenStructure,
    PolicyDecision,
    PolicyInputs,
    ProposedTrade,
    QuotedInstrument,
    TradeAction,
)
from agents.policy.structures import (
    Leg,
    _structure_step,
    close_structure,
    combo_trade,
    open_structure,
    structure_mark,
    structure_problem,
)
from brokers.products import PRODUCTS

__all__ = [
    "POLICY_VERSION",
    "OpenStructure",
    "PolicyDecision",
    "PolicyInputs",
    "ProposedTrade",
    "QuotedInstrument",
    "TradeAction",
    "Leg",
    "close_structure",
    "combo_trade",
    "hedge_rolls",
    "open_structure",
    "structure_mark",
    "structure_problem",
    "band_cost_per_contract",
    "band_half_width",
    "decide",
    "underlying_delta_model",
]


def decide(inputs: PolicyInputs) -> PolicyDecision:
    """The trades to propose now (none is a decision too), with the reason and the numbers."""
    parameters = inputs.parameters
    underlying = parameters.underlying
    net = _underlying_net(inputs.book, underlying)
    working = inputs.working.for_symbol(underlying)
    net_delta = net.delta + working.delta  # the working orders' remaining quantities as if filled
    hedge = inputs.hedge
    metrics: dict[str, Any] = {
        "underlying": underlying,
        "delta_model": underlying_delta_model(inputs.book, underlying, parameters.delta_model),
        "net_delta": _number(net_delta),
        "net_gamma": _number(net.gamma),
        "target_delta": parameters.target_delta,
        "band_method": parameters.band.method,
        "band_half_width": None,
        "hedge_instrument": hedge.risk.instrument.key if hedge is not None else None,
        "underlying_price": _number(hedge.risk.mark) if hedge is not None else None,
    }
    if working.legs:  # of which in working orders (while there are some)
        metrics.update(position_delta=_number(net.delta), working_delta=_number(working.delta),
                       working_orders=list(working.order_ids))
    digest = _inputs_digest(inputs)

    def decision(trades: Sequence[ProposedTrade], reasons: Iterable[str]) -> PolicyDecision:
        return PolicyDecision(
            policy_version=POLICY_VERSION, trades=tuple(trades), reason="; ".join(reasons),
            metrics=metrics, inputs_digest=digest,
        )

    if not math.isfinite(net.delta):
        return decision((), [f"net {underlying} delta unknown (a leg has no greeks): no action"])
    if not math.isfinite(working.delta):
        return decision((), [f"the {underlying} delta of the working orders is unknown (a working leg has no "
                             "greeks): no action"])
    if hedge is None or not hedge.two_sided:
        return decision((), [f"no two-sided quote for the {underlying} hedge future: no action"])
    hedge_instrument = hedge.risk.instrument
    if hedge_instrument.is_option or hedge_instrument.symbol != underlying:
        return decision((), [f"hedge instrument {hedge_instrument.key} is not a {underlying} future: "
                             "no action"])
    product = PRODUCTS[underlying]
    cost = band_cost_per_contract(parameters.band, product)
    if parameters.band.method == "whalley_wilmott":
        metrics["band_cost_per_contract"] = cost
    half_width = band_half_width(
        parameters.band, net_gamma=net.gamma, future_multiplier=product.multiplier,
        discount_factor=_band_discount_factor(inputs), cost_per_contract=cost,
    )
    if not math.isfinite(half_width):
        return decision((), [f"net {underlying} gamma unknown, so is the band: no action"])
    metrics["band_half_width"] = half_width

    structure_trades, structure_reasons = _structure_step(inputs, metrics)
    roll_trades, roll_reasons = hedge_rolls(inputs, hedge)
    hedge_trade, hedge_reason = _hedge(inputs, hedge, net_delta, half_width, working)
    trades = [*structure_trades, *roll_trades, *([hedge_trade] if hedge_trade else [])]
    return decision(trades, [*structure_reasons, *roll_reasons, hedge_reason])
