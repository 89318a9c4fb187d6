from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from risk.governor import (
    FLOAT_TOLERANCE,
    Book,
    LegQuote,
    ProposedLeg,
    ProposedOrder,
    ReasonCode,
    RecentOrder,
    RiskLimits,
    RiskState,
    StateTransition,
    TradingState,
    evaluate_order,
    is_risk_reducing,
    order_fingerprint,
    record_closing_result,
    to_money,
)
from risk.sessions import MarketHours

CT = ZoneInfo("America/Chicago")
EQUITY = "CME Globex Equity"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=CT)  # a Tuesday morning, market open
FUT = "ES FUT 20261218"
CALL = "ES FOP 20261218 6000 C"
PUT = "ES FOP 20261218 5900 P"

LIMITS = RiskLimits(
    max_net_delta=10.0,
    max_order_contracts=20,
    max_leg_contracts=10,
    max_daily_loss=Decimal("2000.00"),
    max_open_legs=3,
    max_spread_pct=0.10,
    max_quote_age_seconds=10.0,
    max_orders_per_minute=3,
    duplicate_window_seconds=30.0,
)

MARKET = MarketHours(today=date(2026, 11, 24))
SIMULATED = MarketHours(always_open=True, today=date(2026, 11, 24))


def quote(bid: float | None = 99.5, ask: float | None = 100.5, age: float | None = 1.0) -> LegQuote:
    return LegQuote(bid=bid, ask=ask, time=None if age is None else NOW - timedelta(seconds=age))


def fut(qty: int, key: str = FUT, **kw: object) -> ProposedLeg:
    fields: dict[str, object] = dict(
        instrument_key=key, calendar=EQUITY, quantity=qty, delta_per_contract=1.0, is_option=False,
        quote=quote(),
    )
    fields.update(kw)
    return ProposedLeg(**fields)  # type: ignore[arg-type]


def opt(qty: int, key: str = CALL, delta: float = 0.5, **kw: object) -> ProposedLeg:
    return fut(qty, key=key, delta_per_contract=delta, is_option=True, **kw)


def order(*legs: ProposedLeg) -> ProposedOrder:
    return ProposedOrder(legs=legs)


def book(
    positions: Mapping[str, int] | None = None,
    net_delta: float = 0.0,
    realized: str = "0",
    unrealized: str = "0",
    connected: bool = True,
) -> Book:
    return Book(
        positions=dict(positions or {}),
        net_delta=net_delta,
        realized_pnl_today=Decimal(realized),
        unrealized_pnl=Decimal(unrealized),
        broker_connected=connected,
    )


def evaluate(
    o: ProposedOrder,
    b: Book | None = None,
    *,
    limits: RiskLimits = LIMITS,
    state: RiskState | None = None,
    market: MarketHours = MARKET,
    now: datetime = NOW,
):
    return evaluate_order(o, b or book(), limits, state or RiskState(), market, now)


def codes(decision) -> set[ReasonCode]:
    return set(decision.codes)


def test_a_plain_order_passes() -> None:
    decision = evaluate(order(fut(2)))
    assert decision.accepted and decision.violations == ()
    assert decision.pre_net_delta == 0.0 and decision.post_net_delta == 2.0
    assert decision.transition is None


# --- max net delta -------------------------------------------------------------------------


def test_the_net_delta_limit_names_the_delta_model_it_is_counted_in() -> None:
    held = replace(book(net_delta=9.0), delta_model="sticky_moneyness")
    decision = evaluate(order(fut(2)), held)
    assert decision.delta_model == "sticky_moneyness" and decision.as_dict()["delta_model"] == "sticky_moneyness"
    (violation,) = decision.violations
    assert violation.code is ReasonCode.MAX_NET_DELTA
    assert violation.message.endswith("(sticky_moneyness delta)")


@pytest.mark.parametrize(
    ("pre", "legs", "accepted"),
    [
        (0.0, [fut(10)], True),  # at the limit
        (0.0, [fut(10), fut(1, key="ES FUT 20270319")], False),  # one over
        (-10.0, [fut(-1)], False),  # one over on the short side
        (0.0, [opt(1, delta=0.1), opt(1, key=PUT, delta=0.1), opt(1, key="X", delta=0.1)], True),
        (15.0, [fut(-3)], True),  # a hedge out of a breach: 15 -> 12 passes
        (15.0, [fut(1)], False),  # deeper into the breach
        (15.0, [fut(-30)], False),  # overshoots to -15: |delta| not lowered
        (15.0, [fut(-29)], True),  # overshoots to -14: lowered
    ],
)
def test_max_net_delta(pre: float, legs: list[ProposedLeg], accepted: bool) -> None:
    limits = replace(LIMITS, max_leg_contracts=50, max_order_contracts=50, max_open_legs=10)
    decision = evaluate(order(*legs), book(net_delta=pre), limits=limits)
    assert (ReasonCode.MAX_NET_DELTA not in codes(decision)) is accepted
    assert decision.accepted is accepted


def test_a_delta_at_the_limit_passes_despite_float_rounding() -> None:
    limits = replace(LIMITS, max_net_delta=0.3)
    decision = evaluate(order(opt(1, delta=0.1), opt(1, key=PUT, delta=0.2)), limits=limits)
    assert decision.post_net_delta > 0.3  # 0.30000000000000004
    assert decision.accepted
    assert not evaluate(order(opt(1, delta=0.1), opt(1, key=PUT, delta=0.21)), limits=limits).accepted


def test_option_delta_counts_in_underlying_equivalents() -> None:
    # 10 calls at 0.55 delta, options and future on the same multiplier: +5.5 contracts
    decision = evaluate(order(opt(10, delta=0.55)), book(net_delta=5.0))
    assert math.isclose(decision.post_net_delta, 10.5)
    assert codes(decision) == {ReasonCode.MAX_NET_DELTA}


# --- order and leg size --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantities", "expected"),
    [
        ([10], set()),
        ([11], {ReasonCode.MAX_LEG_SIZE}),
        ([-11], {ReasonCode.MAX_LEG_SIZE}),
        ([10, -10], set()),  # 20 contracts in the order: at the limit
        ([10, -10, 1], {ReasonCode.MAX_ORDER_SIZE}),
        ([11, -10], {ReasonCode.MAX_LEG_SIZE, ReasonCode.MAX_ORDER_SIZE}),
    ],
)
def test_order_and_leg_size(quantities: list[int], expected: set[ReasonCode]) -> None:
    keys = [CALL, PUT, "ES FOP 20261218 6100 C"]
    legs = [opt(q, key=k, delta=0.0) for q, k in zip(quantities, keys, strict=False)]
    assert codes(evaluate(order(*legs))) == expected


def test_an_order_with_no_legs_or_a_zero_leg_is_invalid() -> None:
    assert ReasonCode.INVALID_ORDER in codes(evaluate(order()))
    assert ReasonCode.INVALID_ORDER in codes(evaluate(order(fut(0))))


# --- max daily loss ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("realized", "unrealized", "breached"),
    [
        ("-1500.00", "-500.00", False),  # exactly the limit
        ("-1500.00", "-500.01", True),  # one cent over
        ("-2500.00", "600.00", False),  # unrealized gains offset
        ("1000.00", "-3000.01", True),
    ],
)
def test_max_daily_loss_boundary(realized: str, unrealized: str, breached: bool) -> None:
    decision = evaluate(order(fut(1)), book(realized=realized, unrealized=unrealized))
    assert (ReasonCode.MAX_DAILY_LOSS in codes(decision)) is breached
    if breached:
        assert decision.transition == StateTransition(
            TradingState.REDUCING,
            ReasonCode.MAX_DAILY_LOSS,
            until=datetime(2026, 11, 24, 17, 0, tzinfo=CT),
        )
    else:
        assert decision.transition is None


def test_beyond_the_daily_loss_only_reducing_orders_pass() -> None:
    losing = book({FUT: 5, CALL: 2}, net_delta=6.0, realized="-2500")
    closing = evaluate(order(fut(-2)), losing)
    assert closing.accepted and closing.risk_reducing
    assert closing.transition is not None and closing.transition.to_state is TradingState.REDUCING
    adding = evaluate(order(fut(1)), losing)
    assert codes(adding) == {ReasonCode.MAX_DAILY_LOSS}


def test_unknown_pnl_fails_closed() -> None:
    decision = evaluate(order(fut(1)), book(realized="NaN"))
    assert codes(decision) == {ReasonCode.MAX_DAILY_LOSS}


# --- open legs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("positions", "legs", "accepted"),
    [
        ({FUT: 1, CALL: 1}, [opt(1, key=PUT)], True),  # third leg: at the limit
        ({FUT: 1, CALL: 1, PUT: 1}, [opt(1, key="ES FOP 20261218 6100 C")], False),  # fourth
        ({FUT: 1, CALL: 1, PUT: 1}, [opt(1, key=CALL)], True),  # adds to an existing leg
        ({FUT: 1, CALL: 1, PUT: 1, "Z": 0}, [opt(1, key="Z")], False),  # a zero position is not open
        ({FUT: 1, CALL: 1, PUT: 1, "Z": 1}, [opt(-1, key="Z")], True),  # over the limit, closing one
        ({FUT: 1, CALL: 1, PUT: 1, "Y": 1, "Z": 1}, [opt(-1, key="Z")], True),  # still over, but fewer
        ({FUT: 1, CALL: 1, PUT: 1, "Z": 1}, [opt(1, key="Z")], False),  # over the limit, not reducing
        ({FUT: 1, CALL: 1, PUT: 1}, [opt(-1, key=CALL), opt(1, key="W")], True),  # swaps one leg for another
    ],
)
def test_max_open_legs(positions: dict[str, int], legs: list[ProposedLeg], accepted: bool) -> None:
    decision = evaluate(order(*legs), book(positions))
    assert (ReasonCode.MAX_OPEN_LEGS not in codes(decision)) is accepted


# --- market hours --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "open_"),
    [
        (datetime(2026, 11, 24, 15, 59, tzinfo=CT), True),
        (datetime(2026, 11, 24, 16, 30, tzinfo=CT), False),  # weekday maintenance break
        (datetime(2026, 11, 26, 11, 59, tzinfo=CT), True),  # Thanksgiving before the halt
        (datetime(2026, 11, 26, 12, 0, tzinfo=CT), False),
        (datetime(2026, 11, 29, 16, 59, tzinfo=CT), False),  # Sunday before the open
        (datetime(2026, 11, 29, 17, 0, tzinfo=CT), True),
        (datetime(2026, 11, 27, 12, 15, tzinfo=CT), False),
    ],
)
def test_market_hours(now: datetime, open_: bool) -> None:
    o = order(fut(1, quote=LegQuote(99.5, 100.5, now)), opt(1, quote=LegQuote(9.5, 10.5, now)))
    decision = evaluate(o, now=now)
    assert decision.accepted is open_
    # one violation per closed calendar, not per leg
    assert decision.codes.count(ReasonCode.MARKET_CLOSED) == (0 if open_ else 1)


def test_friday_close() -> None:
    friday_close = datetime(2026, 11, 20, 16, 0, tzinfo=CT)
    decision = evaluate(order(fut(1, quote=LegQuote(99.5, 100.5, friday_close))), now=friday_close)
    assert codes(decision) == {ReasonCode.MARKET_CLOSED}


def test_simulated_market_is_always_open() -> None:
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=CT)
    decision = evaluate(order(fut(1, quote=LegQuote(99.5, 100.5, saturday))), market=SIMULATED, now=saturday)
    assert decision.accepted


# --- quotes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leg_quote", "expected"),
    [
        (quote(9.5, 10.5), set()),  # 10 % of mid: at the limit
        (quote(9.49, 10.5), {ReasonCode.SPREAD_TOO_WIDE}),
        (quote(0.0, 0.05), {ReasonCode.SPREAD_TOO_WIDE}),  # no bid: 200 % of mid
        (quote(None, 10.5), {ReasonCode.NO_TWO_SIDED_QUOTE}),
        (quote(9.5, None), {ReasonCode.NO_TWO_SIDED_QUOTE}),
        (quote(10.5, 9.5), {ReasonCode.NO_TWO_SIDED_QUOTE}),  # crossed
        (quote(float("nan"), 9.5), {ReasonCode.NO_TWO_SIDED_QUOTE}),
        (quote(9.5, 10.5, age=10.0), set()),  # exactly the staleness limit
        (quote(9.5, 10.5, age=10.001), {ReasonCode.STALE_QUOTE}),
        (quote(9.5, 10.5, age=None), {ReasonCode.STALE_QUOTE}),
        (LegQuote(9.5, 10.5, NOW.replace(tzinfo=None)), {ReasonCode.STALE_QUOTE}),
        (quote(None, None, age=60), {ReasonCode.STALE_QUOTE, ReasonCode.NO_TWO_SIDED_QUOTE}),
        (None, {ReasonCode.MISSING_QUOTE}),
    ],
)
def test_quote_guards(leg_quote: LegQuote | None, expected: set[ReasonCode]) -> None:
    assert codes(evaluate(order(opt(1, quote=leg_quote)))) == expected


@pytest.mark.parametrize(
    ("held", "qty", "leg_quote", "expected"),
    [
        (-2, 2, quote(None, 0.05), set()),  # buying back a short with no bid left, at its ask
        (-2, 2, quote(0.0, 0.05), set()),  # 200 % of mid, but closing
        (-2, 2, quote(0.05, None), {ReasonCode.NO_TWO_SIDED_QUOTE}),  # nothing to buy at
        (2, -2, quote(None, 0.05), {ReasonCode.NO_TWO_SIDED_QUOTE}),  # selling a long needs a bid
        (-2, 3, quote(None, 0.05), {ReasonCode.NO_TWO_SIDED_QUOTE}),  # crossing through zero opens risk
        (0, 2, quote(0.0, 0.05), {ReasonCode.SPREAD_TOO_WIDE}),  # opening: the guard holds
    ],
)
def test_a_closing_leg_needs_only_the_side_it_trades_on(held, qty, leg_quote, expected) -> None:
    decision = evaluate(order(opt(qty, quote=leg_quote)), book({CALL: held}))
    assert codes(decision) & {ReasonCode.NO_TWO_SIDED_QUOTE, ReasonCode.SPREAD_TOO_WIDE} == expected


# --- unknown instruments, broker link ------------------------------------------------------


@pytest.mark.parametrize(
    "leg",
    [
        opt(1, delta=None),
        opt(1, delta=float("nan")),
        opt(1, calendar=None),
        opt(1, calendar="Nowhere Exchange"),
    ],
)
def test_unknown_instrument_fails_closed(leg: ProposedLeg) -> None:
    decision = evaluate(order(leg))
    assert codes(decision) == {ReasonCode.UNKNOWN_INSTRUMENT}
    assert not decision.risk_reducing


def test_an_unknown_calendar_is_reported_per_leg_and_never_as_closed() -> None:
    o = order(fut(1, calendar="Nowhere Exchange"), opt(1, calendar="Nowhere Exchange"))
    assert evaluate(o).codes == (ReasonCode.UNKNOWN_INSTRUMENT, ReasonCode.UNKNOWN_INSTRUMENT)


def test_broker_link_down_rejects() -> None:
    assert codes(evaluate(order(fut(1)), book(connected=False))) == {ReasonCode.BROKER_UNAVAILABLE}


def test_unknown_book_delta_fails_closed() -> None:
    assert codes(evaluate(order(fut(1)), book(net_delta=float("nan")))) == {ReasonCode.MAX_NET_DELTA}


# --- order rate and duplicates -------------------------------------------------------------


def recent(seconds_ago: float, fingerprint: str = "other") -> RecentOrder:
    return RecentOrder(at=NOW - timedelta(seconds=seconds_ago), fingerprint=fingerprint)


@pytest.mark.parametrize(
    ("ages", "expected"),
    [
        ([5, 20], set()),  # third order in the minute: at the limit of 3
        ([5, 20, 40], {ReasonCode.ORDER_RATE}),
        ([5, 20, 60], set()),  # one minute ago has left the window
        ([], set()),
    ],
)
def test_order_rate(ages: list[float], expected: set[ReasonCode]) -> None:
    state = RiskState(recent_orders=tuple(recent(a) for a in ages))
    assert codes(evaluate(order(fut(1)), state=state)) == expected


@pytest.mark.parametrize(
    ("previous", "seconds_ago", "duplicate"),
    [
        (order(fut(1)), 29.9, True),
        (order(fut(1)), 30.0, False),  # the window has passed
        (order(fut(2)), 1.0, False),  # another quantity is another order
        (order(fut(1, key="ES FUT 20270319")), 1.0, False),
    ],
)
def test_duplicate_order(previous: ProposedOrder, seconds_ago: float, duplicate: bool) -> None:
    state = RiskState(recent_orders=(recent(seconds_ago, order_fingerprint(previous)),))
    assert (ReasonCode.DUPLICATE_ORDER in codes(evaluate(order(fut(1)), state=state))) is duplicate


def test_fingerprint_ignores_leg_order_and_nets_repeated_instruments() -> None:
    assert order_fingerprint(order(fut(1), opt(-2))) == order_fingerprint(order(opt(-2), fut(1)))
    assert order_fingerprint(order(fut(1), fut(1))) == order_fingerprint(order(fut(2)))
    assert order_fingerprint(order(fut(1))) != order_fingerprint(order(fut(-1)))


# --- trading states ------------------------------------------------------------------------


def test_halted_blocks_everything() -> None:
    state = RiskState(trading_state=TradingState.HALTED, reason="owner halt")
    positions = book({FUT: 5}, net_delta=5.0)
    for o in (order(fut(1)), order(fut(-1)), order(fut(-5))):
        assert ReasonCode.TRADING_HALTED in codes(evaluate(o, positions, state=state))


def test_emergency_halt_blocks_everything() -> None:
    state = RiskState(emergency_halt=True, emergency_reason="exchange incident")
    decision = evaluate(order(fut(-1)), book({FUT: 5}, net_delta=5.0), state=state)
    assert codes(decision) == {ReasonCode.EMERGENCY_HALT}
    assert "exchange incident" in decision.violations[0].message


def test_reducing_lets_a_reducing_order_pass_and_blocks_an_increasing_one() -> None:
    state = RiskState(trading_state=TradingState.REDUCING, reason="owner")
    positions = book({FUT: 5, CALL: 4}, net_delta=7.0)
    assert evaluate(order(fut(-2)), positions, state=state).accepted
    assert evaluate(order(opt(-4)), positions, state=state).accepted
    assert codes(evaluate(order(fut(1)), positions, state=state)) == {ReasonCode.REDUCING_ONLY}
    assert codes(evaluate(order(opt(1, key=PUT, delta=-0.5)), positions, state=state)) == {
        ReasonCode.REDUCING_ONLY
    }


def test_a_daily_loss_reducing_state_ends_with_its_trading_day() -> None:
    until = datetime(2026, 11, 24, 17, 0, tzinfo=CT)
    state = RiskState(trading_state=TradingState.REDUCING, reason="max_daily_loss", state_until=until)
    before = evaluate(order(fut(1)), state=state, now=until - timedelta(minutes=61))
    assert ReasonCode.REDUCING_ONLY in codes(before) and before.transition is None
    after_time = until + timedelta(minutes=1)
    after = evaluate(order(fut(1, quote=LegQuote(99.5, 100.5, after_time))), state=state, now=after_time)
    assert after.accepted
    assert after.transition == StateTransition(TradingState.ACTIVE, ReasonCode.TRADING_DAY_ROLLED)


def test_a_tripped_breaker_rejects_and_halts() -> None:
    decision = evaluate(order(fut(1)), state=RiskState(loss_streak=3))
    assert codes(decision) == {ReasonCode.CIRCUIT_BREAKER}
    assert decision.transition == StateTransition(TradingState.HALTED, ReasonCode.CIRCUIT_BREAKER)
    already = evaluate(order(fut(1)), state=RiskState(TradingState.HALTED, "circuit_breaker", loss_streak=3))
    assert codes(already) == {ReasonCode.TRADING_HALTED, ReasonCode.CIRCUIT_BREAKER}
    assert already.transition is None


def test_the_breaker_transition_wins_over_reducing() -> None:
    decision = evaluate(order(fut(1)), book(realized="-5000"), state=RiskState(loss_streak=3))
    assert decision.transition is not None and decision.transition.to_state is TradingState.HALTED


def test_all_violations_are_reported_together() -> None:
    closed = datetime(2026, 11, 24, 16, 30, tzinfo=CT)
    state = RiskState(
        trading_state=TradingState.REDUCING,
        emergency_halt=True,
        loss_streak=3,
        recent_orders=tuple(RecentOrder(closed - timedelta(seconds=s), "x") for s in (1, 2, 3)),
    )
    o = order(
        fut(11, quote=LegQuote(90.0, 110.0, closed - timedelta(seconds=30))),
        opt(10, key=PUT, quote=None),
        opt(1, key="ES FOP 20261218 6100 C", delta=None),
    )
    losing = book({CALL: 1, "B": 1, "C": 1}, realized="-9000", connected=False)
    decision = evaluate(o, losing, state=state, now=closed)
    assert codes(decision) == {
        ReasonCode.EMERGENCY_HALT,
        ReasonCode.CIRCUIT_BREAKER,
        ReasonCode.BROKER_UNAVAILABLE,
        ReasonCode.MARKET_CLOSED,
        ReasonCode.STALE_QUOTE,
        ReasonCode.SPREAD_TOO_WIDE,
        ReasonCode.MISSING_QUOTE,
        ReasonCode.UNKNOWN_INSTRUMENT,
        ReasonCode.MAX_LEG_SIZE,
        ReasonCode.MAX_ORDER_SIZE,
        ReasonCode.MAX_OPEN_LEGS,
        ReasonCode.REDUCING_ONLY,
        ReasonCode.MAX_DAILY_LOSS,
        ReasonCode.ORDER_RATE,
    }
    assert not decision.accepted
    payload = json.loads(json.dumps(decision.as_dict()))
    assert {v["code"] for v in payload["violations"]} == {c.value for c in decision.codes}
    loss = next(v for v in payload["violations"] if v["code"] == "max_daily_loss")
    assert (loss["limit"], loss["value"]) == ("2000.00", "9000.00")


# --- risk-reducing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("positions", "legs", "pre", "post", "reducing"),
    [
        ({FUT: 5}, [fut(-5)], 5.0, 0.0, True),  # closes fully
        ({FUT: 5}, [fut(-6)], 5.0, -1.0, True),  # flips a future while lowering |delta|: a hedge
        ({CALL: 4}, [opt(-5)], 2.0, -0.5, False),  # flips an option position
        ({CALL: 4}, [opt(-4)], 2.0, 0.0, True),
        # closes the hedge: a pure reduction even though |delta| rises
        ({CALL: 4, FUT: -1}, [fut(1)], 1.0, 2.0, True),
        ({CALL: 4}, [fut(-1)], 2.0, 1.0, True),  # new futures hedge lowers |delta|
        ({CALL: 4}, [fut(-5)], 2.0, -3.0, False),  # over-hedges: |delta| rises
        ({CALL: 4}, [opt(1, key=PUT, delta=-0.5)], 2.0, 1.5, False),  # opens an option leg
        ({CALL: 4}, [opt(1, delta=0.5)], 2.0, 2.5, False),
        ({}, [fut(1)], 0.0, 1.0, False),
        ({FUT: 5}, [], 5.0, 5.0, False),
        ({CALL: 4, PUT: -2}, [opt(-2), opt(2, key=PUT, delta=-0.5)], 1.0, 0.0, True),  # closes both
    ],
)
def test_risk_reducing_definition(
    positions: dict[str, int], legs: list[ProposedLeg], pre: float, post: float, reducing: bool
) -> None:
    assert is_risk_reducing(order(*legs), positions, pre, post) is reducing


# --- circuit breaker -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pnl", "counts"),
    [
        (Decimal("-500.00"), False),
        (Decimal("-500.01"), True),
        (-500.0, False),
        (-500.01, True),
        ("-500.005", False),  # rounds half-even to 500.00
        (0, False),
        (250.0, False),
        (-499.99, False),
        (-10_000, True),
    ],
)
def test_a_loss_counts_only_above_the_threshold(pnl: Decimal | float | str, counts: bool) -> None:
    assert record_closing_result(1, pnl, LIMITS) == ((2, False) if counts else (0, False))


@pytest.mark.parametrize(
    ("results", "tripped_at"),
    [
        (["-600", "100", "-600", "-600"], None),  # loss, win, loss, loss does not trip
        (["-600", "-600", "-600"], 2),  # three losses over $500 trip
        (["-600", "-500", "-600", "-600"], None),  # exactly $500 resets
        (["-600", "-600", "-600", "-600"], 2),  # stays tripped
        (["-600", "-600", "0", "-600"], None),  # flat resets
    ],
)
def test_circuit_breaker_sequences(results: list[str], tripped_at: int | None) -> None:
    streak = 0
    first_trip = None
    for i, pnl in enumerate(results):
        streak, tripped = record_closing_result(streak, pnl, LIMITS)
        if tripped and first_trip is None:
            first_trip = i
    assert first_trip == tripped_at


def test_breaker_count_and_threshold_are_configurable() -> None:
    limits = replace(LIMITS, breaker_loss_count=2, breaker_loss_threshold=Decimal("100"))
    assert record_closing_result(1, "-100.01", limits) == (2, True)
    assert record_closing_result(1, "-100.00", limits) == (0, False)


def test_to_money_rounds_to_the_cent() -> None:
    assert to_money(500.01) == Decimal("500.01")
    assert to_money(0.1 + 0.2) == Decimal("0.30")
    assert to_money("1.005") == Decimal("1.00")
    with pytest.raises(ValueError):
        to_money(float("inf"))


@pytest.mark.parametrize(
    "bad",
    [
        {"max_net_delta": -1.0},
        {"max_net_delta": float("nan")},
        {"max_order_contracts": 0},
        {"max_leg_contracts": 2.5},
        {"max_daily_loss": -5},
        {"max_daily_loss": Decimal("-1")},
        {"breaker_loss_count": True},
        {"max_quote_age_seconds": -1},
    ],
)
def test_limits_refuse_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RiskLimits(**bad)  # type: ignore[arg-type]


def test_defaults_are_valid_and_the_breaker_defaults_match_the_design() -> None:
    limits = RiskLimits()
    assert limits.breaker_loss_count == 3 and limits.breaker_loss_threshold == Decimal("500.00")


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        evaluate(order(fut(1)), now=datetime(2026, 11, 24, 10, 0))


# --- properties ----------------------------------------------------------------------------

POOL = (
    (FUT, False, 1.0),
    ("ES FUT 20270319", False, 1.0),
    (CALL, True, 0.55),
    (PUT, True, -0.45),
    ("ES FOP 20261218 6100 C", True, 0.3),
    ("ES FOP 20261218 5800 P", True, -0.2),
    ("ES FOP 20270319 6000 C", True, 0.5),
)
DELTAS = {key: delta for key, _, delta in POOL}

positions_st = st.dictionaries(
    st.sampled_from([k for k, _, _ in POOL]), st.integers(-15, 15), max_size=len(POOL)
)
leg_st = st.builds(
    lambda spec, qty: ProposedLeg(spec[0], EQUITY, qty, spec[2], spec[1], quote()),
    st.sampled_from(POOL),
    st.integers(-8, 8).filter(bool),
)
# Limits around the sizes drawn above, so that orders land on both sides of every limit.
limits_st = st.builds(
    RiskLimits,
    max_net_delta=st.sampled_from([0.0, 2.0, 5.0, 10.0, 25.0]),
    max_order_contracts=st.integers(1, 30),
    max_leg_contracts=st.integers(1, 14),
    max_daily_loss=st.sampled_from([Decimal("0"), Decimal("500"), Decimal("2000")]),
    max_open_legs=st.integers(2, 7),
)
state_st = st.builds(
    RiskState, trading_state=st.sampled_from([TradingState.ACTIVE, TradingState.ACTIVE, TradingState.REDUCING])
)
pnl_st = st.decimals(min_value=-1500, max_value=3000, places=2)


def open_count(positions: Mapping[str, int]) -> int:
    return sum(1 for q in positions.values() if q)


@settings(max_examples=800, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    positions=positions_st,
    legs=st.lists(leg_st, min_size=1, max_size=3),
    limits=limits_st,
    state=state_st,
    realized=pnl_st,
    unrealized=pnl_st,
)
def test_accepted_orders_never_leave_the_book_beyond_a_limit_they_did_not_reduce(
    positions: dict[str, int],
    legs: list[ProposedLeg],
    limits: RiskLimits,
    state: RiskState,
    realized: Decimal,
    unrealized: Decimal,
) -> None:
    pre = sum(q * DELTAS[k] for k, q in positions.items())
    b = Book(positions, pre, realized, unrealized, True)
    o = ProposedOrder(tuple(legs))
    decision = evaluate_order(o, b, limits, state, SIMULATED, NOW)

    after = dict(positions)
    for leg in legs:
        after[leg.instrument_key] = after.get(leg.instrument_key, 0) + leg.quantity
    post = sum(q * DELTAS[k] for k, q in after.items())
    assert math.isclose(decision.post_net_delta, post, abs_tol=1e-9)

    if decision.accepted:
        assert abs(post) <= limits.max_net_delta + FLOAT_TOLERANCE or abs(post) < abs(pre)
        assert open_count(after) <= limits.max_open_legs or open_count(after) < open_count(positions)
        assert sum(abs(leg.quantity) for leg in legs) <= limits.max_order_contracts
        assert all(abs(leg.quantity) <= limits.max_leg_contracts for leg in legs)
        if state.trading_state is TradingState.REDUCING or -(realized + unrealized) > limits.max_daily_loss:
            assert decision.risk_reducing
    # deterministic: the same inputs, rebuilt, give the same decision
    again = evaluate_order(
        ProposedOrder(tuple(replace(leg) for leg in legs)), replace(b, positions=dict(positions)),
        limits, state, SIMULATED, NOW,
    )
    assert again == decision


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(results=st.lists(st.decimals(min_value=-2000, max_value=2000, places=2), max_size=12))
def test_the_streak_counts_trailing_losses_over_the_threshold(results: list[Decimal]) -> None:
    streak = 0
    for pnl in results:
        streak, tripped = record_closing_result(streak, pnl, LIMITS)
        assert tripped is (streak >= LIMITS.breaker_loss_count)
    trailing = 0
    for pnl in reversed(results):
        if -pnl <= Decimal("500.00"):
            break
        trailing += 1
    assert streak == trailing


# --- working orders ------------------------------------------------------------------------
# A working order (sent, not finished) may fill at any moment: its remaining quantity counts as held.


def working(positions: Mapping[str, int] | None = None, net_delta: float = 0.0, *,
            working_positions: Mapping[str, int], working_delta: float, **kw: object) -> Book:
    return replace(book(positions, net_delta, **kw), working_positions=dict(working_positions),  # type: ignore[arg-type]
                   working_delta=working_delta, working_orders=1)


def test_the_net_delta_limit_counts_working_orders_before_and_after() -> None:
    # +6 held and a working BUY 3: a BUY 2 would leave +11 once everything fills.
    decision = evaluate(order(fut(2)), working({FUT: 6}, 6.0, working_positions={FUT: 3}, working_delta=3.0))
    assert codes(decision) == {ReasonCode.MAX_NET_DELTA}
    assert decision.pre_net_delta == 9.0 and decision.post_net_delta == 11.0
    assert decision.working_delta == 3.0 and decision.as_dict()["working_orders"] == 1
    (violation,) = decision.violations
    assert "of which +3.00 in working orders" in violation.message
    # Without the working order the same BUY 2 fits.
    assert evaluate(order(fut(2)), book({FUT: 6}, 6.0)).accepted


def test_a_working_hedge_means_the_same_hedge_again_no_longer_reduces_delta() -> None:
    # +12 held (over the limit) and a working SELL 5 hedge: another SELL 5 still lowers |delta|
    # (7 -> 2) and passes; but a BUY that the working SELL makes worse does not.
    held = working({FUT: 12}, 12.0, working_positions={FUT: -5}, working_delta=-5.0)
    assert evaluate(order(fut(-5)), held).accepted
    assert ReasonCode.MAX_NET_DELTA not in codes(evaluate(order(fut(-7)), held))  # |7 - 7| = 0
    flipped = evaluate(order(fut(-18)), held)
    assert ReasonCode.MAX_NET_DELTA in codes(flipped) and flipped.post_net_delta == -11.0


def test_a_working_orders_unknown_delta_fails_closed() -> None:
    decision = evaluate(order(fut(1)), working(working_positions={CALL: 1}, working_delta=math.nan))
    assert ReasonCode.MAX_NET_DELTA in codes(decision)
    assert any("working orders' delta is unknown" in v.message for v in decision.violations)


def test_open_legs_count_the_legs_working_orders_open() -> None:
    # Two legs held, a working order opening a third: a fourth leg breaks the limit of 3.
    held = working({FUT: 1, CALL: -1}, 0.5, working_positions={PUT: 2}, working_delta=-0.6)
    decision = evaluate(order(fut(1, key="ES FUT 20270319")), held)
    assert codes(decision) == {ReasonCode.MAX_OPEN_LEGS}
    assert "working orders included" in decision.violations[0].message
    # A working order that closes a leg frees its place.
    closing = working({FUT: 1, CALL: -1, PUT: 2}, 0.0, working_positions={PUT: -2}, working_delta=0.6)
    assert evaluate(order(fut(1, key="ES FUT 20270319")), closing).accepted


def test_contracts_working_on_the_same_side_count_in_the_size_limits() -> None:
    # The leg limit is 10: a working SELL 6 and a new SELL 5 are 11 contracts working at once.
    held = working({FUT: 20}, 20.0, working_positions={FUT: -6}, working_delta=-6.0)
    decision = evaluate(order(fut(-5)), held)
    assert codes(decision) == {ReasonCode.MAX_LEG_SIZE}
    assert decision.violations[0].value == 11
    assert "6 already working on the same side" in decision.violations[0].message
    assert evaluate(order(fut(-4)), held).accepted
    # A working order on the other side does not add to the size.
    assert evaluate(order(fut(5)), working({FUT: 20}, 20.0, working_positions={FUT: -6}, working_delta=-6.0,
                                          )).codes == (ReasonCode.MAX_NET_DELTA,)
    order_limit = replace(LIMITS, max_order_contracts=8)
    combo = evaluate(order(opt(-3, key=CALL), opt(-3, key=PUT, delta=-0.4)),
                     working(working_positions={CALL: -3}, working_delta=-1.5), limits=order_limit)
    assert codes(combo) == {ReasonCode.MAX_ORDER_SIZE} and combo.violations[0].value == 9


def test_what_an_order_closes_counts_the_working_orders_that_close_it_first() -> None:
    # Long 5, a working SELL 5 closes them: another SELL 5 opens a short, it does not reduce.
    state = RiskState(trading_state=TradingState.REDUCING, reason="max_daily_loss")
    held = working({FUT: 5}, 5.0, working_positions={FUT: -5}, working_delta=-5.0)
    assert ReasonCode.REDUCING_ONLY in codes(evaluate(order(fut(-5)), held, state=state))
    assert evaluate(order(fut(-5)), book({FUT: 5}, 5.0), state=state).accepted
