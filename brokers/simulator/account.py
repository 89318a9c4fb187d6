"""`SimulatedMarket`: the market of `brokers.simulator.market` and one trading account on it.

The account side: orders (validation, idempotent client order ids, immediate fills, resting
limit orders), the passage of time (`sync` matches resting orders step by step and settles
expiries, in time order), the ledger (average-cost positions, fills, realized P&L, commissions),
the account summary with SPAN-like margin, injected faults, and the whole state as a
JSON-compatible dict (`to_state` / `from_state`, built from the records of
`brokers.simulator.state`). The rules are described in the package docstring.
"""
from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

import numpy as np

from brokers.codec import instrument_from_json, instrument_to_json
from brokers.domain import (
    AccountSummary,
    Fill,
    Instrument,
    OrderLeg,
    OrderRequest,
    OrderStatus,
    Position,
    Side,
)
from brokers.products import PRODUCTS, TickRule, expiry_moment, on_price_grid, price_kind
from brokers.simulator.clock import SimClock, _utc
from brokers.simulator.market import (
    MarketSide,
    QuoteModeSetting,
    Shock,
    SimConfig,
    SimulationError,
    _next_day_end,
)
from brokers.simulator.params import MARKET_PARAMS
from brokers.simulator.paths import _EPS, STEP, _price, _tick_decimals, _ticks_round
from brokers.simulator.state import (
    TERMINAL_STATES,
    _Faults,
    _Ledger,
    _Order,
    _order_from_state,
    _order_to_state,
    fill_from_state,
    fill_to_state,
)

INITIAL_MARGIN_FACTOR = 1.1
MAX_LEGS = 8
MATCH_CHUNK_STEPS = 20_000
STATE_VERSION = 1


# ---------------------------------------------------------------------------------------------
# The market and the account


class SimulatedMarket(MarketSide):
    """The market and one account on it, driven by a `SimClock`.

    Broker-like reads and writes: `lookup`, `listed_futures`, `option_chain`, `quotes`,
    `place_order`, `cancel_order`, `order_status`, `positions`, `fills_since`, `account_summary`.
    Controls: `shock`, `set_spread_multiplier`, `set_quote_mode`, `set_fill_ratio`,
    `inject_rejections`, `inject_disconnect` / `attempt_reconnect`, `update_execution_settings`.
    Every read first brings the account up to the clock (`sync`). `revision` changes whenever
    something happened that a store must keep; pure catching-up does not change it, because
    replaying it from the older state gives the same result.
    """

    def __init__(self, config: SimConfig | None = None, *, clock: SimClock | None = None) -> None:
        super().__init__(config, clock=clock)
        self._faults = _Faults()
        self._orders: dict[str, _Order] = {}
        self._order_sequence = 0
        self._ledger = _Ledger()

    # --- injected faults ------------------------------------------------------------------

    def set_fill_ratio(self, ratio: float) -> None:
        if not (0.0 <= ratio <= 1.0):
            raise SimulationError("invalid_request", "the fill ratio is between 0 and 1")
        self.sync()
        self._faults.fill_ratio = float(ratio)
        self.revision += 1

    def inject_rejections(
        self, count: int, *, code: str = "rejected", message: str = "rejected by the simulated broker"
    ) -> None:
        """The next `count` orders are rejected with `code`."""
        if count < 0:
            raise SimulationError("invalid_request", "count must be >= 0")
        self._faults.rejections_remaining = int(count)
        self._faults.rejection_code = code
        self._faults.rejection_message = message
        self.revision += 1

    def inject_disconnect(self, *, failed_reconnects: int = 0) -> None:
        """The connection is lost: the adapter refuses every call until a reconnect succeeds,
        and the next `failed_reconnects` reconnects fail."""
        self._faults.disconnected = True
        self._faults.failed_reconnects = max(0, int(failed_reconnects))
        self.revision += 1

    @property
    def disconnected(self) -> bool:
        return self._faults.disconnected

    def attempt_reconnect(self) -> bool:
        """True when the connection is (back) up; consumes one injected failed reconnect."""
        if not self._faults.disconnected:
            return True
        if self._faults.failed_reconnects > 0:
            self._faults.failed_reconnects -= 1
            self.revision += 1
            return False
        self._faults.disconnected = False
        self.revision += 1
        return True

    # --- market changes -------------------------------------------------------------------

    def _changed_market(self) -> None:
        """A market change at `now` may make resting orders marketable at once."""
        self.revision += 1
        now = self.now()
        step = self._step_of(now)
        self._run_events(self._order_events(step, step, now), now)

    # --- orders ---------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderStatus:
        self.sync()
        existing = self._orders.get(request.client_order_id)
        if existing is not None:
            if _fingerprint(existing.request) != _fingerprint(request):
                raise SimulationError(
                    "duplicate_client_order_id",
                    "an order with this client order id exists and differs from this one",
                    context={"client_order_id": request.client_order_id},
                )
            return existing.status()
        request = self._validated(request)
        now = self.now()
        self._order_sequence += 1
        units = reduce(math.gcd, (leg.quantity for leg in request.legs))
        order = _Order(
            request=request, broker_order_id=f"SIM-{self._order_sequence:08d}", sequence=self._order_sequence,
            placed_at=now, units=units, state="submitted", updated_at=now,
        )
        self._orders[request.client_order_id] = order
        self.revision += 1
        if self._faults.rejections_remaining > 0:
            self._faults.rejections_remaining -= 1
            return self._reject(order, self._faults.rejection_code, self._faults.rejection_message)
        if not all(self.is_open(leg.instrument.symbol) for leg in request.legs):
            return self._reject(order, "market_closed", "the exchange is closed for this product")
        step = self._step_of(now)
        prices = self._execution_prices(request, np.array([step]))
        missing = [
            leg.instrument.key for leg, leg_prices in zip(request.legs, prices, strict=True) if np.isnan(leg_prices[0])
        ]
        if missing and request.order_type == "MKT":
            return self._reject(order, "no_liquidity", f"no quote to trade against for {', '.join(missing)}")
        marketable = not missing and self._marketable(request, prices)[0]
        fill_units = math.floor(units * self._faults.fill_ratio + _EPS) if marketable else 0
        if fill_units:
            self._fill_order(order, fill_units, [float(p[0]) for p in prices], now)
        if order.filled_units == units:
            return order.status()
        if request.order_type == "MKT" or request.time_in_force == "IOC":
            return self._cancel(order, now, "no liquidity left at the touch for the rest of the order")
        order.next_check_step = step + 1
        order.ends_at = self._resting_end(request, now)
        return order.status()

    def cancel_order(self, client_order_id: str) -> OrderStatus:
        self.sync()
        order = self._orders.get(client_order_id)
        if order is None:
            raise SimulationError(
                "order_not_found", "no order with this client order id",
                context={"client_order_id": client_order_id},
            )
        if order.state not in TERMINAL_STATES:
            self._cancel(order, self.now(), "cancelled on request")
            self.revision += 1
        return order.status()

    def order_status(self, client_order_id: str) -> OrderStatus | None:
        self.sync()
        order = self._orders.get(client_order_id)
        return None if order is None else order.status()

    def _validated(self, request: OrderRequest) -> OrderRequest:
        def invalid(message: str) -> SimulationError:
            context = {"client_order_id": request.client_order_id}
            return SimulationError("invalid_order", message, context=context)

        if not request.client_order_id:
            raise invalid("the client order id is empty")
        if not 1 <= len(request.legs) <= MAX_LEGS:
            raise invalid(f"an order has 1 to {MAX_LEGS} legs")
        legs = []
        for leg in request.legs:
            if leg.side not in ("BUY", "SELL"):
                raise invalid(f"unknown side {leg.side!r}")
            if isinstance(leg.quantity, bool) or not isinstance(leg.quantity, int) or leg.quantity <= 0:
                raise invalid("leg quantities are positive whole contracts")
            instrument = self.resolve(leg.instrument)
            self._require_tradable(instrument)
            legs.append(OrderLeg(instrument=instrument, side=leg.side, quantity=leg.quantity))
        if len({leg.instrument.key for leg in legs}) != len(legs):
            raise invalid("a combo lists each contract once")
        if request.order_type == "MKT":
            if request.limit_price is not None:
                raise invalid("a market order has no limit price")
        elif request.order_type == "LMT":
            limit = request.limit_price
            if limit is None or not math.isfinite(limit):
                raise invalid("a limit order needs a finite limit price")
            if len(legs) == 1:
                product = PRODUCTS[legs[0].instrument.symbol]
                kind = price_kind(legs[0].instrument.is_option)
                if not (limit > 0 and on_price_grid(product, limit, kind=kind)):
                    raise invalid(f"the limit price must be a positive price on the {product.symbol} {kind} "
                                  f"tick grid ({product.tick_rule(kind).describe()})")
        else:
            raise invalid(f"unknown order type {request.order_type!r}")
        if request.time_in_force not in ("DAY", "GTC", "IOC"):
            raise invalid(f"unknown time in force {request.time_in_force!r}")
        return replace(request, legs=tuple(legs))

    def _resting_end(self, request: OrderRequest, now: datetime) -> datetime:
        first_expiry = min(expiry_moment(leg.instrument) for leg in request.legs)
        return min(_next_day_end(now), first_expiry) if request.time_in_force == "DAY" else first_expiry

    def _execution_prices(self, request: OrderRequest, steps: np.ndarray) -> list[np.ndarray]:
        """Per leg, the price each step would fill at (touch + slippage), NaN when it cannot."""
        prices = []
        for leg in request.legs:
            grid = PRODUCTS[leg.instrument.symbol].tick_rule(price_kind(leg.instrument.is_option))
            snapshot = self._snapshot(leg.instrument, steps, for_execution=True)
            slip = self.config.slippage_ticks
            if leg.side == "BUY":
                prices.append(_slipped(grid, snapshot.ask, slip))
            else:
                prices.append(np.maximum(_slipped(grid, snapshot.bid, -slip), grid.minimum))
        return prices

    def _unit_cost(self, request: OrderRequest, prices: list[float] | list[np.ndarray]):
        """What one unit costs (negative: a credit); a single leg's own price keeps its sign convention."""
        units = reduce(math.gcd, (leg.quantity for leg in request.legs))
        return sum((1 if leg.side == "BUY" else -1) * (leg.quantity // units) * price
                   for leg, price in zip(request.legs, prices, strict=True))

    def _marketable(self, request: OrderRequest, prices: list[np.ndarray]) -> np.ndarray:
        cost = self._unit_cost(request, prices)
        valid = ~np.isnan(cost)
        if request.order_type == "MKT":
            return valid
        limit = request.limit_price
        if not request.is_combo and request.legs[0].side == "SELL":
            limit = -limit
        return valid & (np.nan_to_num(cost, nan=np.inf) <= limit + _EPS)

    def _fill_order(self, order: _Order, units: int, prices: list[float], moment: datetime) -> None:
        request = order.request
        for leg, price in zip(request.legs, prices, strict=True):
            quantity = leg.quantity // order.units * units
            commission = round(self.config.commission_per_contract * quantity, 2)
            self._book_fill(
                leg.instrument, leg.side, quantity, price, moment, request.client_order_id, commission
            )
        net = prices[0] if not request.is_combo else self._unit_cost(request, prices)
        order.filled_units += units
        order.filled_value += units * net
        order.state = "filled" if order.filled_units == order.units else "partially_filled"
        order.updated_at = moment
        if order.state == "filled":
            order.next_check_step = None
        self.revision += 1

    def _reject(self, order: _Order, code: str, message: str) -> OrderStatus:
        order.state = "rejected"
        order.message = f"{code}: {message}"
        order.next_check_step = None
        return order.status()

    def _cancel(self, order: _Order, moment: datetime, message: str) -> OrderStatus:
        order.state = "cancelled"
        order.message = message
        order.updated_at = moment
        order.next_check_step = None
        return order.status()

    # --- the passage of time --------------------------------------------------------------

    def sync(self) -> None:
        """Bring the account up to the clock: match resting orders step by step, settle expiries."""
        now = self.now()
        step = self._step_of(now)
        events = self._order_events(None, step, None)
        events += self._settlement_events(now, events)
        self._run_events(events, now)
        for order in self._orders.values():
            if order.is_resting:
                order.next_check_step = max(order.next_check_step, step + 1)
        self._processed_time = now

    def _order_events(
        self, first_step: int | None, last_step: int, fill_time: datetime | None
    ) -> list[tuple]:
        """(time, priority, tiebreak, action) for each resting order that fills or ends by `last_step`."""
        events = []
        for order in sorted(self._orders.values(), key=lambda o: o.sequence):
            if not order.is_resting:
                continue
            start = order.next_check_step if first_step is None else first_step
            end_step = min(last_step, self._step_of(order.ends_at - timedelta(microseconds=1)))
            crossing = self._first_crossing(order.request, start, end_step)
            if crossing is not None:
                step, prices = crossing
                moment = fill_time or self.config.anchor + STEP * step
                events.append((moment, 0, order.sequence, ("fill", order, prices)))
            elif fill_time is None and order.ends_at <= self.now():
                events.append((order.ends_at, 0, order.sequence, ("end", order, None)))
        return events

    def _first_crossing(self, request: OrderRequest, first: int, last: int) -> tuple[int, list[float]] | None:
        for chunk_start in range(first, last + 1, MATCH_CHUNK_STEPS):
            steps = np.arange(chunk_start, min(last, chunk_start + MATCH_CHUNK_STEPS - 1) + 1)
            prices = self._execution_prices(request, steps)
            marketable = self._marketable(request, prices)
            if marketable.any():
                index = int(np.argmax(marketable))
                return int(steps[index]), [float(p[index]) for p in prices]
        return None

    def _settlement_events(self, now: datetime, order_events: list[tuple]) -> list[tuple]:
        keys: dict[str, Instrument] = {key: p.instrument for key, p in self._ledger.positions.items()}
        for _, _, _, (kind, order, _) in order_events:
            if kind == "fill":
                keys.update({leg.instrument.key: leg.instrument for leg in order.request.legs})
        return [
            (expiry_moment(instrument), 1, key, ("settle", instrument, None))
            for key, instrument in keys.items()
            if expiry_moment(instrument) <= now
        ]

    def _run_events(self, events: list[tuple], now: datetime) -> None:
        for moment, _, _, (kind, subject, prices) in sorted(events, key=lambda e: e[:3]):
            if kind == "fill":
                self._fill_order(subject, subject.units - subject.filled_units, prices, moment)
            elif kind == "end":
                self._cancel(subject, moment, "expired unfilled at the end of its time in force")
                self.revision += 1
            else:
                self._settle(subject, moment)

    def _settle(self, instrument: Instrument, moment: datetime) -> None:
        position = self._ledger.positions.get(instrument.key)
        if position is None:
            return
        product = PRODUCTS[instrument.symbol]
        step = np.array([self._step_of(moment)])
        tick = product.future_tick
        future_expiry = instrument.underlying_expiry if instrument.is_option else instrument.expiry
        future = self._future(product, future_expiry)
        settlement = float(_price(_ticks_round(self._future_fair(future, step), tick), tick)[0])
        if instrument.is_option:
            sign = 1.0 if instrument.right == "C" else -1.0
            intrinsic = sign * (settlement - instrument.strike)
            settlement = round(max(0.0, intrinsic), _tick_decimals(product.future_tick))
        side: Side = "SELL" if position.quantity > 0 else "BUY"
        self._book_fill(instrument, side, abs(position.quantity), settlement, moment, "", 0.0)
        self.revision += 1

    # --- the ledger -----------------------------------------------------------------------

    def _book_fill(
        self, instrument: Instrument, side: Side, quantity: int, price: float, moment: datetime,
        client_order_id: str, commission: float,
    ) -> Fill:
        ledger = self._ledger
        signed = quantity if side == "BUY" else -quantity
        position = ledger.positions.get(instrument.key)
        held = position.quantity if position else 0
        average = position.average_price if position else 0.0
        realized = None
        if held == 0 or (held > 0) == (signed > 0):
            new_quantity = held + signed
            new_average = (abs(held) * average + quantity * price) / abs(new_quantity)
        else:
            closing = min(quantity, abs(held))
            direction = 1 if held > 0 else -1
            realized = round(closing * (price - average) * direction * instrument.multiplier, 2)
            new_quantity = held + signed
            new_average = average if new_quantity * held > 0 else price
        if new_quantity == 0:
            ledger.positions.pop(instrument.key, None)
        else:
            ledger.positions[instrument.key] = Position(instrument, new_quantity, new_average)
        ledger.fill_sequence += 1
        fill = Fill(
            fill_id=f"SIMF-{ledger.fill_sequence:08d}", client_order_id=client_order_id,
            instrument=instrument, side=side, quantity=quantity, price=price, commission=commission,
            time=moment, realized_pnl=realized,
        )
        ledger.fills.append(fill)
        ledger.realized_pnl = round(ledger.realized_pnl + (realized or 0.0), 2)
        ledger.commissions = round(ledger.commissions + commission, 2)
        return fill

    def positions(self) -> list[Position]:
        self.sync()
        return [self._ledger.positions[key] for key in sorted(self._ledger.positions)]

    def fills_since(self, since: datetime) -> list[Fill]:
        self.sync()
        since = _utc(since)
        return [fill for fill in self._ledger.fills if fill.time >= since]

    def account_summary(self) -> AccountSummary:
        self.sync()
        step = np.array([self._step_of(self.now())])
        unrealized = 0.0
        for position in self._ledger.positions.values():
            mark = float(self._fair(position.instrument, step)[0])
            unrealized += position.quantity * (mark - position.average_price) * position.instrument.multiplier
        cash = self.config.initial_cash + self._ledger.realized_pnl - self._ledger.commissions
        net_liquidation = cash + unrealized
        maintenance = self._scan_margin(step)
        initial = INITIAL_MARGIN_FACTOR * maintenance
        return AccountSummary(
            currency="USD",
            net_liquidation=round(net_liquidation, 2),
            initial_margin=round(initial, 2),
            maintenance_margin=round(maintenance, 2),
            available_funds=round(net_liquidation - initial, 2),
            realized_pnl=round(self._ledger.realized_pnl - self._ledger.commissions, 2),
            unrealized_pnl=round(unrealized, 2),
        )

    def _scan_margin(self, step: np.ndarray) -> float:
        """Worst loss per product over a grid of price and vol moves, summed over products."""
        by_symbol: dict[str, list[Position]] = {}
        for position in self._ledger.positions.values():
            by_symbol.setdefault(position.instrument.symbol, []).append(position)
        total = 0.0
        for symbol, positions in by_symbol.items():
            params = MARKET_PARAMS[symbol]
            moves = np.linspace(-params.price_scan, params.price_scan, 7)
            steps = np.repeat(step, moves.size)
            changes = np.zeros((2, moves.size))
            for position in positions:
                instrument = position.instrument
                now_value = float(self._fair(instrument, step)[0])
                for row, vol_shift in enumerate((-params.vol_scan, params.vol_scan)):
                    if instrument.is_option:
                        forward, years, vol = self._option_inputs(
                            instrument, steps, vol_shift=vol_shift, price_shift=moves
                        )
                        values = self._black76(instrument, forward, years, vol).price
                    else:
                        values = now_value * (1.0 + moves)
                    changes[row] += position.quantity * (values - now_value) * instrument.multiplier
            total += max(0.0, -float(changes.min()))
        return total

    # --- state ----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        ledger = self._ledger
        faults = self._faults
        return {
            "version": STATE_VERSION,
            "config": self.config.to_state(),
            "clock": self.clock.to_state(),
            "processed_time": self._processed_time.isoformat(),
            "shocks": [
                {"symbol": s.symbol, "at": s.at.isoformat(), "pct": s.pct, "vol_points": s.vol_points}
                for s in self._shocks
            ],
            "spread": {
                "default": self._spread_default,
                "by_symbol": dict(sorted(self._spread_by_symbol.items())),
            },
            "quote_modes": {
                key: {"mode": setting.mode, "since": setting.since.isoformat()}
                for key, setting in sorted(self._quote_modes.items())
            },
            "faults": {
                "disconnected": faults.disconnected,
                "failed_reconnects": faults.failed_reconnects,
                "rejections_remaining": faults.rejections_remaining,
                "rejection_code": faults.rejection_code,
                "rejection_message": faults.rejection_message,
                "fill_ratio": faults.fill_ratio,
            },
            "order_sequence": self._order_sequence,
            "orders": [_order_to_state(o) for o in sorted(self._orders.values(), key=lambda o: o.sequence)],
            "positions": [
                {
                    "instrument": instrument_to_json(p.instrument),
                    "quantity": p.quantity,
                    "average_price": p.average_price,
                }
                for _, p in sorted(ledger.positions.items())
            ],
            "fills": [fill_to_state(fill) for fill in ledger.fills],
            "realized_pnl": ledger.realized_pnl,
            "commissions": ledger.commissions,
            "fill_sequence": ledger.fill_sequence,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], *, clock: SimClock | None = None) -> SimulatedMarket:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported simulator state version {state.get('version')!r}")
        clock = clock or SimClock.from_state(state["clock"])
        market = cls(SimConfig.from_state(state["config"]), clock=clock)
        market._processed_time = datetime.fromisoformat(state["processed_time"])
        market._shocks = [
            Shock(s["symbol"], datetime.fromisoformat(s["at"]), s["pct"], s["vol_points"])
            for s in state["shocks"]
        ]
        market._spread_default = state["spread"]["default"]
        market._spread_by_symbol = dict(state["spread"]["by_symbol"])
        market._quote_modes = {
            key: QuoteModeSetting(value["mode"], datetime.fromisoformat(value["since"]))
            for key, value in state["quote_modes"].items()
        }
        market._faults = _Faults(**state["faults"])
        market._order_sequence = state["order_sequence"]
        market._orders = {}
        for data in state["orders"]:
            order = _order_from_state(data)
            market._orders[order.request.client_order_id] = order
        market._ledger = _Ledger(
            positions={
                (instrument := instrument_from_json(p["instrument"])).key: Position(
                    instrument, p["quantity"], p["average_price"]
                )
                for p in state["positions"]
            },
            fills=[fill_from_state(f) for f in state["fills"]],
            realized_pnl=state["realized_pnl"],
            commissions=state["commissions"],
            fill_sequence=state["fill_sequence"],
        )
        return market

    def update_execution_settings(
        self, *, always_open: bool, slippage_ticks: int, commission_per_contract: float
    ) -> None:
        """Apply new execution settings (the market's seed and anchor stay: they are its identity)."""
        config = replace(
            self.config, always_open=always_open, slippage_ticks=slippage_ticks,
            commission_per_contract=commission_per_contract,
        )
        if config != self.config:
            self.sync()
            self.config = config
            self._changed_market()


def _slipped(grid: TickRule, prices: np.ndarray, ticks: int) -> np.ndarray:
    """Touch prices moved `ticks` steps along the product's grid (negative: down); NaN stays NaN."""
    return prices if ticks == 0 else np.asarray(grid.step(prices, ticks), dtype=float)


def _fingerprint(request: OrderRequest) -> tuple:
    """What makes two requests the same order, whatever optional instrument fields they carry."""
    return (
        request.order_type,
        request.limit_price,
        request.time_in_force,
        tuple((leg.instrument.key, leg.side, leg.quantity) for leg in request.legs),
    )
