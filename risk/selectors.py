"""Reads of the client's risk: limits, state, halts, today's P&L, order rate, market hours.

Nothing here writes. Where no row exists yet (a client that never traded, a platform never halted)
the reads answer with the model's defaults, unsaved; the services create the rows when they first
have something to write. So `GET agent/status` on a fresh client changes nothing.

Where the limits are stored. The risk app owns what a limit is (risk.limits: names, types, bounds,
defaults, ceilings) and how stored limits are read (`risk_limits_get`), but the stored JSON lives
in the agent's parameters document (`AgentConfig.parameters["risk_limits"]`): owners change limits
and strategy together through one audited partial update (`POST agent/parameters`, one audit row
with before/after of the whole document), every client schema holds them there today, and moving
them would need a data migration of every schema and of every caller that writes them. Rather than
read the agents app from here (risk must not import agents: agents builds on risk), risk declares
the one thing it needs — a function returning the stored limits JSON — and the agents app
registers it when Django starts (`AgentsConfig.ready`). Until one is registered the defaults apply,
which are the tight, safe ones.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import F, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from brokers.codec import instrument_from_json
from brokers.models import Fill as FillRow
from brokers.models import Order as OrderRow
from brokers.selectors import working_orders
from risk import governor
from risk.delta_models import DeltaModel, HedgeObservation, OptionSnapshot, observations_from_snapshots
from risk.limits import LIMIT_BOUNDS, Number, RiskLimits, ceiling_errors, risk_limits_from_json
from risk.models import BookHistoryPoint, OptionQuotePoint, RiskDecisionRecord, RiskStateRecord
from risk.sessions import MarketHours
from risk.working import NO_WORKING_ORDERS, WorkingExposure, WorkingLeg, remaining_legs
from tenants.models import Client, PlatformControl
from tradingplatform.serialization import finite_or_none

# All CME Globex products roll their trading day at 17:00 CT; the client's day follows it.
TRADING_DAY_CALENDAR = "CME Globex Equity"
_market_hours: dict[bool, MarketHours] = {}

StoredLimitsSource = Callable[[], Mapping[str, Any]]
_stored_limits_source: StoredLimitsSource | None = None
DeltaModelsSource = Callable[[], Mapping[str, DeltaModel]]
_delta_models_source: DeltaModelsSource | None = None


def delta_models_source_register(source: DeltaModelsSource) -> None:
    """Name the function that returns the current client's chosen delta model by underlying (the
    agent's parameters hold it; registered at start-up like the limits' source)."""
    global _delta_models_source
    _delta_models_source = source


def delta_models_get() -> dict[str, DeltaModel]:
    """The delta model chosen per underlying for the current client; an underlying it does not
    name gets the platform's default (`risk.book.delta_model_for`)."""
    return dict(_delta_models_source()) if _delta_models_source is not None else {}


def risk_limits_source_register(source: StoredLimitsSource) -> None:
    """Name the function that returns the current client's stored limits JSON (see the module's
    docstring). Called once at start-up by the app that stores them."""
    global _stored_limits_source
    _stored_limits_source = source


def risk_limit_ceilings() -> dict[str, Number]:
    """The operator's ceilings (settings RISK_CEILING_*), by limit name. An empty one is the
    platform's default (settings.RISK_CEILING_DEFAULTS): a ceiling can be moved, not removed."""
    ceilings = {}
    defaults = getattr(settings, "RISK_CEILING_DEFAULTS", {})
    for bound in LIMIT_BOUNDS:
        if not bound.ceiling_setting:
            continue
        value = getattr(settings, bound.ceiling_setting, None)
        if value is None or value == "":
            value = defaults.get(bound.ceiling_setting)
        if value is not None and value != "":
            ceilings[bound.name] = bound.coerce(value)
    return ceilings


def risk_limits_get() -> RiskLimits:
    """The limits in force for the current client: its stored ones over the defaults, capped at
    the operator's ceilings."""
    stored = _stored_limits_source() if _stored_limits_source is not None else {}
    return risk_limits_from_json(stored, ceilings=risk_limit_ceilings())


def risk_limits_validate(*, stored: Mapping[str, Any]) -> RiskLimits:
    """The limits a write would store, checked as a whole: ValueError when a name is unknown, a
    value invalid or above the operator's ceiling (a write is refused, not capped)."""
    errors = ceiling_errors(stored, risk_limit_ceilings())
    if errors:
        raise ValueError("; ".join(f"{name}: {message}" for name, message in sorted(errors.items())))
    return risk_limits_from_json(stored)


def market_hours() -> MarketHours:
    """One precomputed table per process. While every client trades on the simulated market
    (USE_MOCK_BROKER=true) the market-hours rule treats the market as always open, as the
    simulator does by default; real brokers get the exchanges' sessions."""
    always_open = bool(settings.USE_MOCK_BROKER)
    if always_open not in _market_hours:
        _market_hours[always_open] = MarketHours(always_open=always_open)
    return _market_hours[always_open]


def risk_state_get() -> RiskStateRecord:
    """The client's risk state; an unsaved default one (ACTIVE, no streak) when none was written."""
    return RiskStateRecord.objects.filter(singleton=True).first() or RiskStateRecord()


def platform_control_get() -> PlatformControl:
    """The platform's emergency halt; an unsaved default (not halted) when none was ever set."""
    return PlatformControl.objects.filter(singleton=True).first() or PlatformControl()


def trading_day_start_get(now: datetime) -> datetime:
    return market_hours().trading_day_start(TRADING_DAY_CALENDAR, now)


def realized_pnl_since(start: datetime) -> Decimal:
    """Realized P&L of the fills since `start`, net of their commissions."""
    totals = FillRow.objects.filter(executed_at__gte=start).aggregate(
        realized=Sum("realized_pnl"), commission=Sum("commission")
    )
    return (totals["realized"] or Decimal(0)) - (totals["commission"] or Decimal(0))


def unrealized_money(unrealized: float | None) -> Decimal | None:
    return governor.to_money(unrealized) if finite_or_none(unrealized) is not None else None


def daily_pnl_read(*, unrealized: float | None) -> dict[str, Decimal | None]:
    """Today's P&L as the daily-loss rule counts it (see RiskStateRecord). Until a sync has taken
    today's unrealized baseline the unrealized part is unknown (None)."""
    now = timezone.now()
    record = risk_state_get()
    day_start = trading_day_start_get(now)
    realized = realized_pnl_since(day_start)
    unrealized_now = unrealized_money(unrealized)
    if unrealized_now is None or record.trading_day_start != day_start:
        unrealized_today = None
    else:
        unrealized_today = unrealized_now - record.day_unrealized_baseline
    total = realized + unrealized_today if unrealized_today is not None else None
    return {"realized": realized, "unrealized": unrealized_today, "total": total}


def orders_last_minute() -> int:
    since = timezone.now() - timedelta(seconds=60)
    return RiskDecisionRecord.objects.filter(accepted=True, created_at__gte=since).count()


def orders_recent(*, limits: RiskLimits, now: datetime) -> tuple[governor.RecentOrder, ...]:
    """The accepted orders the rate and duplicate rules look at, newest first."""
    window = timedelta(seconds=max(60.0, limits.duplicate_window_seconds))
    # The newest max+1 are enough: with more than that in the window the rate rule rejects anyway.
    rows = RiskDecisionRecord.objects.filter(accepted=True, created_at__gte=now - window).order_by(
        "-created_at"
    )[: limits.max_orders_per_minute + 1]
    return tuple(governor.RecentOrder(at=row.created_at, fingerprint=row.fingerprint) for row in rows)


def working_order_legs() -> list[WorkingLeg]:
    """The remaining legs of every working order, from the stored rows (as the last sync left
    them) and the fills recorded for them: what the broker may still fill."""
    rows: list[OrderRow] = list(working_orders().order_by("created_at", "id"))
    filled: dict[str, dict[str, int]] = {}
    for fill in FillRow.objects.filter(client_order_id__in=[row.client_order_id for row in rows]):
        per_order = filled.setdefault(fill.client_order_id, {})
        per_order[fill.instrument_key] = per_order.get(fill.instrument_key, 0) + fill.quantity
    legs: list[WorkingLeg] = []
    for row in rows:
        legs.extend(remaining_legs(
            client_order_id=row.client_order_id,
            legs=[(instrument_from_json(leg["instrument"]), leg["side"], int(leg["quantity"])) for leg in row.legs],
            filled_units=row.filled_quantity, filled_contracts=filled.get(row.client_order_id),
        ))
    return legs


def net_greeks_json(valuation, working: WorkingExposure | None = None) -> dict:
    """A book valuation's net greeks as the live state and the `greeks` event carry them; with
    the working orders' delta apart (`working`), not in `net_delta` (the positions')."""
    return {
        "working_orders": (working or NO_WORKING_ORDERS).as_json(),
        "as_of": valuation.as_of.isoformat(),
        "net_delta": finite_or_none(valuation.net_delta),
        "unrealized_pnl": finite_or_none(valuation.unrealized_pnl),
        "open_legs": len(valuation.legs),
        "by_underlying": [
            {"underlying": entry.symbol, "delta": finite_or_none(entry.greeks.delta),
             "gamma": finite_or_none(entry.greeks.gamma), "vega": finite_or_none(entry.greeks.vega),
             "theta": finite_or_none(entry.greeks.theta), "delta_model": entry.delta_model}
            for entry in valuation.net
        ],
    }


def halt_reason(*, client: Client) -> str | None:
    """Why executions are refused for this client right now (emergency or operator halt), if they are."""
    control = platform_control_get()
    if control.emergency_halted:
        return f"emergency halt: {control.reason}"
    record = risk_state_get()
    if record.operator_halted:
        return f"client halted by an operator: {record.operator_halt_reason}"
    return None



# The states a trader sees, most severe first: the first that holds is the client's effective state.
EFFECTIVE_STATES = ("EMERGENCY_HALT", "CLIENT_HALT", "BREAKER", "HALTED", "REDUCING", "ACTIVE")


def trading_state_effective(*, limits: RiskLimits | None = None) -> dict[str, Any]:
    """What keeps (or lets) this client trade right now, in one place for every view: the emergency
    halt, then an operator's halt of this client, then a tripped circuit breaker, then the
    governor's own state. With the reason, who set it and since when (None when unknown)."""
    control = platform_control_get()
    record = risk_state_get()
    limits = limits or risk_limits_get()
    if control.emergency_halted:
        return {"state": "EMERGENCY_HALT", "halted": True, "reason": control.reason,
                "set_by": control.changed_by or None, "since": control.changed_at}
    if record.operator_halted:
        return {"state": "CLIENT_HALT", "halted": True, "reason": record.operator_halt_reason,
                "set_by": record.operator_halt_by or None, "since": record.operator_halt_at}
    tripped = (record.reason == governor.ReasonCode.CIRCUIT_BREAKER.value
               or record.loss_streak >= limits.breaker_loss_count)
    if tripped:
        return {"state": "BREAKER", "halted": True,
                "reason": f"circuit breaker: {record.loss_streak} consecutive losses over "
                          f"{limits.breaker_loss_threshold} USD",
                "set_by": "risk governor", "since": record.changed_at if record.pk else None}
    state = record.trading_state
    return {"state": state, "halted": state == RiskStateRecord.TradingState.HALTED, "reason": record.reason,
            "set_by": "risk governor" if record.reason else None,
            "since": record.changed_at if record.pk and record.reason else None}


def risk_limits_describe() -> list[dict[str, Any]]:
    """Every limit: the value in force, the default, its minimum and the operator's ceiling (the
    most an owner may set), its unit and what it means. Money as text (exact cents)."""
    limits, ceilings = risk_limits_get(), risk_limit_ceilings()

    def plain(value: Any) -> Any:
        return str(value) if isinstance(value, Decimal) else value

    return [{"path": f"risk_limits.{bound.name}", "value": plain(getattr(limits, bound.name)),
             "default": plain(bound.default), "min": plain(bound.minimum), "max": plain(ceilings.get(bound.name)),
             "min_inclusive": True, "nullable": False, "unit": bound.unit, "help": bound.help,
             "type": "integer" if bound.kind is int else "money" if bound.kind is Decimal else "number"}
            for bound in LIMIT_BOUNDS]


# ---------------------------------------------------------------------------------------------
# The book's history (risk.models.BookHistoryPoint)


def book_history_keep_ids(*, start: datetime, end: datetime, step_seconds: int) -> RawSQL:
    """The ids of the last point of each step per underlying in [start, end), steps aligned on the
    epoch: an expression for `pk__in=` (one subquery, however many points)."""
    table = BookHistoryPoint._meta.db_table
    bucket = "floor(extract(epoch FROM at) / %s)"
    return RawSQL(
        f"SELECT DISTINCT ON (underlying, {bucket}) id FROM {table} WHERE at >= %s AND at < %s "
        f"ORDER BY underlying, {bucket}, at DESC, id DESC",
        (float(step_seconds), start, end, float(step_seconds)),
    )


def book_history_list(*, start: datetime, end: datetime, step_seconds: int,
                      underlying: str | None = None) -> list[BookHistoryPoint]:
    """The book's net greeks and P&L from `start` (inclusive) to `end` (exclusive), the last point
    of each `step_seconds` step per underlying, oldest first. `underlying`: one product's points
    (BookHistoryPoint.BOOK, "", for the whole book's), or None for all of them."""
    points = BookHistoryPoint.objects.filter(pk__in=book_history_keep_ids(start=start, end=end,
                                                                          step_seconds=step_seconds))
    if underlying is not None:
        points = points.filter(underlying=underlying)
    return list(points.order_by("at", F("underlying").asc(), "id"))


def book_value_stored(*, broker):
    """The book as last synced (the stored positions) valued with fresh quotes: no write and no
    event, for a page that re-renders on the `greeks` event (a page view that synced would publish
    the event it refreshes on, and refresh for ever). The syncs that store the book: the agent's
    cycles, the scheduled sync, every order, the positions API."""
    from brokers.codec import instrument_from_json
    from brokers.domain import Position
    from brokers.models import Position as PositionRow
    from brokers.services import quotes_for
    from risk.book import value_book

    positions = [Position(instrument_from_json(row.instrument), row.quantity, float(row.average_price))
                 for row in PositionRow.objects.order_by("instrument_key")]
    from brokers.services import smile_quotes_add

    quotes = quotes_for(broker=broker, instruments=[position.instrument for position in positions])
    models = delta_models_get()
    quotes = smile_quotes_add(broker=broker, positions=positions, quotes=quotes, delta_models=models)
    return value_book(positions, quotes, now=timezone.now(), rate=settings.RISK_FREE_RATE, delta_models=models)


def minimum_variance_observations(underlying: str, since: datetime, *,
                                  step_seconds: int | None = None) -> list[HedgeObservation]:
    """Hull & White's observations for `underlying` from the options' quotes stored at the book
    syncs since `since` (`risk.models.OptionQuotePoint`): one per option quoted at two consecutive
    syncs (`risk.delta_models.observations_from_snapshots`), its greeks at the first quote's implied
    vol and RISK_FREE_RATE. With `step_seconds`, only the last sync of each step (aligned on the
    epoch) counts, so the intervals are about a step long however often the book was synced."""
    points = OptionQuotePoint.objects.filter(underlying=underlying, at__gte=since)
    if step_seconds:
        times = list(points.order_by("at").values_list("at", flat=True).distinct())
        bucket = [int(t.timestamp()) // step_seconds for t in times]
        points = points.filter(at__in=[t for i, t in enumerate(times)
                                       if i + 1 == len(times) or bucket[i + 1] != bucket[i]])
    rows = points.order_by("at", "id").values_list(
        "at", "option_key", "strike", "years", "right", "forward", "mid", "implied_vol")
    snapshots = [OptionSnapshot(at=at, key=key, strike=strike, years=years, is_call=right == "C", forward=forward,
                                mid=mid, implied_vol=vol)
                 for at, key, strike, years, right, forward, mid, vol in rows]
    return observations_from_snapshots(snapshots, rate=settings.RISK_FREE_RATE)
