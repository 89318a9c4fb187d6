"""The delta hedge on the hedge future (`_hedge`), the roll of futures held in a contract that has
rolled into the hedge future (`hedge_rolls`), and the book's net greeks of the underlying."""
from __future__ import annotations

from typing import Any

from agents.policy.band import band_cost_per_contract
from agents.policy.model import PolicyInputs, ProposedTrade, QuotedInstrument
from agents.policy.prices import _round_up_to_tick
from brokers.domain import OrderLeg
from brokers.products import PRODUCTS
from risk.book import BookValuation
from risk.governor import FLOAT_TOLERANCE, working_same_side
from risk.greeks import NetGreeks
from risk.working import NO_WORKING_ORDERS, WorkingExposure


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


def hedge_rolls(inputs: PolicyInputs, hedge: QuotedInstrument) -> tuple[list[ProposedTrade], list[str]]:
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
