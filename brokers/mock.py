"""The mock broker: `brokers.domain.Broker` over the simulated market of `brokers.simulator`.

The platform's default broker. The account's whole state lives in a `SimulatorStateStore`: loaded
on `connect()`, saved after every call that changed it (a call that only read prices saves
nothing: replaying the minutes it saw gives the same result). The database-backed store is the
platform's; this module brings an in-memory one and a JSON-file one for tests and benchmarks.

One `MockBroker` is one client's account. It serializes its own calls with a lock; two processes
driving the same account must each connect (load), act and finish under the platform's per-client
lock, since the store protocol has no compare-and-swap.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rest_framework import serializers

from brokers.domain import (
    AccountSummary,
    Broker,
    BrokerError,
    BrokerHealth,
    Fill,
    Instrument,
    OrderRequest,
    OrderStatus,
    Position,
    Quote,
    Right,
    SecType,
)
from brokers.simulator import (
    DEFAULT_COMMISSION_PER_CONTRACT,
    DEFAULT_SEED,
    QuoteMode,
    SimClock,
    SimConfig,
    SimulatedMarket,
    SimulationError,
)

T = TypeVar("T")


class SimulatorStateStore(Protocol):
    """Where a simulated account's state lives between connections."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...


class InMemoryStateStore:
    """Keeps the state as JSON text, so that what is saved is exactly what a real store would get."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self._text = json.dumps(state) if state is not None else None
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        return json.loads(self._text) if self._text is not None else None

    def save(self, state: dict[str, Any]) -> None:
        self._text = json.dumps(state)
        self.saves += 1


class JsonFileStateStore:
    """One JSON file, replaced atomically (temp file in the same folder, fsync, os.replace)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        try:
            with self.path.open(encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(state, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


class MockCredentialsSerializer(serializers.Serializer):
    """The mock broker's credentials: nothing secret, every field optional."""

    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1)
    always_open = serializers.BooleanField(required=False, default=True)
    slippage_ticks = serializers.IntegerField(required=False, default=0, min_value=0, max_value=100)
    commission_per_contract = serializers.FloatField(
        required=False, default=DEFAULT_COMMISSION_PER_CONTRACT, min_value=0.0, max_value=1000.0
    )


class MockBroker(Broker):
    name = "mock"

    def __init__(
        self, *, config: SimConfig, store: SimulatorStateStore, clock: SimClock | None = None
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._market: SimulatedMarket | None = None
        self._connected = False
        self._lock = threading.RLock()

    @classmethod
    def from_credentials(
        cls, validated: dict[str, Any], *, store: SimulatorStateStore, clock: SimClock | None = None
    ) -> MockBroker:
        """From `MockCredentialsSerializer(...).validated_data`. An account already in the store keeps
        its seed (its market); the execution settings given here replace the stored ones."""
        config = SimConfig(
            seed=validated.get("seed", DEFAULT_SEED),
            always_open=validated.get("always_open", True),
            slippage_ticks=validated.get("slippage_ticks", 0),
            commission_per_contract=float(
                validated.get("commission_per_contract", DEFAULT_COMMISSION_PER_CONTRACT)
            ),
        )
        return cls(config=config, store=store, clock=clock)

    # --- connection -----------------------------------------------------------------------

    def connect(self) -> None:
        with self._lock:
            state = self._guard("connect", self._store.load, store_call=True)
            try:
                market = self._open_market(state)
            except (KeyError, TypeError, ValueError) as error:
                raise BrokerError(
                    operation="connect", broker=self.name, code="state_invalid",
                    message="the stored simulator state cannot be read", retryable=False,
                    context={"error_type": type(error).__name__},
                ) from error
            self._market = market
            reconnected = market.attempt_reconnect()
            if state is None or market.revision:  # new, re-configured or reconnected: save
                self._save("connect")
            if not reconnected:
                self._connected = False
                raise BrokerError(
                    operation="connect", broker=self.name, code="connect_failed",
                    message="the simulated connection could not be re-established", retryable=True,
                )
            self._connected = True

    def _open_market(self, state: dict[str, Any] | None) -> SimulatedMarket:
        if state is None:
            return SimulatedMarket(self._config, clock=self._clock or SimClock.wall())
        market = SimulatedMarket.from_state(state, clock=self._clock)
        market.update_execution_settings(
            always_open=self._config.always_open,
            slippage_ticks=self._config.slippage_ticks,
            commission_per_contract=self._config.commission_per_contract,
        )
        return market

    def disconnect(self) -> None:
        with self._lock:
            self._connected = False

    def health(self) -> BrokerHealth:
        with self._lock:
            market = self._market
            if market is None or not self._connected:
                return BrokerHealth(self.name, False, "not connected", checked_at=self._safe_now())
            if market.disconnected:
                return BrokerHealth(
                    self.name, False, "connection lost (injected)", checked_at=self._safe_now()
                )
            now = market.now()
            return BrokerHealth(
                self.name, True, f"simulated market, seed {market.config.seed}, at {now:%Y-%m-%d %H:%M:%S}Z",
                checked_at=now,
            )

    def _safe_now(self) -> datetime | None:
        clock = self._market.clock if self._market is not None else self._clock
        return clock.now() if clock is not None else None

    # --- Broker ---------------------------------------------------------------------------

    def lookup_instrument(
        self,
        *,
        symbol: str,
        sec_type: SecType,
        expiry: date | None = None,
        strike: float | None = None,
        right: Right | None = None,
    ) -> Instrument:
        return self._call(
            "lookup_instrument",
            lambda m: m.lookup(symbol=symbol, sec_type=sec_type, expiry=expiry, strike=strike, right=right),
            context={"symbol": str(symbol), "sec_type": str(sec_type)},
        )

    def quotes(self, instruments: list[Instrument]) -> list[Quote]:
        return self._call("quotes", lambda m: m.quotes(list(instruments)))

    def listed_futures(self, symbol: str) -> list[Instrument]:
        return self._call("listed_futures", lambda m: m.listed_futures(symbol), context={"symbol": str(symbol)})

    def option_chain(self, underlying: Instrument) -> list[Instrument]:
        return self._call("option_chain", lambda m: m.option_chain(underlying))

    def positions(self) -> list[Position]:
        return self._call("positions", lambda m: m.positions())

    def place_order(self, order: OrderRequest) -> OrderStatus:
        return self._call(
            "place_order", lambda m: m.place_order(order), context={"client_order_id": order.client_order_id}
        )

    def cancel_order(self, client_order_id: str) -> OrderStatus:
        return self._call(
            "cancel_order",
            lambda m: m.cancel_order(client_order_id),
            context={"client_order_id": client_order_id},
        )

    def order_status(self, client_order_id: str) -> OrderStatus | None:
        return self._call(
            "order_status",
            lambda m: m.order_status(client_order_id),
            context={"client_order_id": client_order_id},
        )

    def fills_since(self, since: datetime) -> list[Fill]:
        return self._call("fills_since", lambda m: m.fills_since(since))

    def account_summary(self) -> AccountSummary:
        return self._call("account_summary", lambda m: m.account_summary())

    # --- the simulated market's controls (tests, benchmarks, demos) ------------------------

    @property
    def simulator(self) -> SimulatedMarket:
        """The live market (after `connect`). Changes made on it directly are saved by the next
        broker call that changes state; prefer the methods below, which save at once."""
        if self._market is None:
            raise BrokerError(operation="simulator", broker=self.name, code="not_connected",
                              message="connect first", retryable=True)
        return self._market

    def shock(self, symbol: str, pct: float, *, at: datetime | None = None, vol_points: float = 0.0) -> None:
        self._control("shock", lambda m: m.shock(symbol, pct, at=at, vol_points=vol_points))

    def set_spread_multiplier(self, symbol: str | None, multiplier: float) -> None:
        self._control("set_spread_multiplier", lambda m: m.set_spread_multiplier(symbol, multiplier))

    def set_quote_mode(self, symbol: str | None, mode: QuoteMode) -> None:
        self._control("set_quote_mode", lambda m: m.set_quote_mode(symbol, mode))

    def set_fill_ratio(self, ratio: float) -> None:
        self._control("set_fill_ratio", lambda m: m.set_fill_ratio(ratio))

    def inject_rejections(
        self, count: int, *, code: str = "rejected", message: str = "rejected by the simulated broker"
    ) -> None:
        self._control("inject_rejections", lambda m: m.inject_rejections(count, code=code, message=message))

    def inject_disconnect(self, *, failed_reconnects: int = 0) -> None:
        """Every call now raises a retryable BrokerError until `connect()` succeeds; the next
        `failed_reconnects` connects fail too."""
        self._control("inject_disconnect", lambda m: m.inject_disconnect(failed_reconnects=failed_reconnects))

    def _control(self, operation: str, action: Callable[[SimulatedMarket], None]) -> None:
        with self._lock:
            market = self.simulator
            revision = market.revision
            self._guard(operation, lambda: action(market))
            if market.revision != revision:
                self._save(operation)

    # --- plumbing -------------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        action: Callable[[SimulatedMarket], T],
        context: dict[str, Any] | None = None,
    ) -> T:
        with self._lock:
            market = self._market
            if market is None or not self._connected:
                raise BrokerError(operation=operation, broker=self.name, code="not_connected",
                                  message="the mock broker is not connected", retryable=True, context=context)
            if market.disconnected:
                raise BrokerError(operation=operation, broker=self.name, code="disconnected",
                                  message="the connection to the simulated broker is lost", retryable=True,
                                  context=context)
            revision = market.revision
            result = self._guard(operation, lambda: action(market), context=context)
            if market.revision != revision:
                self._save(operation)
            return result

    def _save(self, operation: str) -> None:
        market = self._market
        self._guard(operation, lambda: self._store.save(market.to_state()), store_call=True)

    def _guard(
        self, operation: str, action: Callable[[], T], *, context: dict[str, Any] | None = None,
        store_call: bool = False,
    ) -> T:
        """Run `action`, letting only BrokerError out."""
        try:
            return action()
        except BrokerError:
            raise
        except SimulationError as error:
            raise BrokerError(
                operation=operation, broker=self.name, code=error.code, message=error.message,
                retryable=error.retryable, context={**(context or {}), **error.context},
            ) from error
        except Exception as error:
            if store_call:
                code, message, retryable = "state_store_failed", "the simulator state store failed", True
            elif isinstance(error, (ValueError, TypeError, KeyError)):
                code, message, retryable = "invalid_request", str(error), False
            else:
                code, message, retryable = "simulator_failure", "the simulated market failed", False
            raise BrokerError(
                operation=operation, broker=self.name, code=code, message=message, retryable=retryable,
                context={**(context or {}), "error_type": type(error).__name__},
            ) from error
