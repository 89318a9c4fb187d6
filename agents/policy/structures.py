"""Option structures: open one (`open_structure`, strikes chosen by delta in `_choose_legs`), close
the one held on its exits (`close_structure`), and price a structure as one combo (`combo_trade`).

Prices are marketable limits at the far touch (a buy at the ask, a sell at the bid). A combo's
limit is its net price per unit (positive: a debit), rounded up to the option tick, the direction
that keeps it marketable (pay a little more, or receive a little less).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agents.policy.digest import _number
from agents.policy.model import OpenStructure, PolicyInputs, ProposedTrade, QuotedInstrument, TradeAction
from agents.policy.prices import _mid, _round_up_to_tick, _today
from brokers.domain import Instrument, OrderLeg
from brokers.products import PRODUCTS
from risk.book import BookValuation
from risk.governor import FLOAT_TOLERANCE, RiskLimits


def _structure_step(inputs: PolicyInputs, metrics: dict[str, Any]) -> tuple[list[ProposedTrade], list[str]]:
    held = inputs.structure
    kind = inputs.parameters.structure.kind
    if held is None:
        if kind == "none":
            return [], []
        trade, reason = open_structure(inputs)
        return ([trade] if trade else []), [reason]

    today = _today(inputs.now)
    days_left = (held.expiry - today).days
    metrics.update({"structure_kind": held.kind, "structure_expiry": held.expiry.isoformat(),
                    "structure_dte": days_left, "structure_mark": None, "structure_pnl_pct": None})
    described = f"open {held.kind} expiring {held.expiry.isoformat()} ({days_left} DTE)"
    problem = structure_problem(held, inputs.book)
    if problem:
        return [], [f"{described}: {problem}; structure left alone"]

    exits = inputs.parameters.exits
    mark = structure_mark(held, inputs.book)
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

    close, close_reason = close_structure(inputs, held, triggers, mark, pnl_pct)
    if close is None:
        return [], [f"{described}: {close_reason}"]
    reasons = [f"{described}: close ({close_reason})"]
    trades = [close]
    fully_closed = close.rationale["units"] == held.quantity
    if rolling and kind != "none" and fully_closed:
        opened, open_reason = open_structure(inputs)
        trades.extend([opened] if opened else [])
        reasons.append(f"roll: {open_reason}")
    elif rolling and not fully_closed:
        reasons.append("roll: the next structure waits until this one is fully closed")
    return trades, reasons


def structure_problem(held: OpenStructure, book: BookValuation) -> str | None:
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


def structure_mark(held: OpenStructure, book: BookValuation) -> float | None:
    """Value of one unit at the legs' marks, in the combo convention (< 0: a short structure)."""
    marks = {leg.risk.instrument.key: leg.risk.mark for leg in book.legs}
    total = 0.0
    for key, quantity in sorted(held.legs):
        mark = marks.get(key)
        if mark is None or not math.isfinite(mark):
            return None
        total += quantity // held.quantity * mark
    return total


def close_structure(
    inputs: PolicyInputs, held: OpenStructure, triggers: list[str], mark: float | None, pnl_pct: float | None
) -> tuple[ProposedTrade | None, str]:
    """The held structure closed as one combo (None, and why, when it cannot be), capped by the size limits."""
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
        Leg(chain[key], -ratio)  # closing: the opposite of what is held
        for key, ratio in ratios.items()
    ]
    trade = combo_trade(
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
class Leg:
    """One leg of a combo: the quoted instrument and its signed contracts per structure unit."""

    quoted: QuotedInstrument
    ratio: int  # signed contracts per structure unit: > 0 bought, < 0 sold

    @property
    def instrument(self) -> Instrument:
        return self.quoted.risk.instrument


def open_structure(inputs: PolicyInputs) -> tuple[ProposedTrade | None, str]:
    """The parameters' structure opened as one combo (None, and why, when it cannot be), capped by the
    size limits."""
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
    trade = combo_trade(
        "open_structure", legs, units, capped_by,
        rationale={"kind": rules.kind, "expiry": expiry.isoformat(), "dte": days,
                   "requested_units": rules.quantity},
        headline=f"Open {rules.kind} on {underlying} expiring {expiry.isoformat()} ({days} DTE)",
    )
    return trade, f"open {rules.kind} expiring {expiry.isoformat()} ({days} DTE)"


def _choose_legs(
    kind: str, short_delta: float, wing_delta: float, options: list[QuotedInstrument]
) -> tuple[list[Leg], str | None]:
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
        return [Leg(call, sign), Leg(put, sign)], None

    call, put = nearest(calls, short_delta), nearest(puts, short_delta)
    if call is None or put is None:
        return [], "no call and put with usable deltas"
    if kind in ("short_strangle", "long_strangle"):
        sign = -1 if kind == "short_strangle" else 1
        return [Leg(put, sign), Leg(call, sign)], None

    # iron_condor: short the short_delta strikes, buy wings further out of the money.
    call_strike, put_strike = call.risk.instrument.strike, put.risk.instrument.strike
    call_wing = nearest([q for q in calls if q.risk.instrument.strike > call_strike], wing_delta)
    put_wing = nearest([q for q in puts if q.risk.instrument.strike < put_strike], wing_delta)
    if call_wing is None or put_wing is None:
        return [], "no wing strike beyond the short strikes"
    return [Leg(put_wing, 1), Leg(put, -1), Leg(call, -1), Leg(call_wing, 1)], None


def _units(limits: RiskLimits, wanted: int, ratios: Iterable[int]) -> tuple[int, list[str]]:
    """Structure units within the order size (all legs) and leg size limits, and the limits that
    bound them (none when the wanted units fit)."""
    sizes = [abs(ratio) for ratio in ratios]
    caps = {"max_order_contracts": limits.max_order_contracts // sum(sizes),
            "max_leg_contracts": limits.max_leg_contracts // max(sizes)}
    units = min(wanted, *caps.values())
    return units, sorted(name for name, cap in caps.items() if cap == units < wanted)


def combo_trade(
    action: TradeAction, legs: list[Leg], units: int, capped_by: list[str], *,
    rationale: dict[str, Any], headline: str,
) -> ProposedTrade:
    """`units` of the legs as one combo order at the far touch, rounded up to the option tick."""
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
