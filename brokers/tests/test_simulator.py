from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from brokers.domain import Instrument, OrderLeg, OrderRequest
from brokers.products import PRODUCTS, expiry_moment
from brokers.simulator import (
    MARKET_PARAMS,
    SimClock,
    SimConfig,
    SimulatedMarket,
    SimulationError,
    third_friday,
)
from risk.greeks import black76
from risk.sessions import is_open

UTC = UTC
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)  # a Monday
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def make_market(*, seed: int = 7, start: datetime = START, **config) -> SimulatedMarket:
    return SimulatedMarket(SimConfig(seed=seed, anchor=ANCHOR, **config), clock=SimClock.manual(start))


def front(market: SimulatedMarket, symbol: str = "ES") -> Instrument:
    return market.lookup(symbol=symbol, sec_type="FUT")


def order(cid: str, *legs: tuple[Instrument, str, int], order_type: str = "MKT", limit: float | None = None,
          tif: str = "DAY") -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        legs=tuple(OrderLeg(instrument, side, quantity) for instrument, side, quantity in legs),
        order_type=order_type,
        limit_price=limit,
        time_in_force=tif,
    )


def option(
    market: SimulatedMarket, future: Instrument, expiry: date, strike: float, right: str
) -> Instrument:
    return market.lookup(symbol=future.symbol, sec_type="FOP", expiry=expiry, strike=strike, right=right)


def atm_strike(market: SimulatedMarket, future: Instrument) -> float:
    step = MARKET_PARAMS[future.symbol].strike_step
    return round(market.quotes([future])[0].mid / step) * step


def run_scenario(market: SimulatedMarket) -> dict:
    """A fixed script of orders and clock moves; returns everything observable."""
    es = front(market)
    call = option(market, es, es.expiry, atm_strike(market, es) + 100, "C")
    put = option(market, es, es.expiry, atm_strike(market, es) - 100, "P")
    market.place_order(order("a", (es, "BUY", 3)))
    market.clock.advance(600)
    market.place_order(order("b", (call, "BUY", 5), (put, "SELL", 5)))
    bid = market.quotes([es])[0].bid
    market.place_order(order("c", (es, "BUY", 2), order_type="LMT", limit=bid - 2.0, tif="GTC"))
    market.clock.advance(7200)
    market.place_order(order("d", (es, "SELL", 4)))
    market.clock.advance(86_400)
    market.place_order(order("e", (call, "SELL", 5), (put, "BUY", 5)))
    market.clock.advance(3600)
    return {
        "fills": market.to_state()["fills"],
        "positions": market.to_state()["positions"],
        "summary": market.account_summary(),
        "orders": [market.order_status(cid) for cid in "abcde"],
    }


# --- clock ----------------------------------------------------------------------------------


def test_manual_clock_moves_forward_only():
    clock = SimClock.manual(START)
    assert clock.advance(90) == START + timedelta(seconds=90)
    assert clock.jump(START + timedelta(days=2)) == START + timedelta(days=2)
    with pytest.raises(ValueError):
        clock.jump(START)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        SimClock.manual(datetime(2026, 1, 5))


def test_wall_clock_follows_time_and_cannot_be_moved():
    clock = SimClock.wall()
    before = datetime.now(UTC)
    assert before <= clock.now() <= datetime.now(UTC)
    with pytest.raises(ValueError):
        clock.advance(1)
    assert SimClock.from_state(clock.to_state()).is_manual is False
    manual = SimClock.manual(START)
    assert SimClock.from_state(json.loads(json.dumps(manual.to_state()))).now() == START


# --- the market -----------------------------------------------------------------------------


def test_listed_futures_are_quarterly_third_fridays():
    market = make_market()
    futures = market.listed_futures("ES")
    # June 2026's third Friday is Juneteenth, an exchange holiday: trading ends the Thursday before.
    assert [f.expiry for f in futures] == [third_friday(2026, 3), date(2026, 6, 18), third_friday(2026, 9),
                                           third_friday(2026, 12)]
    assert all(f.expiry.weekday() in (3, 4) and 15 <= f.expiry.day <= 21 for f in futures)
    assert futures[0].multiplier == 50.0 and futures[0].exchange == "CME"
    assert front(market, "CL").multiplier == 1000.0 and front(market, "GC").multiplier == 100.0
    assert front(market, "NQ").multiplier == 20.0
    market.clock.jump(expiry_moment(futures[0]))
    assert front(market).expiry == date(2026, 6, 18)
    assert [f.expiry for f in market.listed_futures("ES")][-1] == third_friday(2027, 3)


def test_same_seed_same_orders_give_identical_results():
    first = run_scenario(make_market(seed=11))
    second = run_scenario(make_market(seed=11))
    assert json.dumps(first["fills"]) == json.dumps(second["fills"])
    assert first == second
    assert len(first["fills"]) == 7 and all(s.state == "filled" for s in first["orders"])
    other = run_scenario(make_market(seed=12))
    assert other["fills"] != first["fills"]


def test_quote_frequency_does_not_change_the_path_or_the_fills():
    busy, quiet = make_market(), make_market()
    for market in (busy, quiet):
        es = front(market)
        january_call = option(market, es, third_friday(2026, 1), atm_strike(market, es) + 200, "C")
        market.place_order(order("call", (january_call, "BUY", 1)))
        quote = market.quotes([es])[0]
        # placed far-first, so that fills come in another order than the orders were placed
        for cid, side, limit in [
            ("far-buy", "BUY", quote.ask - 40.0),
            ("far-sell", "SELL", quote.bid + 40.0),
            ("near-buy", "BUY", quote.ask - 3.0),
            ("near-sell", "SELL", quote.bid + 3.0),
        ]:
            market.place_order(order(cid, (es, side, 1), order_type="LMT", limit=limit, tif="GTC"))
    es = front(busy)
    end = START + timedelta(days=12)
    while busy.clock.now() + timedelta(seconds=311) <= end:
        busy.clock.advance(311)  # off the one-minute grid on purpose
        busy.quotes([es])
    busy.clock.jump(end)
    quiet.clock.jump(end)
    assert busy.quotes([es]) == quiet.quotes([es])
    assert busy.to_state() == quiet.to_state()
    fills = quiet.fills_since(START)
    assert [f.time for f in fills] == sorted(f.time for f in fills)
    by_order = [f.client_order_id for f in fills]
    assert by_order.index("far-sell") > by_order.index("near-sell") > by_order.index("near-buy")
    assert "" in by_order  # the January call settled on the way
    assert len(fills) >= 5


def test_prices_are_constant_within_a_step_and_move_between_steps():
    market = make_market()
    es = front(market)
    first = market.quotes([es])[0]
    market.clock.advance(20)
    assert market.quotes([es])[0].bid == first.bid
    mids = []
    for _ in range(30):
        market.clock.advance(60)
        mids.append(market.quotes([es])[0].mid)
    assert len(set(mids)) > 10
    market.clock.jump(START + timedelta(days=30))
    assert market.quotes([es])[0].mid != first.mid


def test_path_is_a_function_of_time_alone():
    late = make_market(start=START + timedelta(days=3))
    early = make_market()
    early.clock.jump(START + timedelta(days=3))
    es = front(early)
    assert early.quotes([es]) == late.quotes([es])


def test_shock_moves_prices_by_the_given_fraction_from_its_time():
    market = make_market()
    es = front(market)
    before = market.quotes([es])[0].mid
    market.shock("ES", -0.10)
    after = market.quotes([es])[0].mid
    assert after == pytest.approx(before * 0.9, abs=0.25)
    nq = front(market, "NQ")
    nq_before = market.quotes([nq])[0].mid
    market.shock("NQ", 0.05, at=START + timedelta(hours=1))
    market.clock.advance(1800)
    half_hour = market.quotes([nq])[0].mid
    assert abs(half_hour / nq_before - 1) < 0.02
    market.clock.advance(1800)
    unshocked = make_market()
    unshocked.clock.jump(market.clock.now())
    assert market.quotes([nq])[0].mid == pytest.approx(unshocked.quotes([nq])[0].mid * 1.05, abs=0.25)
    with pytest.raises(SimulationError):
        market.shock("ES", 0.01, at=START)


def test_vol_shock_raises_option_prices():
    market = make_market()
    es = front(market)
    call = option(market, es, es.expiry, atm_strike(market, es), "C")
    before = market.quotes([call])[0]
    market.shock("ES", 0.0, vol_points=0.05)
    after = market.quotes([call])[0]
    assert after.greeks.implied_vol == pytest.approx(before.greeks.implied_vol + 0.05)
    assert after.bid > before.ask


def test_spreads_widen_on_demand_and_restore():
    market = make_market()
    es, cl = front(market), front(market, "CL")
    call = option(market, es, es.expiry, atm_strike(market, es), "C")
    assert market.quotes([es])[0].ask - market.quotes([es])[0].bid == pytest.approx(0.25)
    normal_option_spread = market.quotes([call])[0].ask - market.quotes([call])[0].bid
    market.set_spread_multiplier("ES", 4)
    wide = market.quotes([es])[0]
    assert wide.ask - wide.bid == pytest.approx(1.0)
    assert market.quotes([call])[0].ask - market.quotes([call])[0].bid > 3 * normal_option_spread
    assert market.quotes([cl])[0].ask - market.quotes([cl])[0].bid == pytest.approx(0.01)
    market.set_spread_multiplier(None, 2)
    assert market.quotes([es])[0].ask - market.quotes([es])[0].bid == pytest.approx(0.5)
    assert market.quotes([cl])[0].ask - market.quotes([cl])[0].bid == pytest.approx(0.02)
    market.set_spread_multiplier(None, 1)
    assert market.quotes([es])[0].ask - market.quotes([es])[0].bid == pytest.approx(0.25)
    with pytest.raises(SimulationError):
        market.set_spread_multiplier("ES", 0.5)


def test_stale_and_one_sided_quote_modes():
    market = make_market()
    es = front(market)
    market.set_quote_mode("ES", "stale")
    frozen = market.quotes([es])[0]
    market.clock.advance(3 * 3600)
    stale = market.quotes([es])[0]
    assert stale.time == START and (stale.bid, stale.ask) == (frozen.bid, frozen.ask)
    market.set_quote_mode("ES", "bid_only")
    one_sided = market.quotes([es])[0]
    assert one_sided.ask is None and one_sided.ask_size == 0 and one_sided.bid is not None
    assert one_sided.mid is None
    status = market.place_order(order("m", (es, "BUY", 1)))
    assert status.state == "rejected" and status.message.startswith("no_liquidity")
    assert market.place_order(order("s", (es, "SELL", 1))).state == "filled"
    market.set_quote_mode(None, "no_quote")
    assert market.quotes([front(market, "GC")])[0].bid is None
    market.set_quote_mode(None, "normal")
    assert market.quotes([es])[0].time == market.clock.now()


def test_option_chain_has_expiries_strikes_around_the_money_and_a_smile():
    market = make_market()
    es = front(market)
    chain = market.option_chain(es)
    expiries = sorted({o.expiry for o in chain})
    assert expiries == [third_friday(2026, 1), third_friday(2026, 2), es.expiry]
    assert {o.underlying_expiry for o in chain} == {es.expiry}
    strikes = sorted({o.strike for o in chain})
    forward = market.quotes([es])[0].mid
    assert strikes[0] < forward < strikes[-1]
    assert len(strikes) == 41 and all(s % 25 == 0 for s in strikes)
    assert abs(strikes[20] - forward) <= 12.5 + 0.25
    # Quarterly options are American (class ES); the serial (Week-3) ones European (class EW3).
    assert all((o.exercise_style, o.trading_class) == ("american", "ES") for o in chain if o.expiry == es.expiry)
    assert all((o.exercise_style, o.trading_class) == ("european", "EW3") for o in chain if o.expiry != es.expiry)

    atm = strikes[20]
    quotes = {(q.instrument.strike, q.instrument.right): q for q in market.quotes(
        [o for o in chain if o.expiry == es.expiry])}
    atm_vol = quotes[(atm, "C")].greeks.implied_vol
    otm_put_vol = quotes[(strikes[4], "P")].greeks.implied_vol
    otm_call_vol = quotes[(strikes[-5], "C")].greeks.implied_vol
    assert otm_put_vol > atm_vol + 0.02 > otm_call_vol + 0.02
    assert all(q.greeks.source == "broker" for q in quotes.values())

    quote = quotes[(atm, "C")]
    step_start = market.clock.now().replace(second=0)
    years = (expiry_moment(es) - step_start).total_seconds() / (365 * 86400)
    theo = float(black76(quote.underlying_price, atm, years, 0.04, quote.greeks.implied_vol, True).price)
    assert quote.bid < theo < quote.ask
    assert quote.greeks.delta == pytest.approx(0.5, abs=0.1)
    for q in quotes.values():
        for price in (q.bid, q.ask):
            assert price is None or abs(price / 0.05 - round(price / 0.05)) < 1e-9


def test_quotes_without_broker_greeks_leave_greeks_to_the_platform():
    market = make_market(broker_greeks=False)
    es = front(market)
    call = option(market, es, es.expiry, atm_strike(market, es), "C")
    assert market.quotes([call])[0].greeks is None
    assert market.model_vol(call) == pytest.approx(0.18, abs=0.01)


def test_lookup_refuses_what_is_not_listed():
    market = make_market()
    es = front(market)
    with pytest.raises(SimulationError) as error:
        market.lookup(symbol="ZZ", sec_type="FUT")
    assert error.value.code == "instrument_not_found"
    with pytest.raises(SimulationError):
        market.lookup(symbol="ES", sec_type="FUT", expiry=date(2026, 3, 19))
    with pytest.raises(SimulationError):
        option(market, es, es.expiry, 6012.5, "C")  # off the 25-point grid
    april = option(market, es, third_friday(2026, 4), 6000, "C")
    assert april.underlying_expiry == date(2026, 6, 18)
    with pytest.raises(SimulationError):
        market.resolve(Instrument("ES", "FOP", third_friday(2026, 4), "CME", 50.0, strike=6000.0, right="C",
                                  underlying_expiry=es.expiry))
    with pytest.raises(SimulationError):
        option(market, es, date(2026, 4, 14), 6000, "C")  # not an expiry day
    with pytest.raises(SimulationError):
        market.lookup(symbol="ES", sec_type="FUT", expiry=third_friday(2028, 3))
    assert option(market, es, third_friday(2026, 2), 6000, "P").underlying_expiry == es.expiry


# --- execution ------------------------------------------------------------------------------


def test_buys_at_the_ask_sells_at_the_bid_plus_slippage_and_commission():
    market = make_market(slippage_ticks=2, commission_per_contract=1.5)
    es = front(market)
    quote = market.quotes([es])[0]
    bought = market.place_order(order("b", (es, "BUY", 4)))
    sold = market.place_order(order("s", (es, "SELL", 1)))
    assert bought.average_fill_price == quote.ask + 0.5
    assert sold.average_fill_price == quote.bid - 0.5
    fills = market.fills_since(START)
    assert [f.commission for f in fills] == [6.0, 1.5]
    assert fills[1].realized_pnl == pytest.approx((quote.bid - 0.5 - (quote.ask + 0.5)) * 50)
    assert market.account_summary().realized_pnl == pytest.approx(fills[1].realized_pnl - 7.5)


def test_partial_fills_rest_for_limits_and_cancel_for_market_orders():
    market = make_market()
    es = front(market)
    market.set_fill_ratio(0.5)
    ask = market.quotes([es])[0].ask
    partial = market.place_order(order("l", (es, "BUY", 10), order_type="LMT", limit=ask + 5))
    assert (partial.state, partial.filled_quantity, partial.remaining_quantity) == ("partially_filled", 5, 5)
    market_order = market.place_order(order("m", (es, "BUY", 3)))
    assert market_order.state == "cancelled"
    assert (market_order.filled_quantity, market_order.remaining_quantity) == (1, 0)
    market.clock.advance(60)
    done = market.order_status("l")
    assert (done.state, done.filled_quantity) == ("filled", 10)
    assert market.positions()[0].quantity == 11


def test_resting_limit_fills_when_the_market_crosses_and_day_orders_expire():
    market = make_market()
    es = front(market)
    ask = market.quotes([es])[0].ask
    resting = market.place_order(order("r", (es, "BUY", 1), order_type="LMT", limit=ask - 1.0, tif="GTC"))
    day = market.place_order(order("d", (es, "BUY", 1), order_type="LMT", limit=ask - 400.0))
    ioc = market.place_order(order("i", (es, "BUY", 1), order_type="LMT", limit=ask - 400.0, tif="IOC"))
    assert resting.state == day.state == "submitted" and ioc.state == "cancelled"
    for _ in range(48):
        market.clock.advance(1800)
        if market.order_status("r").state == "filled":
            break
    filled = market.order_status("r")
    assert filled.state == "filled" and filled.average_fill_price <= ask - 1.0
    fill = market.fills_since(START)[0]
    assert fill.time.second == 0 and fill.time > START
    market.clock.jump(datetime(2026, 1, 6, 21, 0, 1, tzinfo=UTC))
    expired = market.order_status("d")
    assert expired.state == "cancelled" and expired.time == datetime(2026, 1, 5, 21, 0, tzinfo=UTC)
    again = market.place_order(order("g", (es, "SELL", 1), order_type="LMT", limit=ask + 400.0, tif="GTC"))
    assert again.state == "submitted"
    assert market.cancel_order("g").state == "cancelled"
    assert market.cancel_order("g").state == "cancelled"
    with pytest.raises(SimulationError) as error:
        market.cancel_order("nope")
    assert error.value.code == "order_not_found"


def test_a_shock_fills_resting_orders_at_once():
    market = make_market()
    es = front(market)
    bid = market.quotes([es])[0].bid
    market.place_order(order("r", (es, "BUY", 1), order_type="LMT", limit=bid - 50.0, tif="GTC"))
    market.shock("ES", -0.05)
    status = market.order_status("r")
    assert status.state == "filled" and status.time == START
    assert status.average_fill_price <= bid - 50.0


def test_rejection_injection():
    market = make_market()
    es = front(market)
    market.inject_rejections(2, code="margin_insufficient", message="not enough margin")
    first = market.place_order(order("1", (es, "BUY", 1)))
    second = market.place_order(order("2", (es, "BUY", 1)))
    third = market.place_order(order("3", (es, "BUY", 1)))
    assert first.state == second.state == "rejected"
    assert first.message == "margin_insufficient: not enough margin"
    assert third.state == "filled"
    assert market.order_status("1").state == "rejected"
    assert market.place_order(order("1", (es, "BUY", 1))).state == "rejected"
    assert len(market.fills_since(START)) == 1


def test_client_order_ids_are_idempotent():
    market = make_market()
    es = front(market)
    first = market.place_order(order("same", (es, "BUY", 2)))
    market.clock.advance(300)
    again = market.place_order(order("same", (es, "BUY", 2)))
    assert again == first
    assert len(market.fills_since(START)) == 1 and market.positions()[0].quantity == 2
    with pytest.raises(SimulationError) as error:
        market.place_order(order("same", (es, "SELL", 2)))
    assert error.value.code == "duplicate_client_order_id"
    assert market.order_status("unknown") is None


def test_invalid_orders_are_refused_and_not_recorded():
    market = make_market()
    es = front(market)
    cases = [
        order("q", (es, "BUY", 0)),
        order("t", (es, "BUY", 1), order_type="LMT", limit=6000.1),
        order("n", (es, "BUY", 1), order_type="LMT"),
        order("k", (es, "BUY", 1), limit=6000.0),
        order("x", (es, "BUY", 1), (es, "SELL", 1)),
        order("", (es, "BUY", 1)),
    ]
    for case in cases:
        with pytest.raises(SimulationError) as error:
            market.place_order(case)
        assert error.value.code == "invalid_order"
        assert market.order_status(case.client_order_id) is None


def test_combo_fills_every_leg_at_its_touch_atomically():
    market = make_market(slippage_ticks=1)
    es = front(market)
    strike = atm_strike(market, es)
    long_call = option(market, es, es.expiry, strike, "C")
    short_call = option(market, es, es.expiry, strike + 100, "C")
    q_long, q_short = market.quotes([long_call, short_call])
    status = market.place_order(order("v", (long_call, "BUY", 10), (short_call, "SELL", 10)))
    assert (status.state, status.filled_quantity) == ("filled", 10)
    fills = market.fills_since(START)
    # One tick of slippage on the tiered grid: 0.25 above a 5.00 premium, 0.05 at or below it.
    assert [(f.instrument.key, f.side, f.quantity, f.price) for f in fills] == [
        (long_call.key, "BUY", 10, round(q_long.ask + (0.25 if q_long.ask >= 5.0 else 0.05), 2)),
        (short_call.key, "SELL", 10, round(q_short.bid - (0.25 if q_short.bid > 5.0 else 0.05), 2)),
    ]
    assert status.average_fill_price == pytest.approx(fills[0].price - fills[1].price)

    ratio = market.place_order(order("r", (long_call, "SELL", 2), (short_call, "BUY", 4),
                                     order_type="LMT", limit=-1000.0))
    assert ratio.state == "submitted" and ratio.remaining_quantity == 2
    market.set_fill_ratio(0.0)
    blocked = market.place_order(order("b", (long_call, "SELL", 1), (short_call, "BUY", 1)))
    assert blocked.state == "cancelled" and blocked.filled_quantity == 0
    positions = {p.instrument.key: p.quantity for p in market.positions()}
    assert positions == {long_call.key: 10, short_call.key: -10}


def test_average_cost_positions_and_realized_pnl_by_hand():
    market = make_market(commission_per_contract=2.0)
    cl = front(market, "CL")
    prices = []
    for cid, side, quantity in [("1", "BUY", 2), ("2", "BUY", 1), ("3", "SELL", 2), ("4", "SELL", 3)]:
        market.clock.advance(3600)
        prices.append(market.place_order(order(cid, (cl, side, quantity))).average_fill_price)
    p1, p2, p3, p4 = prices
    average = (2 * p1 + p2) / 3
    fills = market.fills_since(START)
    assert [f.realized_pnl for f in fills[:2]] == [None, None]
    assert fills[2].realized_pnl == pytest.approx(round(2 * (p3 - average) * 1000, 2))
    assert fills[3].realized_pnl == pytest.approx(round(1 * (p4 - average) * 1000, 2))
    (position,) = market.positions()
    assert position.quantity == -2 and position.average_price == p4
    summary = market.account_summary()
    realized = fills[2].realized_pnl + fills[3].realized_pnl
    assert summary.realized_pnl == pytest.approx(realized - 2.0 * 8)
    expected = 1_000_000 + realized - 16.0 + summary.unrealized_pnl
    assert summary.net_liquidation == pytest.approx(expected, abs=0.02)


def test_margin_is_span_like():
    market = make_market()
    es = front(market)
    market.place_order(order("f", (es, "BUY", 1)))
    summary = market.account_summary()
    mid = market.quotes([es])[0].mid
    assert summary.maintenance_margin == pytest.approx(0.06 * mid * 50, rel=0.01)
    assert summary.initial_margin == pytest.approx(1.1 * summary.maintenance_margin)
    expected = summary.net_liquidation - summary.initial_margin
    assert summary.available_funds == pytest.approx(expected, abs=0.02)
    put = option(market, es, es.expiry, atm_strike(market, es) - 200, "P")
    market.place_order(order("p", (put, "BUY", 1)))
    hedged = market.account_summary().maintenance_margin
    assert hedged < summary.maintenance_margin
    market.place_order(order("s", (put, "SELL", 3)))
    assert market.account_summary().maintenance_margin > summary.maintenance_margin


def test_options_settle_at_intrinsic_and_futures_at_their_final_price():
    market = make_market()
    es = front(market)
    strike = atm_strike(market, es)
    january = third_friday(2026, 1)
    call = option(market, es, january, strike - 100, "C")
    put = option(market, es, january, strike - 100, "P")
    market.place_order(order("c", (call, "BUY", 2)))
    market.place_order(order("p", (put, "SELL", 1)))
    market.place_order(order("f", (es, "BUY", 1)))
    paid = market.fills_since(START)[0].price
    market.clock.jump(expiry_moment(call))
    settle_future = market.quotes([es])[0].last
    positions = {p.instrument.key: p.quantity for p in market.positions()}
    assert positions == {es.key: 1}
    call_settle, put_settle = market.fills_since(expiry_moment(call))
    intrinsic = max(0.0, settle_future - (strike - 100))
    assert (call_settle.side, call_settle.quantity, call_settle.client_order_id) == ("SELL", 2, "")
    assert call_settle.price == pytest.approx(intrinsic)
    assert call_settle.realized_pnl == pytest.approx(round(2 * (intrinsic - paid) * 50, 2))
    assert put_settle.side == "BUY"
    assert put_settle.price == pytest.approx(max(0.0, strike - 100 - settle_future))
    assert call_settle.commission == put_settle.commission == 0.0
    with pytest.raises(SimulationError) as error:
        market.quotes([call])
    assert error.value.code == "instrument_expired"

    market.clock.jump(expiry_moment(es) + timedelta(hours=1))
    assert market.positions() == []
    final = market.fills_since(expiry_moment(es))[0]
    assert final.instrument.key == es.key and final.time == expiry_moment(es)
    assert abs(final.price / 0.25 - round(final.price / 0.25)) < 1e-9
    bought = market.fills_since(START)[2]
    assert final.realized_pnl == pytest.approx(round((final.price - bought.price) * 50, 2))


def test_resting_orders_fill_or_end_before_their_contract_settles():
    market = make_market()
    es = front(market)
    january = third_friday(2026, 1)
    cheap_put = option(market, es, january, atm_strike(market, es) - 500, "P")
    atm_call = option(market, es, january, atm_strike(market, es), "C")
    market.place_order(order("g", (cheap_put, "BUY", 1), order_type="LMT", limit=0.05, tif="GTC"))
    market.place_order(order("n", (atm_call, "SELL", 1), order_type="LMT", limit=1000.0, tif="GTC"))
    market.clock.jump(datetime(2026, 2, 1, tzinfo=UTC))
    filled, never = market.order_status("g"), market.order_status("n")
    assert filled.state == "filled" and filled.average_fill_price == 0.05
    assert filled.time < expiry_moment(cheap_put)
    assert never.state == "cancelled" and never.time == expiry_moment(cheap_put)
    bought, settled = market.fills_since(START)
    assert (settled.side, settled.price, settled.time) == ("SELL", 0.0, expiry_moment(cheap_put))
    assert settled.realized_pnl == -2.5
    assert market.positions() == []


def test_market_hours_when_not_always_open():
    saturday = datetime(2026, 1, 10, 15, 0, tzinfo=UTC)
    market = make_market(always_open=False, start=saturday)
    es = front(market)
    assert market.is_open("ES") is False
    closed = market.place_order(order("c", (es, "BUY", 1)))
    assert closed.state == "rejected" and closed.message.startswith("market_closed")
    market.clock.jump(datetime(2026, 1, 12, 15, 0, tzinfo=UTC))
    assert market.is_open("ES") is True
    assert market.place_order(order("o", (es, "BUY", 1))).state == "filled"


# --- state ----------------------------------------------------------------------------------


def test_state_round_trips_exactly_through_json():
    market = make_market(slippage_ticks=1)
    run_scenario(market)
    market.shock("GC", 0.02, vol_points=0.01)
    market.set_spread_multiplier("CL", 3)
    market.set_quote_mode("NQ", "stale")
    market.inject_rejections(1, code="x")
    market.set_fill_ratio(0.5)
    es = front(market)
    market.place_order(order("rest", (es, "SELL", 3), order_type="LMT", limit=9000.0, tif="GTC"))
    state = market.to_state()
    text = json.dumps(state)
    restored = SimulatedMarket.from_state(json.loads(text))
    assert json.dumps(restored.to_state()) == text
    assert restored.clock.now() == market.clock.now() and restored.clock is not market.clock


def test_continuing_after_a_restore_equals_never_stopping():
    straight = make_market()
    interrupted = make_market()
    for market in (straight, interrupted):
        es = front(market)
        market.place_order(order("a", (es, "BUY", 2)))
        bid = market.quotes([es])[0].bid
        market.place_order(order("r", (es, "BUY", 1), order_type="LMT", limit=bid - 4.0, tif="GTC"))
        market.clock.advance(1800)
    restored = SimulatedMarket.from_state(json.loads(json.dumps(interrupted.to_state())))
    for market in (straight, restored):
        es = front(market)
        market.clock.advance(5 * 3600)
        market.shock("ES", 0.01)
        market.place_order(order("b", (es, "SELL", 3)))
        market.clock.advance(86_400)
    assert straight.to_state() == restored.to_state()
    assert straight.account_summary() == restored.account_summary()


def test_anchor_is_the_reference_price():
    market = SimulatedMarket(SimConfig(anchor=START), clock=SimClock.manual(START))
    es = front(market)
    years = (expiry_moment(es) - START).total_seconds() / (365 * 86400)
    expected = 6000.0 * math.exp(MARKET_PARAMS["ES"].carry * years)
    assert market.quotes([es])[0].mid == pytest.approx(expected, abs=0.25)
    assert np.isfinite(market.account_summary().net_liquidation)


@pytest.mark.parametrize(
    ("symbol", "closed_at", "open_at"),
    [
        # Good Friday 2027, no employment report: CME equity is closed (risk.sessions' override;
        # pandas_market_calendars alone has an 08:15 CT session).
        ("ES", datetime(2027, 3, 26, 12, 0, tzinfo=UTC), datetime(2027, 3, 25, 20, 0, tzinfo=UTC)),
        # Friday after Thanksgiving 2026: energy closes at 12:45 CT (the library: 13:45).
        ("CL", datetime(2026, 11, 27, 19, 0, tzinfo=UTC), datetime(2026, 11, 27, 18, 30, tzinfo=UTC)),
        # Labor Day 2027: metals halt at 13:30 CT (the library: 12:00).
        ("GC", datetime(2027, 9, 6, 18, 30, tzinfo=UTC), datetime(2027, 9, 6, 17, 30, tzinfo=UTC)),
    ],
)
def test_market_hours_are_the_governors(symbol, closed_at, open_at):
    calendar = PRODUCTS[symbol].calendar
    assert is_open(calendar, closed_at) is False and is_open(calendar, open_at) is True
    market = make_market(always_open=False, start=open_at)
    assert market.is_open(symbol) is True
    market.clock.jump(closed_at)
    assert market.is_open(symbol) is False
    refused = market.place_order(order("c", (front(market, symbol), "BUY", 1)))
    assert refused.state == "rejected" and refused.message.startswith("market_closed")
