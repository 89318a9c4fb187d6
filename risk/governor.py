"""The governor's pure core: pre-trade checks and the circuit breaker, without a database.

`evaluate_order` is called before every order and again at approval time. It reports every
failing rule, not just the first, and fails closed: a missing or stale quote, an instrument
without a delta or a calendar, or a broker link reported down rejects the order.

Units: quantities are signed whole contracts; delta is in underlying-contract equivalents (an
option leg's `delta_per_contract` is option delta x option multiplier / future multiplier, a
future's is 1.0); money is `Decimal` USD.

Float comparisons (net delta, spread) allow `FLOAT_TOLERANCE` in the order's favour so that a value
exactly at its limit passes even after binary rounding (0.1 + 0.2 is not 0.3 in floats). Money is
compared as Decimal rounded to the cent (see `to_money`), so $500.00 and $500.01 are exact.

Risk-reducing, precisely (`is_risk_reducing`). A leg *closes* when, netted per instrument over the
order, it moves an existing position toward zero without crossing it (|change| <= |position|,
opposite signs). An order is risk-reducing when it has at least one leg and either
  1. every instrument it trades closes (a pure reduction of existing positions), or
  2. it strictly lowers |net delta| and every option it trades closes: futures may open, add to
     or flip a position (the delta hedge), but no option position is opened or grown.
A reducing order is still subject to the size, open-leg, net-delta, quote and market-hours rules.

Working orders (`Book.working_positions`, `Book.working_delta`) count as if they had filled: the
net delta before and after the order includes their delta, the open legs and what an order closes
are counted on positions plus their remaining quantities, and an order on the same side as
contracts already working in the same instrument is sized with them (one resting SELL 5 and a new
SELL 5 are ten contracts working). The order under evaluation is never among them.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any, Protocol

# RiskLimits is defined with its bounds in risk.limits and imported here, where the rules use it.
from risk.limits import RiskLimits
from risk.sessions import UnknownCalendar

FLOAT_TOLERANCE = 1e-9
_CENT = Decimal("0.01")
_RATE_WINDOW_SECONDS = 60.0


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # only risk-reducing orders
    HALTED = "HALTED"  # nothing but cancels


class ReasonCode(StrEnum):
    MAX_NET_DELTA = "max_net_delta"
    MAX_ORDER_SIZE = "max_order_size"
    MAX_LEG_SIZE = "max_leg_size"
    MAX_DAILY_LOSS = "max_daily_loss"
    MAX_OPEN_LEGS = "max_open_legs"
    MARKET_CLOSED = "market_closed"
    SPREAD_TOO_WIDE = "spread_too_wide"
    NO_TWO_SIDED_QUOTE = "no_two_sided_quote"
    STALE_QUOTE = "stale_quote"
    MISSING_QUOTE = "missing_quote"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    ORDER_RATE = "order_rate"
    DUPLICATE_ORDER = "duplicate_order"
    TRADING_HALTED = "trading_halted"
    REDUCING_ONLY = "reducing_only"
    EMERGENCY_HALT = "emergency_halt"
    CIRCUIT_BREAKER = "circuit_breaker"
    BROKER_UNAVAILABLE = "broker_unavailable"
    INVALID_ORDER = "invalid_order"
    # Only as a transition reason: a time-limited REDUCING state ended with its trading day.
    TRADING_DAY_ROLLED = "trading_day_rolled"


def to_money(value: Decimal | float | int | str) -> Decimal:
    """USD rounded to the cent. A float goes through its shortest repr, so 500.01 stays 500.01."""
    if isinstance(value, Decimal):
        amount = value
    else:
        amount = Decimal(repr(value) if isinstance(value, float) else value)
    if not amount.is_finite():
        raise ValueError(f"money must be finite, got {value!r}")
    return amount.quantize(_CENT, rounding=ROUND_HALF_EVEN)


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class LegQuote:
    bid: float | None
    ask: float | None
    time: datetime | None  # None: freshness unknown, treated as stale


@dataclass(frozen=True, slots=True)
class ProposedLeg:
    """One leg as the governor needs it; the service precomputes everything here.

    `calendar` is the pandas_market_calendars name of the leg's exchange (None when unknown) and
    `delta_per_contract` its delta in underlying-contract equivalents (None when no delta could be
    established); either None rejects the order as `unknown_instrument`.
    """

    instrument_key: str
    calendar: str | None
    quantity: int  # signed: buy > 0, sell < 0
    delta_per_contract: float | None
    is_option: bool
    quote: LegQuote | None


@dataclass(frozen=True, slots=True)
class ProposedOrder:
    legs: tuple[ProposedLeg, ...]


@dataclass(frozen=True, slots=True)
class Book:
    """The client's book now. `positions` maps instrument key to signed quantity (zeros allowed).

    Working orders (sent, not finished) may fill at any moment, so their remaining quantities
    count as if held: `working_positions` (instrument key -> signed remaining contracts, every
    working order summed) and `working_delta` (their net delta) are added to the positions and
    the net delta by every rule (see `evaluate_order`)."""

    positions: Mapping[str, int]
    net_delta: float  # underlying-contract equivalents, all positions
    realized_pnl_today: Decimal  # since the exchange trading day began
    unrealized_pnl: Decimal
    broker_connected: bool
    delta_model: str = "sticky_strike"  # the delta model(s) net_delta is counted in (risk.delta_models)
    working_positions: Mapping[str, int] = field(default_factory=dict)
    working_delta: float = 0.0  # NaN when a working leg's delta is unknown
    working_orders: int = 0  # how many orders the two fields above come from

    def with_working(self) -> dict[str, int]:
        """Positions as they stand once every working order has filled."""
        combined = dict(self.positions)
        for key, quantity in self.working_positions.items():
            combined[key] = combined.get(key, 0) + quantity
        return combined


@dataclass(frozen=True, slots=True)
class RecentOrder:
    at: datetime
    fingerprint: str  # order_fingerprint(...) of an order the governor accepted


@dataclass(frozen=True, slots=True)
class RiskState:
    trading_state: TradingState = TradingState.ACTIVE
    reason: str = ""  # why the client is in that state (a ReasonCode value or an owner's note)
    state_until: datetime | None = None  # a REDUCING state that ends by itself (daily loss)
    emergency_halt: bool = False  # the operator's platform-wide halt
    emergency_reason: str = ""
    recent_orders: tuple[RecentOrder, ...] = ()
    loss_streak: int = 0


class Market(Protocol):
    """What the governor asks of market hours; `risk.sessions.MarketHours` is the implementation."""

    def is_open(self, calendar: str, at: datetime) -> bool: ...

    def next_trading_day_start(self, calendar: str, at: datetime) -> datetime: ...


# ---------------------------------------------------------------------------------------------
# Output


Number = Decimal | float | int


@dataclass(frozen=True, slots=True)
class Violation:
    code: ReasonCode
    message: str
    limit: Number | None = None
    value: Number | None = None
    instrument_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "message": self.message,
            "limit": _json_number(self.limit),
            "value": _json_number(self.value),
            "instrument_key": self.instrument_key,
        }


@dataclass(frozen=True, slots=True)
class StateTransition:
    to_state: TradingState
    reason: ReasonCode
    until: datetime | None = None  # REDUCING for a daily loss lasts until the next trading day

    def as_dict(self) -> dict[str, Any]:
        return {
            "to_state": self.to_state.value,
            "reason": self.reason.value,
            "until": self.until.isoformat() if self.until else None,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    accepted: bool
    violations: tuple[Violation, ...]
    pre_net_delta: float  # positions and working orders
    post_net_delta: float  # the same, once this order has filled too
    risk_reducing: bool
    transition: StateTransition | None
    fingerprint: str
    evaluated_at: datetime
    delta_model: str = "sticky_strike"  # the book's, which the net deltas above are counted in
    working_delta: float = 0.0  # of which in working orders (in both numbers above)
    working_orders: int = 0
    codes: tuple[ReasonCode, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "codes", tuple(v.code for v in self.violations))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the audit row and the API."""
        return {
            "accepted": self.accepted,
            "violations": [v.as_dict() for v in self.violations],
            "pre_net_delta": self.pre_net_delta,
            "post_net_delta": self.post_net_delta,
            "delta_model": self.delta_model,
            "working_delta": self.working_delta if math.isfinite(self.working_delta) else None,
            "working_orders": self.working_orders,
            "risk_reducing": self.risk_reducing,
            "transition": self.transition.as_dict() if self.transition else None,
            "fingerprint": self.fingerprint,
            "evaluated_at": self.evaluated_at.isoformat(),
        }


def _json_number(value: Number | None) -> str | float | int | None:
    return str(value) if isinstance(value, Decimal) else value


# ---------------------------------------------------------------------------------------------
# Rules


def order_fingerprint(order: ProposedOrder) -> str:
    """Identity of an order for duplicate detection: its instruments and net signed quantities."""
    return ";".join(f"{key}:{qty:+d}" for key, qty in sorted(_net_changes(order).items()))


def _net_changes(order: ProposedOrder) -> dict[str, int]:
    changes: dict[str, int] = {}
    for leg in order.legs:
        changes[leg.instrument_key] = changes.get(leg.instrument_key, 0) + leg.quantity
    return changes


def _closes(position: int, change: int) -> bool:
    """The change moves the position toward zero without crossing it."""
    return change != 0 and position != 0 and (position > 0) != (change > 0) and abs(change) <= abs(position)


def is_risk_reducing(
    order: ProposedOrder, positions: Mapping[str, int], pre_net_delta: float, post_net_delta: float
) -> bool:
    """See the module docstring for the definition."""
    changes = _net_changes(order)
    if not changes:
        return False
    option_keys = {leg.instrument_key for leg in order.legs if leg.is_option}
    closing = {key: _closes(positions.get(key, 0), change) for key, change in changes.items()}
    if all(closing.values()):
        return True
    delta_lowered = abs(post_net_delta) < abs(pre_net_delta) - FLOAT_TOLERANCE
    return delta_lowered and all(closing[key] for key in option_keys)


def _leg_data_violations(
    order: ProposedOrder, limits: RiskLimits, market: Market, now: datetime, positions: Mapping[str, int]
) -> list[Violation]:
    violations: list[Violation] = []
    changes = _net_changes(order)
    calendar_open: dict[str, bool | None] = {}  # None: a calendar the market does not know
    now_epoch = now.timestamp()
    for leg in order.legs:
        key = leg.instrument_key
        if leg.quantity == 0:
            violations.append(
                Violation(ReasonCode.INVALID_ORDER, f"{key}: quantity is zero", instrument_key=key)
            )
        delta = leg.delta_per_contract
        if leg.calendar is None or delta is None or not math.isfinite(delta):
            missing = "exchange calendar" if leg.calendar is None else "delta"
            violations.append(
                Violation(ReasonCode.UNKNOWN_INSTRUMENT, f"{key}: no {missing} known", instrument_key=key)
            )
        if leg.calendar is not None:
            first_leg_on_calendar = leg.calendar not in calendar_open
            if first_leg_on_calendar:
                try:
                    calendar_open[leg.calendar] = market.is_open(leg.calendar, now)
                except UnknownCalendar:
                    calendar_open[leg.calendar] = None
            open_now = calendar_open[leg.calendar]
            if open_now is None:
                violations.append(
                    Violation(
                        ReasonCode.UNKNOWN_INSTRUMENT,
                        f"{key}: exchange calendar {leg.calendar!r} is not known",
                        instrument_key=key,
                    )
                )
            elif not open_now and first_leg_on_calendar:
                violations.append(
                    Violation(
                        ReasonCode.MARKET_CLOSED,
                        f"{key}: the {leg.calendar} market is closed",
                        instrument_key=key,
                    )
                )
        closing = _closes(positions.get(key, 0), changes.get(key, 0))
        violations.extend(_quote_violations(leg, limits, now_epoch, closing=closing))
    return violations


def _quote_violations(
    leg: ProposedLeg, limits: RiskLimits, now_epoch: float, *, closing: bool = False
) -> list[Violation]:
    """A fresh quote, two-sided and within the spread limit. A leg that only closes (part of) a
    held position needs just the side it trades on, and no spread limit: the guard keeps the book
    from paying away edge to open risk in a thin market, never from getting out of it (a short
    option far out of the money has no bid, and is bought back at its ask before it expires)."""
    key = leg.instrument_key
    quote = leg.quote
    if quote is None:
        return [Violation(ReasonCode.MISSING_QUOTE, f"{key}: no quote", instrument_key=key)]
    violations: list[Violation] = []
    if quote.time is None or quote.time.tzinfo is None:
        violations.append(
            Violation(
                ReasonCode.STALE_QUOTE,
                f"{key}: quote time unknown or without a time zone",
                limit=limits.max_quote_age_seconds,
                instrument_key=key,
            )
        )
    else:
        age = now_epoch - quote.time.timestamp()
        if age > limits.max_quote_age_seconds:
            violations.append(
                Violation(
                    ReasonCode.STALE_QUOTE,
                    f"{key}: quote is {age:.1f}s old (limit {limits.max_quote_age_seconds:g}s)",
                    limit=limits.max_quote_age_seconds,
                    value=age,
                    instrument_key=key,
                )
            )
    bid, ask = quote.bid, quote.ask
    if closing:
        price = ask if leg.quantity > 0 else bid
        if price is None or not math.isfinite(price) or price <= 0:
            side = "ask" if leg.quantity > 0 else "bid"
            violations.append(Violation(ReasonCode.NO_TWO_SIDED_QUOTE,
                                        f"{key}: no {side} to close at (bid {bid}, ask {ask})", instrument_key=key))
        return violations
    two_sided = (
        bid is not None and ask is not None and math.isfinite(bid) and math.isfinite(ask) and 0 <= bid <= ask
        and ask > 0
    )
    if not two_sided:
        violations.append(
            Violation(
                ReasonCode.NO_TWO_SIDED_QUOTE,
                f"{key}: no two-sided quote (bid {bid}, ask {ask})",
                instrument_key=key,
            )
        )
        return violations
    mid = (bid + ask) / 2.0
    spread = (ask - bid) / mid
    if spread > limits.max_spread_pct + FLOAT_TOLERANCE:
        violations.append(
            Violation(
                ReasonCode.SPREAD_TOO_WIDE,
                f"{key}: spread {spread:.1%} of mid exceeds {limits.max_spread_pct:.1%}",
                limit=limits.max_spread_pct,
                value=spread,
                instrument_key=key,
            )
        )
    return violations


def working_same_side(working: Mapping[str, int], instrument_key: str, quantity: int) -> int:
    """Contracts already working in this instrument on the same side as `quantity` (0 if none):
    an order added to them works like one larger order, so the size limits count them."""
    stacked = working.get(instrument_key, 0)
    return abs(stacked) if stacked and (stacked > 0) == (quantity > 0) else 0


def _size_violations(order: ProposedOrder, limits: RiskLimits, working: Mapping[str, int]) -> list[Violation]:
    violations: list[Violation] = []
    total = stacked_total = 0
    for leg in order.legs:
        stacked = working_same_side(working, leg.instrument_key, leg.quantity)
        size = abs(leg.quantity) + stacked
        total += size
        stacked_total += stacked
        if size > limits.max_leg_contracts:
            violations.append(
                Violation(
                    ReasonCode.MAX_LEG_SIZE,
                    f"{leg.instrument_key}: {_contracts(abs(leg.quantity), stacked)} exceed the per-leg limit "
                    f"of {limits.max_leg_contracts}",
                    limit=limits.max_leg_contracts,
                    value=size,
                    instrument_key=leg.instrument_key,
                )
            )
    if not order.legs:
        violations.append(Violation(ReasonCode.INVALID_ORDER, "the order has no legs"))
    if total > limits.max_order_contracts:
        violations.append(
            Violation(
                ReasonCode.MAX_ORDER_SIZE,
                f"{_contracts(total - stacked_total, stacked_total)} exceed the per-order limit of "
                f"{limits.max_order_contracts}",
                limit=limits.max_order_contracts,
                value=total,
            )
        )
    return violations


def _contracts(own: int, stacked: int) -> str:
    if not stacked:
        return f"{own} contracts"
    return f"{own} contracts and {stacked} already working on the same side"


def _delta_text(delta: float, working_delta: float) -> str:
    if not working_delta:
        return f"{delta:+.2f}"
    return f"{delta:+.2f} (of which {working_delta:+.2f} in working orders)"


def _open_legs(positions: Mapping[str, int], changes: Mapping[str, int]) -> tuple[int, int]:
    before = len(positions) - operator.countOf(positions.values(), 0)
    after = before
    for key, change in changes.items():
        held = positions.get(key, 0)
        after += (held + change != 0) - (held != 0)
    return before, after


def _rate_violations(
    fingerprint: str, state: RiskState, limits: RiskLimits, now: datetime
) -> list[Violation]:
    violations: list[Violation] = []
    now_epoch = now.timestamp()
    in_last_minute = 0
    duplicate_age: float | None = None
    for recent in state.recent_orders:
        age = now_epoch - recent.at.timestamp()
        if 0 <= age < _RATE_WINDOW_SECONDS:
            in_last_minute += 1
        if recent.fingerprint == fingerprint and 0 <= age < limits.duplicate_window_seconds:
            duplicate_age = age if duplicate_age is None else min(duplicate_age, age)
    if in_last_minute + 1 > limits.max_orders_per_minute:
        violations.append(
            Violation(
                ReasonCode.ORDER_RATE,
                f"{in_last_minute} orders in the last minute; the limit is {limits.max_orders_per_minute}",
                limit=limits.max_orders_per_minute,
                value=in_last_minute + 1,
            )
        )
    if duplicate_age is not None:
        violations.append(
            Violation(
                ReasonCode.DUPLICATE_ORDER,
                f"the same order was accepted {duplicate_age:.1f}s ago "
                f"(window {limits.duplicate_window_seconds:g}s)",
                limit=limits.duplicate_window_seconds,
                value=duplicate_age,
            )
        )
    return violations


def evaluate_order(
    order: ProposedOrder,
    book: Book,
    limits: RiskLimits,
    state: RiskState,
    market: Market,
    now: datetime,
) -> Decision:
    """Every rule, every violation, and the state change that follows.

    Bad or missing data becomes a violation, never an exception; only a naive `now` is refused.
    Every datetime given is timezone-aware. Cancels do not come here: they are always allowed.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    violations: list[Violation] = []
    transition: StateTransition | None = None
    # Working orders count as filled: for what an order closes, the legs left open, the delta.
    positions = book.with_working()
    changes = _net_changes(order)
    fingerprint = order_fingerprint(order)

    trading_state = state.trading_state
    if (
        trading_state is TradingState.REDUCING
        and state.state_until is not None
        and now >= state.state_until
    ):
        trading_state = TradingState.ACTIVE
        transition = StateTransition(TradingState.ACTIVE, ReasonCode.TRADING_DAY_ROLLED)

    if state.emergency_halt:
        violations.append(
            Violation(
                ReasonCode.EMERGENCY_HALT, f"emergency halt: {state.emergency_reason or 'set by an operator'}"
            )
        )
    if trading_state is TradingState.HALTED:
        violations.append(
            Violation(ReasonCode.TRADING_HALTED, f"trading is halted: {state.reason or 'no reason recorded'}")
        )
    if state.loss_streak >= limits.breaker_loss_count:
        violations.append(
            Violation(
                ReasonCode.CIRCUIT_BREAKER,
                f"{state.loss_streak} consecutive losses over ${limits.breaker_loss_threshold}; "
                "an owner must reset the breaker",
                limit=limits.breaker_loss_count,
                value=state.loss_streak,
            )
        )
        if trading_state is not TradingState.HALTED:
            transition = StateTransition(TradingState.HALTED, ReasonCode.CIRCUIT_BREAKER)
    if not book.broker_connected:
        violations.append(Violation(ReasonCode.BROKER_UNAVAILABLE, "the broker link is down"))

    violations.extend(_leg_data_violations(order, limits, market, now, positions))
    violations.extend(_size_violations(order, limits, book.working_positions))

    pre_delta = book.net_delta + book.working_delta
    post_delta = pre_delta
    for leg in order.legs:
        if leg.delta_per_contract is not None and math.isfinite(leg.delta_per_contract):
            post_delta += leg.quantity * leg.delta_per_contract
    delta_known = all(
        leg.delta_per_contract is not None and math.isfinite(leg.delta_per_contract) for leg in order.legs
    ) and math.isfinite(pre_delta)
    # With a leg's delta unknown the post-trade delta is unknown; the order is already rejected
    # and nothing may be credited to it as reducing.
    reducing = delta_known and is_risk_reducing(order, positions, pre_delta, post_delta)

    if not math.isfinite(pre_delta):
        unknown = "the working orders' delta" if math.isfinite(book.net_delta) else "the book's net delta"
        violations.append(
            Violation(ReasonCode.MAX_NET_DELTA, f"{unknown} is unknown", limit=limits.max_net_delta)
        )
    elif delta_known and abs(post_delta) > limits.max_net_delta + FLOAT_TOLERANCE and not (
        abs(post_delta) < abs(pre_delta) - FLOAT_TOLERANCE
    ):
        violations.append(
            Violation(
                ReasonCode.MAX_NET_DELTA,
                f"net delta would go from {_delta_text(pre_delta, book.working_delta)} to {post_delta:+.2f}; "
                f"the limit is {limits.max_net_delta:g} ({book.delta_model} delta)",
                limit=limits.max_net_delta,
                value=post_delta,
            )
        )

    open_before, open_after = _open_legs(positions, changes)
    if open_after > limits.max_open_legs and open_after >= open_before:
        counted = " (working orders included)" if book.working_positions else ""
        violations.append(
            Violation(
                ReasonCode.MAX_OPEN_LEGS,
                f"{open_after} open legs after the order{counted}; the limit is {limits.max_open_legs}",
                limit=limits.max_open_legs,
                value=open_after,
            )
        )

    if trading_state is TradingState.REDUCING and not reducing:
        violations.append(
            Violation(
                ReasonCode.REDUCING_ONLY,
                f"only risk-reducing orders pass while reducing ({state.reason or 'no reason recorded'})",
            )
        )
    daily_loss = _daily_loss(book)
    if daily_loss is None:
        violations.append(
            Violation(ReasonCode.MAX_DAILY_LOSS, "today's P&L is unknown", limit=limits.max_daily_loss)
        )
    elif daily_loss > limits.max_daily_loss:
        if not reducing:
            violations.append(
                Violation(
                    ReasonCode.MAX_DAILY_LOSS,
                    f"today's loss ${daily_loss} is beyond the limit of ${limits.max_daily_loss}; "
                    "only risk-reducing orders pass",
                    limit=limits.max_daily_loss,
                    value=daily_loss,
                )
            )
        halting = transition is not None and transition.to_state is TradingState.HALTED
        if trading_state is TradingState.ACTIVE and not halting:
            transition = StateTransition(
                TradingState.REDUCING, ReasonCode.MAX_DAILY_LOSS, until=_next_trading_day(order, market, now)
            )

    violations.extend(_rate_violations(fingerprint, state, limits, now))

    return Decision(
        accepted=not violations,
        violations=tuple(violations),
        pre_net_delta=pre_delta,
        post_net_delta=post_delta,
        risk_reducing=reducing,
        transition=transition,
        fingerprint=fingerprint,
        evaluated_at=now,
        delta_model=book.delta_model,
        working_delta=book.working_delta,
        working_orders=book.working_orders,
    )


def _daily_loss(book: Book) -> Decimal | None:
    """Today's loss as a positive amount (a gain is negative); None when the P&L is not a number."""
    try:
        return -(to_money(book.realized_pnl_today) + to_money(book.unrealized_pnl))
    except (ValueError, ArithmeticError, TypeError):
        return None


def _next_trading_day(order: ProposedOrder, market: Market, now: datetime) -> datetime | None:
    """When the daily loss REDUCING state ends: the latest next-day open among the order's calendars."""
    starts: list[datetime] = []
    for calendar in {leg.calendar for leg in order.legs if leg.calendar is not None}:
        try:
            starts.append(market.next_trading_day_start(calendar, now))
        except UnknownCalendar:
            continue
    return max(starts) if starts else None


# ---------------------------------------------------------------------------------------------
# Circuit breaker


def record_closing_result(
    streak: int, realized_pnl: Decimal | float | int | str, limits: RiskLimits
) -> tuple[int, bool]:
    """Fold one closing result (realized P&L of a closed trade, USD) into the loss streak.

    A loss strictly larger than `breaker_loss_threshold` extends the streak ($500.00 does not
    count, $500.01 does); any other result (a win, a smaller loss, flat) resets it to zero.
    `tripped` is True once the streak reaches `breaker_loss_count`: the service then HALTs the
    client until an owner resets the breaker (streak back to 0).
    """
    loss = -to_money(realized_pnl)
    new_streak = streak + 1 if loss > limits.breaker_loss_threshold else 0
    return new_streak, new_streak >= limits.breaker_loss_count
