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
   calendar spread (`_hedge_rolls`).
4. The delta hedge: when |net delta - target| exceeds the band's half-width, trade the hedge future
   back to the target (rounded to whole contracts, capped by the order and leg size limits).
   The hedge is computed on the book as it is now, not as the structure trades above would leave
   it; the next cycle hedges whatever delta a filled structure trade added.

Working orders (`PolicyInputs.working`: sent, not finished) count as if filled: their remaining
quantities' delta is in the net delta hedged (a resting SELL 5 is not sold again), contracts
already working on the hedge's side use up the size limits with it, and futures already being
rolled are not rolled again. The journal says how much of the net delta is in working orders.

Prices are marketable limits at the far touch (a buy at the ask, a sell at the bid). A combo's
limit is its net price per unit (positive: a debit), rounded up to the option tick, the direction
that keeps it marketable (pay a little more, or receive a little less).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from agents.parameters import AgentParameters, Band, parameters_to_json
from brokers.domain import Instrument, OrderLeg
from brokers.products import PRODUCTS, Product, hedge_cost_per_contract
from risk.book import BookValuation, InstrumentRisk, years_to_expiry
from risk.governor import FLOAT_TOLERANCE, RiskLimits, working_same_side
from risk.greeks import NetGreeks
from risk.working import NO_WORKING_ORDERS, WorkingExposure

POLICY_VERSION = "delta-neutral/4"  # bump when decisions change (4: net delta in the chosen delta model)

TradeAction = Literal["hedge", "roll_hedge", "open_structure", "close_structure"]


@dataclass(frozen=True, slots=True)
class QuotedInstrument:
    """One instrument's current risk and two-sided quote."""

    risk: InstrumentRisk
    bid: float | None
    ask: float | None

    @property
    def two_sided(self) -> bool:
        """Both sides present and positive: a zero bid is no bid."""
        return self.bid is not None and self.ask is not None and 0.0 < self.bid <= self.ask


@dataclass(frozen=True, slots=True)
class OpenStructure:
    """The option structure the agent opened and still holds (from its memory).

    `legs` holds each instrument's signed quantity for the whole structure, `quantity` units of
    it, so a leg's ratio per unit is its quantity / `quantity` (a whole number). `entry_price` is
    per unit, in the combo convention: > 0 a debit paid, < 0 a credit received.
    """

    kind: str
    legs: tuple[tuple[str, int], ...]
    entry_price: float
    quantity: int
    expiry: date
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    """Everything a decision depends on. `now` must be timezone-aware; `rate` (annual, decimal)
    is the one the book was valued with, used for the Whalley-Wilmott band's discount factor."""

    now: datetime
    parameters: AgentParameters
    limits: RiskLimits
    book: BookValuation
    hedge: QuotedInstrument | None
    chain: tuple[QuotedInstrument, ...]
    structure: OpenStructure | None
    rate: float = 0.0
    # Futures of the underlying held in a contract expiring before the hedge future (it rolled):
    # moved into the hedge future as one calendar spread.
    expiring_futures: tuple[QuotedInstrument, ...] = ()
    # The orders sent and not finished, their remaining quantities valued: counted as if filled.
    working: WorkingExposure = NO_WORKING_ORDERS

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if not math.isfinite(self.rate):
            raise ValueError(f"rate must be finite, got {self.rate!r}")


@dataclass(frozen=True, slots=True)
class ProposedTrade:
    action: TradeAction
    legs: tuple[OrderLeg, ...]
    limit_price: float
    rationale: dict[str, Any]
    summary: str


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    policy_version: str
    trades: tuple[ProposedTrade, ...]
    reason: str
    metrics: dict[str, Any]
    inputs_digest: str


# ---------------------------------------------------------------------------------------------
# The hedge band


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


# ---------------------------------------------------------------------------------------------
# The decision


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
    roll_trades, roll_reasons = _hedge_rolls(inputs, hedge)
    hedge_trade, hedge_reason = _hedge(inputs, hedge, net_delta, half_width, working)
    trades = [*structure_trades, *roll_trades, *([hedge_trade] if hedge_trade else [])]
    return decision(trades, [*structure_reasons, *roll_reasons, hedge_reason])


def underlying_delta_model(book: BookValuation, symbol: str, default: str) -> str:
    """The delta model the book's net delta of `symbol` is counted in (`default` when the book
    holds nothing of it)."""
    return next((entry.delta_model for entry in book.net if entry.symbol == symbol), default)


def _underlying_net(book: BookValuation, symbol: str) -> NetGreeks:
    for entry in book.net:
        if entry.symbol == symbol:
            return entry.greeks
    return NetGreeks(delta=0.0, gamma=0.0, vega=0.0, theta=0.0)


def _delta_phrase(net_delta: float, working: WorkingExposure) -> str:
    """"+0.40", or "+0.40 (of which -5.00 in working orders)" while orders work."""
    if not working.legs:
        return f"{net_delta:+.2f}"
    return f"{net_delta:+.2f} (of which {working.delta:+.2f} in working orders)"


def _hedge(
    inputs: PolicyInputs, hedge: QuotedInstrument, net_delta: float, half_width: float,
    working: WorkingExposure = NO_WORKING_ORDERS,
) -> tuple[ProposedTrade | None, str]:
    underlying = inputs.parameters.underlying
    target = inputs.parameters.target_delta
    band_text = f"{target:.2f} ± {half_width:.2f}"
    delta_text = _delta_phrase(net_delta, working)
    deviation = net_delta - target
    if abs(deviation) <= half_width + FLOAT_TOLERANCE:
        return None, f"net {underlying} delta {delta_text} within {band_text}"
    wanted = round(target - net_delta)  # half to even: deterministic, and never overshoots by more than 0.5
    if wanted == 0:
        return None, (f"net {underlying} delta {delta_text} is outside {band_text} by less than "
                      "half a contract")
    instrument = hedge.risk.instrument
    # Contracts already working on the same side in the hedge future size with this order (the
    # governor counts them so): only the room they leave is used.
    stacked = working_same_side(working.quantities(), instrument.key, wanted)
    caps = {"max_order_contracts": inputs.limits.max_order_contracts - stacked,
            "max_leg_contracts": inputs.limits.max_leg_contracts - stacked}
    size = min(abs(wanted), *caps.values())
    if size <= 0:
        return None, (f"net {underlying} delta {delta_text} outside {band_text}, but {stacked} {instrument.key} "
                      f"already working on the same side leave no room under "
                      f"{' and '.join(sorted(name for name, cap in caps.items() if cap <= 0))}: no new hedge")
    capped_by = sorted(name for name, cap in caps.items() if cap == size < abs(wanted))
    quantity = size if wanted > 0 else -size
    side = "BUY" if quantity > 0 else "SELL"
    price = hedge.ask if side == "BUY" else hedge.bid
    after = net_delta + quantity
    rationale: dict[str, Any] = {
        "net_delta": net_delta,
        "delta_model": underlying_delta_model(inputs.book, underlying, inputs.parameters.delta_model),
        "working_delta": working.delta,
        "working_orders": list(working.order_ids),
        "target_delta": target,
        "band_half_width": half_width,
        "band_method": inputs.parameters.band.method,
        "deviation": deviation,
        "hedge_instrument": instrument.key,
        "wanted_quantity": wanted,
        "hedge_quantity": quantity,
        "expected_net_delta": after,
        "bid": hedge.bid,
        "ask": hedge.ask,
    }
    band = inputs.parameters.band
    if band.method == "whalley_wilmott":
        rationale["band_cost_per_contract"] = band_cost_per_contract(band, PRODUCTS[underlying])
    cap_text = ""
    if capped_by:
        rationale["capped_by"] = capped_by
        stacked_text = f", {stacked} already working on the same side" if stacked else ""
        cap_text = f" (capped from {abs(wanted)} by {' and '.join(capped_by)}{stacked_text})"
    if stacked:
        rationale["working_same_side"] = stacked
    summary = (
        f"Net {underlying} delta {delta_text} is outside {band_text}: {side.lower()} {size} "
        f"{instrument.key} at {price}{cap_text} to bring it to {after:+.2f}."
    )
    trade = ProposedTrade(
        action="hedge", legs=(OrderLeg(instrument=instrument, side=side, quantity=size),),
        limit_price=float(price), rationale=rationale, summary=summary,
    )
    reason = f"net {underlying} delta {delta_text} outside {band_text}: hedge {quantity:+d}{cap_text}"
    return trade, reason


def _hedge_rolls(inputs: PolicyInputs, hedge: QuotedInstrument) -> tuple[list[ProposedTrade], list[str]]:
    """Move futures held in a contract that has rolled into the hedge future: sell the old and buy
    the new (or the reverse for a short) as one calendar spread, so the delta stays where it is
    and no position is left to expire. Capped like any order; the rest rolls in later cycles."""
    trades, reasons = [], []
    new = hedge.risk.instrument
    tick = PRODUCTS[new.symbol].future_tick
    held = {leg.risk.instrument.key: leg.quantity for leg in inputs.book.legs}
    for key, quantity in inputs.working.quantities().items():  # a roll already working is not sent again
        held[key] = held.get(key, 0) + quantity
    for old in sorted(inputs.expiring_futures, key=lambda quoted: quoted.risk.instrument.key):
        quantity = held.get(old.risk.instrument.key, 0)
        if not quantity:
            continue
        if not old.two_sided:
            reasons.append(f"{old.risk.instrument.key} has rolled but has no two-sided quote: not rolled yet")
            continue
        size = min(abs(quantity), inputs.limits.max_order_contracts // 2, inputs.limits.max_leg_contracts)
        if size <= 0:
            continue
        close_side, open_side = ("SELL", "BUY") if quantity > 0 else ("BUY", "SELL")
        # Net price per unit, positive a debit: pay the far touch on both legs.
        far_touch = (hedge.ask - old.bid) if quantity > 0 else (old.ask - hedge.bid)
        limit = _round_up_to_tick(far_touch, tick)
        legs = (OrderLeg(instrument=old.risk.instrument, side=close_side, quantity=size),
                OrderLeg(instrument=new, side=open_side, quantity=size))
        summary = (f"Roll {size} of {quantity:+d} {old.risk.instrument.key} into {new.key}: "
                   f"{close_side.lower()} the old, {open_side.lower()} the new, as one spread at a net "
                   f"{'debit' if limit > 0 else 'credit'} of {abs(limit):.2f} per unit.")
        rationale = {"from": old.risk.instrument.key, "to": new.key, "held_quantity": quantity, "units": size,
                     "old_bid": old.bid, "old_ask": old.ask, "new_bid": hedge.bid, "new_ask": hedge.ask,
                     "limit_price": limit}
        trades.append(ProposedTrade(action="roll_hedge", legs=legs, limit_price=limit, rationale=rationale,
                                    summary=summary))
        reasons.append(f"roll {size} {old.risk.instrument.key} into {new.key}")
    return trades, reasons


# ---------------------------------------------------------------------------------------------
# Option structures


def _structure_step(inputs: PolicyInputs, metrics: dict[str, Any]) -> tuple[list[ProposedTrade], list[str]]:
    held = inputs.structure
    kind = inputs.parameters.structure.kind
    if held is None:
        if kind == "none":
            return [], []
        trade, reason = _open_structure(inputs)
        return ([trade] if trade else []), [reason]

    today = _today(inputs.now)
    days_left = (held.expiry - today).days
    metrics.update({"structure_kind": held.kind, "structure_expiry": held.expiry.isoformat(),
                    "structure_dte": days_left, "structure_mark": None, "structure_pnl_pct": None})
    described = f"open {held.kind} expiring {held.expiry.isoformat()} ({days_left} DTE)"
    problem = _structure_problem(held, inputs.book)
    if problem:
        return [], [f"{described}: {problem}; structure left alone"]

    exits = inputs.parameters.exits
    mark = _structure_mark(held, inputs.book)
    premium = abs(held.entry_price)
    pnl_pct = (mark - held.entry_price) / premium * 100.0 if mark is not None and premium > 0 else None
    metrics.update({"structure_mark": mark, "structure_pnl_pct": pnl_pct})
    triggers = []
    if pnl_pct is not None:
        if exits.profit_target_pct is not None and pnl_pct >= exits.profit_target_pct - FLOAT_TOLERANCE:
            triggers.append(f"profit {pnl_pct:.1f}% of the {premium:.2f} entry premium reached the "
                            f"{exits.profit_target_pct:g}% target")
        if exits.stop_loss_pct is not None and -pnl_pct >= exits.stop_loss_pct - FLOAT_TOLERANCE:
            triggers.append(f"loss {-pnl_pct:.1f}% of the {premium:.2f} entry premium reached the "
                            f"{exits.stop_loss_pct:g}% stop")
    rolling = exits.roll_dte is not None and days_left <= exits.roll_dte
    if rolling:
        triggers.append(f"{days_left} days to expiry is within the {exits.roll_dte}-day roll")

    if not triggers:
        if pnl_pct is not None:
            state = f"P&L {pnl_pct:+.1f}% of the {premium:.2f} entry premium"
        elif mark is None:
            state = "mark unknown, profit and stop rules not checked"
        else:
            state = "entry premium 0, profit and stop rules not checked"
        return [], [f"{described}: {state}, no exit due"]

    close, close_reason = _close_structure(inputs, held, triggers, mark, pnl_pct)
    if close is None:
        return [], [f"{described}: {close_reason}"]
    reasons = [f"{described}: close ({close_reason})"]
    trades = [close]
    fully_closed = close.rationale["units"] == held.quantity
    if rolling and kind != "none" and fully_closed:
        opened, open_reason = _open_structure(inputs)
        trades.extend([opened] if opened else [])
        reasons.append(f"roll: {open_reason}")
    elif rolling and not fully_closed:
        reasons.append("roll: the next structure waits until this one is fully closed")
    return trades, reasons


def _structure_problem(held: OpenStructure, book: BookValuation) -> str | None:
    """Why the remembered structure cannot be traded as remembered (None: it can)."""
    positions = book.position_quantities()
    # Held means on the same side and at least as many: a leg partly closed by hand is missing.
    missing = sorted(
        key for key, quantity in held.legs
        if positions.get(key, 0) * quantity <= 0 or abs(positions.get(key, 0)) < abs(quantity)
    )
    if missing:
        return f"legs no longer all in the book ({', '.join(missing)})"
    if held.quantity < 1 or any(quantity % held.quantity for _, quantity in held.legs):
        return f"leg quantities are not whole multiples of its {held.quantity} units"
    return None


def _structure_mark(held: OpenStructure, book: BookValuation) -> float | None:
    """Value of one unit at the legs' marks, in the combo convention (< 0: a short structure)."""
    marks = {leg.risk.instrument.key: leg.risk.mark for leg in book.legs}
    total = 0.0
    for key, quantity in sorted(held.legs):
        mark = marks.get(key)
        if mark is None or not math.isfinite(mark):
            return None
        total += quantity // held.quantity * mark
    return total


def _close_structure(
    inputs: PolicyInputs, held: OpenStructure, triggers: list[str], mark: float | None, pnl_pct: float | None
) -> tuple[ProposedTrade | None, str]:
    why = "; ".join(triggers)
    chain = {quoted.risk.instrument.key: quoted for quoted in inputs.chain}
    ratios = {key: quantity // held.quantity for key, quantity in sorted(held.legs)}
    for key, ratio in ratios.items():
        # A close needs only the side it trades on: a short option far out of the money has no
        # bid, and is still bought back at its ask (often the minimum tick) before it expires.
        buying = ratio < 0
        quoted = chain.get(key)
        price = None if quoted is None else (quoted.ask if buying else quoted.bid)
        if price is None or price <= 0:
            return None, f"{why}, but no {'ask' if buying else 'bid'} for {key}: not closed"
    units, capped_by = _units(inputs.limits, held.quantity, ratios.values())
    if units == 0:
        return None, f"{why}, but one unit exceeds {' and '.join(capped_by)}: not closed"
    legs = [
        _Leg(chain[key], -ratio)  # closing: the opposite of what is held
        for key, ratio in ratios.items()
    ]
    trade = _combo_trade(
        "close_structure", legs, units, capped_by,
        rationale={
            "kind": held.kind,
            "expiry": held.expiry.isoformat(),
            "triggers": triggers,
            "entry_price": held.entry_price,
            "structure_mark": mark,
            "pnl_pct": pnl_pct,
            "held_units": held.quantity,
        },
        headline=f"Close {held.kind} expiring {held.expiry.isoformat()} because {why}",
    )
    return trade, why


@dataclass(frozen=True, slots=True)
class _Leg:
    quoted: QuotedInstrument
    ratio: int  # signed contracts per structure unit: > 0 bought, < 0 sold

    @property
    def instrument(self) -> Instrument:
        return self.quoted.risk.instrument


def _open_structure(inputs: PolicyInputs) -> tuple[ProposedTrade | None, str]:
    rules = inputs.parameters.structure
    underlying = inputs.parameters.underlying
    today = _today(inputs.now)
    options = sorted(
        (q for q in inputs.chain if q.risk.instrument.is_option and q.risk.instrument.symbol == underlying),
        key=lambda q: q.risk.instrument.key,
    )
    usable = [q for q in options if math.isfinite(q.risk.delta)]
    middle = (rules.dte_min + rules.dte_max) / 2.0
    in_window = {
        q.risk.instrument.expiry for q in usable
        if rules.dte_min <= (q.risk.instrument.expiry - today).days <= rules.dte_max
    }
    # Ties go to the nearer expiry.
    expiries = sorted(in_window, key=lambda expiry: (abs((expiry - today).days - middle), expiry))
    if not expiries:
        return None, (f"no {underlying} option expiry {rules.dte_min}-{rules.dte_max} days out with usable "
                      f"greeks: no {rules.kind} opened")
    expiry = expiries[0]
    at_expiry = [q for q in options if q.risk.instrument.expiry == expiry]
    legs, problem = _choose_legs(rules.kind, rules.short_delta, rules.wing_delta, at_expiry)
    if problem:
        return None, f"{problem} for {expiry.isoformat()}: no {rules.kind} opened"
    for leg in legs:
        if not leg.quoted.two_sided:
            return None, f"no two-sided quote for {leg.instrument.key}: no {rules.kind} opened"
    units, capped_by = _units(inputs.limits, rules.quantity, [leg.ratio for leg in legs])
    if units == 0:
        return None, f"one {rules.kind} unit exceeds {' and '.join(capped_by)}: not opened"
    days = (expiry - today).days
    trade = _combo_trade(
        "open_structure", legs, units, capped_by,
        rationale={"kind": rules.kind, "expiry": expiry.isoformat(), "dte": days,
                   "requested_units": rules.quantity},
        headline=f"Open {rules.kind} on {underlying} expiring {expiry.isoformat()} ({days} DTE)",
    )
    return trade, f"open {rules.kind} expiring {expiry.isoformat()} ({days} DTE)"


def _choose_legs(
    kind: str, short_delta: float, wing_delta: float, options: list[QuotedInstrument]
) -> tuple[list[_Leg], str | None]:
    """The legs of one unit, strikes chosen by |delta| (ties: the further out of the money)."""
    usable = [q for q in options if math.isfinite(q.risk.delta)]
    calls = [q for q in usable if q.risk.instrument.right == "C"]
    puts = [q for q in usable if q.risk.instrument.right == "P"]

    def nearest(candidates: list[QuotedInstrument], target: float) -> QuotedInstrument | None:
        def distance(q: QuotedInstrument) -> tuple[float, float]:
            strike = q.risk.instrument.strike
            return abs(abs(q.risk.delta) - target), (-strike if q.risk.instrument.right == "C" else strike)

        return min(candidates, key=distance, default=None)

    if kind in ("short_straddle", "long_straddle"):
        call = nearest(calls, 0.5)
        if call is None:
            return [], "no call with a usable delta"
        strike = call.risk.instrument.strike
        same_strike = (q for q in options if q.risk.instrument.strike == strike)
        put = next((q for q in same_strike if q.risk.instrument.right == "P"), None)
        if put is None:
            return [], f"no put at the at-the-money strike {strike:g}"
        sign = -1 if kind == "short_straddle" else 1
        return [_Leg(call, sign), _Leg(put, sign)], None

    call, put = nearest(calls, short_delta), nearest(puts, short_delta)
    if call is None or put is None:
        return [], "no call and put with usable deltas"
    if kind in ("short_strangle", "long_strangle"):
        sign = -1 if kind == "short_strangle" else 1
        return [_Leg(put, sign), _Leg(call, sign)], None

    # iron_condor: short the short_delta strikes, buy wings further out of the money.
    call_strike, put_strike = call.risk.instrument.strike, put.risk.instrument.strike
    call_wing = nearest([q for q in calls if q.risk.instrument.strike > call_strike], wing_delta)
    put_wing = nearest([q for q in puts if q.risk.instrument.strike < put_strike], wing_delta)
    if call_wing is None or put_wing is None:
        return [], "no wing strike beyond the short strikes"
    return [_Leg(put_wing, 1), _Leg(put, -1), _Leg(call, -1), _Leg(call_wing, 1)], None


def _units(limits: RiskLimits, wanted: int, ratios: Iterable[int]) -> tuple[int, list[str]]:
    """Structure units within the order size (all legs) and leg size limits, and the limits that
    bound them (none when the wanted units fit)."""
    sizes = [abs(ratio) for ratio in ratios]
    caps = {"max_order_contracts": limits.max_order_contracts // sum(sizes),
            "max_leg_contracts": limits.max_leg_contracts // max(sizes)}
    units = min(wanted, *caps.values())
    return units, sorted(name for name, cap in caps.items() if cap == units < wanted)


def _combo_trade(
    action: TradeAction, legs: list[_Leg], units: int, capped_by: list[str], *,
    rationale: dict[str, Any], headline: str,
) -> ProposedTrade:
    legs = sorted(legs, key=lambda leg: (leg.instrument.strike, leg.instrument.right, leg.instrument.key))
    far_touch = sum(leg.ratio * (leg.quoted.ask if leg.ratio > 0 else leg.quoted.bid) for leg in legs)
    mid = sum(leg.ratio * _mid(leg.quoted) for leg in legs)
    tick = PRODUCTS[legs[0].instrument.symbol].option_tick
    limit = _round_up_to_tick(far_touch, tick)
    order_legs = tuple(
        OrderLeg(instrument=leg.instrument, side="BUY" if leg.ratio > 0 else "SELL",
                 quantity=abs(leg.ratio) * units)
        for leg in legs
    )
    rationale = {
        **rationale,
        "units": units,
        "legs": [
            {"instrument": leg.instrument.key, "side": order_leg.side, "quantity": order_leg.quantity,
             "strike": leg.instrument.strike, "right": leg.instrument.right,
             "delta": _number(leg.quoted.risk.delta), "bid": leg.quoted.bid, "ask": leg.quoted.ask}
            for leg, order_leg in zip(legs, order_legs, strict=True)
        ],
        "net_price_far_touch": far_touch,
        "net_price_mid": mid,
        "limit_price": limit,
    }
    if capped_by:
        rationale["capped_by"] = capped_by
    leg_text = ", ".join(
        f"{order_leg.side.lower()} {order_leg.quantity} {leg.instrument.strike:g} {leg.instrument.right} "
        f"(delta {leg.quoted.risk.delta:+.2f})"
        for leg, order_leg in zip(legs, order_legs, strict=True)
    )
    money = f"a net debit of {limit:.2f}" if limit > 0 else f"a net credit of {-limit:.2f}"
    cap_text = f", capped by {' and '.join(capped_by)}" if capped_by else ""
    summary = f"{headline}: {leg_text}, {units} unit(s) at {money} per unit (mid {mid:+.2f}){cap_text}."
    return ProposedTrade(
        action=action, legs=order_legs, limit_price=limit, rationale=rationale, summary=summary
    )


def _mid(quoted: QuotedInstrument) -> float:
    """The middle of the quote; a missing bid counts as zero (no one pays anything for it)."""
    bid = quoted.bid or 0.0
    ask = quoted.ask if quoted.ask is not None else bid
    return (bid + ask) / 2.0


def _round_up_to_tick(price: float, tick: float) -> float:
    steps = math.ceil(price / tick - 1e-9)  # 12.35 / 0.05 is 246.99999999999997 in floats
    decimals = max(0, -Decimal(repr(tick)).normalize().as_tuple().exponent)
    return round(steps * tick, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0


def _today(now: datetime) -> date:
    return now.astimezone(UTC).date()


# ---------------------------------------------------------------------------------------------
# Reproducibility


def _number(value: float | None) -> float | None:
    """JSON has no NaN: an unknown number is null in metrics and rationales."""
    return value if value is not None and math.isfinite(value) else None


def _canonical(value: Any) -> Any:
    """Plain JSON for the digest; a non-finite float becomes its text, so unknown != missing."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, (date, Decimal)):
        return str(value)
    return value


def _quoted(quoted: QuotedInstrument) -> dict[str, Any]:
    risk = quoted.risk
    return {"instrument": risk.instrument.key, "bid": quoted.bid, "ask": quoted.ask, "mark": risk.mark,
            "delta": risk.delta, "gamma": risk.gamma}


def _inputs_digest(inputs: PolicyInputs) -> str:
    """sha256 of the canonical JSON of what the decision reads (and the policy version)."""
    underlying = inputs.parameters.underlying
    structure = inputs.structure
    payload = {
        "policy_version": POLICY_VERSION,
        "now": inputs.now.astimezone(UTC).isoformat(),
        "rate": inputs.rate,
        "parameters": parameters_to_json(inputs.parameters),
        "limits": {"max_order_contracts": inputs.limits.max_order_contracts,
                   "max_leg_contracts": inputs.limits.max_leg_contracts},
        "net": [{"symbol": entry.symbol, "delta": entry.greeks.delta, "gamma": entry.greeks.gamma,
                 "delta_model": entry.delta_model}
                for entry in inputs.book.net if entry.symbol == underlying],
        "legs": sorted(
            ({"instrument": leg.risk.instrument.key, "quantity": leg.quantity, "mark": leg.risk.mark}
             for leg in inputs.book.legs if leg.risk.instrument.symbol == underlying),
            key=lambda leg: leg["instrument"],
        ),
        "hedge": _quoted(inputs.hedge) if inputs.hedge is not None else None,
        "expiring_futures": sorted((_quoted(quoted) for quoted in inputs.expiring_futures),
                                   key=lambda q: q["instrument"]),
        "chain": sorted((_quoted(quoted) for quoted in inputs.chain), key=lambda q: q["instrument"]),
        "working": sorted(
            ({"order": leg.leg.client_order_id, "instrument": leg.leg.instrument.key, "quantity": leg.leg.quantity,
              "delta": leg.risk.delta} for leg in inputs.working.legs),
            key=lambda leg: (leg["order"], leg["instrument"]),
        ),
        "structure": (
            {f.name: getattr(structure, f.name) for f in fields(structure)} | {
                "legs": sorted(structure.legs), "opened_at": structure.opened_at.isoformat()}
            if structure is not None else None
        ),
    }
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()
