"""Writes about a client's broker link and book. Callers hold the connection on the client's
schema (a ClientScopedAPIView, a task run in the client's schema, or `tenant_context`)."""
from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from audit import kinds
from audit import services as audit
from brokers.codec import instrument_from_json, instrument_to_json
from brokers.domain import (
    Broker,
    BrokerError,
    BrokerHealth,
    Fill,
    Instrument,
    OrderRequest,
    OrderStatus,
    Position,
    Quote,
)
from brokers.models import BrokerConnection
from brokers.models import Fill as FillRow
from brokers.models import Order as OrderRow
from brokers.models import Position as PositionRow
from brokers.products import expiry_moment
from brokers.registry import broker_build, credentials_validate, routed_broker
from brokers.selectors import working_orders_to_refresh
from tenants.models import Client
from tradingplatform.locks import advisory_lock

logger = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class ConnectResult:
    connection: BrokerConnection
    routed_to: str  # the adapter that actually answered ("mock" while USE_MOCK_BROKER=true)
    health: BrokerHealth | None
    error: BrokerError | None


def broker_connection_get() -> BrokerConnection:
    """The stored connection; a client that never connected one trades on the simulated market."""
    connection = BrokerConnection.objects.filter(singleton=True).first()
    if connection is None:
        connection = BrokerConnection(broker="mock", credentials=json.dumps({}))
    return connection


def broker_connect(*, client: Client, broker: str, credentials: dict[str, Any], actor: str) -> ConnectResult:
    """Validate, test, store encrypted, audit. Invalid credentials raise a DRF ValidationError and
    change nothing, and so do product settings the broker itself refuses when tested (an expired
    future, a trading class or multiplier it does not list: `Broker.settings_resolve`); what the
    broker resolved (the future's full expiry, its option class) is stored with the credentials.
    A test that fails otherwise (the broker unreachable) still stores them (status `failed`) and
    reports why."""
    validated = credentials_validate(broker=broker, credentials=credentials)
    candidate = BrokerConnection(broker=broker, credentials=json.dumps(validated))
    health, error = None, None
    try:
        with broker_session(connection=candidate) as session:
            health = session.health()
            if health.connected:
                validated = {**validated, **session.settings_resolve()}
    except BrokerError as exc:
        if exc.code == "invalid_contract_settings":
            raise serializers.ValidationError({"credentials": exc.context["fields"]}) from None
        error = exc
    connected = error is None and health is not None and health.connected
    with transaction.atomic():
        connection, _ = BrokerConnection.objects.update_or_create(
            singleton=True,
            defaults={"broker": broker, "credentials": json.dumps(validated),
                      "status": BrokerConnection.Status.CONNECTED if connected else BrokerConnection.Status.FAILED,
                      "last_error": error.payload() if error else None,
                      "last_checked_at": timezone.now()},
        )
    option_chains_forget()
    audit.audit_record(
        client_id=client.client_id, actor_type="user", actor_id=actor,
        kind=kinds.BROKER_CONNECTED if connected else kinds.BROKER_FAILED,
        payload={"broker": broker, "routed_to": routed_broker(broker), "status": connection.status,
                 "error": connection.last_error, "detail": health.detail if health else ""},
    )
    return ConnectResult(connection=connection, routed_to=routed_broker(broker), health=health, error=error)


@contextlib.contextmanager
def broker_session(*, connection: BrokerConnection | None = None) -> Iterator[Broker]:
    """A connected adapter for the current client, disconnected on exit.

    One session per client at a time (an advisory lock), so that two sessions cannot interleave
    their trades on the simulated market's stored account."""
    connection = connection or broker_connection_get()
    credentials = json.loads(connection.credentials)  # decrypted only here, to open the session
    with advisory_lock(f"broker-session:{db_connection.schema_name}"):
        broker = broker_build(broker=connection.broker, credentials=credentials)
        broker.connect()
        try:
            yield broker
        finally:
            broker.disconnect()


def positions_sync(*, positions: list[Position], now: datetime) -> None:
    """Make the stored book exactly the broker's."""
    keys = []
    for position in positions:
        keys.append(position.instrument.key)
        PositionRow.objects.update_or_create(
            instrument_key=position.instrument.key,
            defaults={
                "instrument": instrument_to_json(position.instrument),
                "quantity": position.quantity,
                "average_price": Decimal(repr(position.average_price)),
                "synced_at": now,
            },
        )
    PositionRow.objects.exclude(instrument_key__in=keys).delete()


def fills_record(*, fills: list[Fill]) -> list[FillRow]:
    """Store fills not seen before (the broker's execution id is the key); returns the new ones."""
    known = set(FillRow.objects.filter(fill_id__in=[fill.fill_id for fill in fills]).values_list("fill_id", flat=True))
    created = []
    for fill in fills:
        if fill.fill_id in known:
            continue
        created.append(
            FillRow.objects.create(
                fill_id=fill.fill_id,
                client_order_id=fill.client_order_id,
                instrument_key=fill.instrument.key,
                instrument=instrument_to_json(fill.instrument),
                side=fill.side,
                quantity=fill.quantity,
                price=Decimal(repr(fill.price)),
                commission=Decimal(repr(fill.commission)).quantize(Decimal("0.01")),
                realized_pnl=(
                    Decimal(repr(fill.realized_pnl)).quantize(Decimal("0.01"))
                    if fill.realized_pnl is not None else None
                ),
                executed_at=fill.time,
            )
        )
        known.add(fill.fill_id)
    return created


def order_record(*, order: OrderRequest, broker: str) -> OrderRow:
    """The order row, written before any broker call. A row already under this client order id is
    reused (a resend the broker never received); the unique id forbids a second one."""
    fields = {
        "broker": broker,
        "legs": [
            {"instrument": instrument_to_json(leg.instrument), "side": leg.side, "quantity": leg.quantity}
            for leg in order.legs
        ],
        "order_type": order.order_type,
        "limit_price": Decimal(repr(order.limit_price)) if order.limit_price is not None else None,
        "state": OrderRow.State.PENDING_SUBMIT,
    }
    (row,) = OrderRow.objects.bulk_create(
        [OrderRow(client_order_id=order.client_order_id, **fields)],
        update_conflicts=True, unique_fields=["client_order_id"], update_fields=list(fields),
    )
    return row


def _status_differs(row: OrderRow, status: OrderStatus) -> bool:
    average = Decimal(repr(status.average_fill_price)) if status.average_fill_price is not None else None
    return (row.state, row.filled_quantity, row.average_fill_price, row.message) != (
        status.state, status.filled_quantity, average, status.message[:1000])


def orders_refresh(*, broker: Broker) -> list[OrderRow]:
    """Every working order's state and filled quantity as the broker reports them now (a resting
    order fills, is cancelled or expires at the broker, not here). Returns the rows that changed.
    An order the broker does not know is left as it is: `risk.order_outcome_resolve` decides."""
    changed = []
    for row in working_orders_to_refresh():
        status = broker.order_status(row.client_order_id)
        if status is None or not _status_differs(row, status):
            continue
        changed.append(order_status_apply(row=row, status=status))
    return changed


def order_status_apply(*, row: OrderRow, status: OrderStatus) -> OrderRow:
    row.state = status.state
    row.broker_order_id = status.broker_order_id or row.broker_order_id
    row.broker_perm_id = status.broker_perm_id or row.broker_perm_id
    row.filled_quantity = status.filled_quantity
    row.average_fill_price = (
        Decimal(repr(status.average_fill_price)) if status.average_fill_price is not None else None
    )
    row.message = status.message[:1000]
    row.save()
    return row


def order_mark_failed(*, row: OrderRow, error: BrokerError) -> OrderRow:
    """A send that failed: a retryable failure leaves the outcome unknown (the broker may have the
    order; the next submission of this id asks it first), any other is a rejection."""
    row.state = OrderRow.State.UNKNOWN if error.retryable else OrderRow.State.REJECTED
    row.message = f"{error.code}: {error.message}"[:1000]
    row.save(update_fields=["state", "message", "updated_at"])
    return row


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    valuation: Any  # risk.book.BookValuation
    quotes: dict[str, Any]  # instrument key -> brokers.domain.Quote
    health: BrokerHealth
    new_fills: list[FillRow]
    working: Any = None  # risk.working.WorkingExposure (set by risk.services.book_sync)
    changed_orders: tuple[OrderRow, ...] = ()  # orders whose state the sync brought up to date
    # The delta model per underlying the book was valued in (risk.selectors.delta_models_get, read
    # once by the sync): what the working orders and an order checked against this book use too.
    delta_models: Any = None


def quotes_for(*, broker: Broker, instruments: list) -> dict[str, Any]:
    """Quotes for the instruments and for the futures their options are written on."""
    wanted = {}
    for instrument in instruments:
        wanted[instrument.key] = instrument
        future = instrument.underlying_future()
        wanted.setdefault(future.key, future)
    if not wanted:
        return {}
    quotes = broker.quotes(list(wanted.values()))
    return {quote.instrument.key: quote for quote in quotes}


def _chain_scope() -> str:
    """The cache keys of the current client's chain listings. A listing is the client's own (its
    schema): two connections of one broker may list differently (IBKR's exchange and option class
    settings, the simulated market's strikes around its own forward)."""
    return f"option-chain:{db_connection.schema_name}"


def option_chain_cache_key(*, broker: str, future: Instrument, day: date) -> str:
    """The cache key of the current client's listing of `future`'s chain at `broker` (its name) on
    `day` (UTC): a listing serves the day it was made, never a later one (expiries and strikes are
    listed from one day to the next; a market whose clock jumps, the simulator's, lists again)."""
    return f"{_chain_scope()}:{broker}:{future.key.replace(' ', '_')}:{day.isoformat()}"


def _chain_generation_key() -> str:
    return f"{_chain_scope()}:generation"


def option_chains_forget() -> None:
    """The client's listings made before now are not served again (a new connection may list
    other options): a new generation, which every listing is stored with."""
    try:
        cache.set(_chain_generation_key(), uuid.uuid4().hex, timeout=None)
    except (redis.RedisError, OSError) as exc:
        logger.warning("option chain listings not forgotten (cache unavailable): %s", exc)


def _cached_chain(entry: Any, generation: str) -> list[Instrument] | None:
    try:
        data = json.loads(entry)
        if data["generation"] != generation:
            return None
        return [instrument_from_json(option) for option in data["options"]]
    except (TypeError, ValueError, KeyError):
        return None


def option_chains_list(*, broker: Broker, futures: Sequence[Instrument], now: datetime,
                       raise_errors: bool = False) -> dict[str, list[Instrument]]:
    """Each future's option chain (`Broker.option_chain`) by its key, listed at the broker at most
    once per OPTION_CHAIN_CACHE_SECONDS per client, broker, future and day: the listings are kept in
    the cache (one read and at most one write per call), without the options whose last trade is
    past at `now`. A future the broker cannot list is left out (and listed again next time), or,
    with `raise_errors`, its BrokerError is raised (a chain someone asked for: the agent's
    structure search, a trader's leg, the chain page). The cache unreachable, every chain is
    listed at the broker (one warning per call)."""
    generation_key = _chain_generation_key()
    day = now.astimezone(UTC).date()
    keys = {future.key: option_chain_cache_key(broker=broker.name, future=future, day=day) for future in futures}
    cache_up = True
    try:
        cached: dict[str, Any] = cache.get_many([generation_key, *keys.values()]) if futures else {}
    except (redis.RedisError, OSError) as exc:
        logger.warning("option chain cache unavailable, listing at the broker: %s", exc)
        cached, cache_up = {}, False
    generation = cached.get(generation_key, "")
    chains: dict[str, list[Instrument]] = {}
    listed: dict[str, str] = {}
    for future in futures:
        chain = _cached_chain(cached.get(keys[future.key]), generation)
        if chain is None:
            try:
                chain = broker.option_chain(future)
            except BrokerError as exc:
                if raise_errors:
                    raise
                logger.warning("option chain of %s not listed: %s", future.key, exc.code)
                continue
            listed[keys[future.key]] = json.dumps(
                {"generation": generation, "options": [instrument_to_json(option) for option in chain]})
        chains[future.key] = [option for option in chain if expiry_moment(option) > now]
    if listed and cache_up:
        try:
            cache.set_many(listed, timeout=settings.OPTION_CHAIN_CACHE_SECONDS)
        except (redis.RedisError, OSError) as exc:
            logger.warning("option chain listings not cached (cache unavailable): %s", exc)
    return chains


def smile_quotes_add(*, broker: Broker, positions, quotes: dict[str, Quote], delta_models) -> dict[str, Quote]:
    """`quotes` plus those of the chain strikes around the money of each held option expiry whose
    underlying hedges on the sticky-moneyness delta (its smile is fitted to them: `risk.smile`) or
    the minimum-variance one (they are its history: `risk.option_history`, which re-estimates it).
    The chains are listed through the cache of listings (`option_chains_list`); the quotes are
    asked each time. A broker that cannot list or quote them leaves `quotes` as they are: those
    legs keep their sticky-strike delta and say why (`InstrumentRisk.delta_note`)."""
    from risk.book import delta_model_for, smile_chain

    held = [p.instrument for p in positions if p.quantity and p.instrument.is_option
            and delta_model_for(delta_models, p.instrument.symbol).name in ("sticky_moneyness", "minimum_variance")]
    forwards: dict[Instrument, float] = {}
    for future in sorted({option.underlying_future() for option in held}, key=lambda future: future.key):
        forward = next((quotes[o.key].underlying_price for o in held if o.underlying_future() == future
                        and o.key in quotes and quotes[o.key].underlying_price is not None), None)
        if forward is not None:
            forwards[future] = forward
    # the broker's clock when it is ahead of ours (a simulated market moved forward)
    now = max([timezone.now(), *(quote.time for quote in quotes.values() if quote.time and quote.time.tzinfo)])
    chains = option_chains_list(broker=broker, futures=list(forwards), now=now)
    wanted: dict[str, Instrument] = {}
    for future, forward in forwards.items():
        if future.key not in chains:
            continue
        options = [o for o in held if o.underlying_future() == future]
        wanted.update({o.key: o for o in smile_chain(options, chains[future.key], forward) if o.key not in quotes})
    if not wanted:
        return quotes
    try:
        extra = broker.quotes(list(wanted.values()))
    except BrokerError as exc:
        logger.warning("smile chain not quoted: %s", exc.code)
        return quotes
    return {**quotes, **{quote.instrument.key: quote for quote in extra}}


def book_refresh(*, broker: Broker, also_quote: Sequence[Instrument] = ()) -> BookSnapshot:
    """Sync positions and fills from the broker, quote the book (and `also_quote`) and value it.
    Fills are read before positions, so a fill recorded is always in the positions too: the
    remaining quantity of a working order (its status, corrected by its recorded fills, see
    risk.selectors.working_order_legs) may count a fill twice for one sync, never miss one."""
    from risk.book import value_book
    from risk.selectors import delta_models_get

    now = timezone.now()
    health = broker.health()
    new_fills = fills_record(fills=broker.fills_since(_last_fill_time()))
    positions = broker.positions()
    positions_sync(positions=positions, now=now)
    quotes = quotes_for(broker=broker, instruments=[*(position.instrument for position in positions), *also_quote])
    models = delta_models_get()
    quotes = smile_quotes_add(broker=broker, positions=positions, quotes=quotes, delta_models=models)
    valuation = value_book(positions, quotes, now=now, rate=settings.RISK_FREE_RATE, delta_models=models)
    return BookSnapshot(valuation=valuation, quotes=quotes, health=health, new_fills=new_fills, delta_models=models)


def _last_fill_time() -> datetime:
    last = FillRow.objects.order_by("-executed_at").values_list("executed_at", flat=True).first()
    return last or datetime(2000, 1, 1, tzinfo=UTC)


def connection_health_record(*, client: Client, error: BrokerError | None, health: BrokerHealth | None) -> None:
    """Record the outcome of a scheduled use of the broker link; audit only changes of state, so
    an outage is one `broker.failed` row and its end one `broker.connected`, not one per minute."""
    connection = BrokerConnection.objects.filter(singleton=True).first()
    if connection is None:  # the default simulated market: nothing stored to report on
        return
    connected = error is None and health is not None and health.connected
    status = BrokerConnection.Status.CONNECTED if connected else BrokerConnection.Status.FAILED
    changed = status != connection.status
    connection.status = status
    connection.last_error = error.payload() if error else None
    connection.last_checked_at = timezone.now()
    connection.save(update_fields=["status", "last_error", "last_checked_at", "updated_at"])
    if changed:
        audit.audit_record(
            client_id=client.client_id, actor_type="system", actor_id="book-sync",
            kind=kinds.BROKER_CONNECTED if connected else kinds.BROKER_FAILED,
            payload={"broker": connection.broker, "routed_to": routed_broker(connection.broker),
                     "status": status, "error": connection.last_error},
        )


def broker_connection_test(*, client: Client) -> tuple[BrokerHealth | None, BrokerError | None]:
    """Ask the client's broker whether it answers now, and record the outcome as a scheduled use
    would (audited only when the state changes)."""
    try:
        with broker_session() as broker:
            health = broker.health()
    except BrokerError as exc:
        connection_health_record(client=client, error=exc, health=None)
        return None, exc
    connection_health_record(client=client, error=None, health=health)
    return health, None
