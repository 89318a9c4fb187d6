"""The session process: one connected `IBKRBroker` per IB account, serving calls from Redis.

Rules it keeps:
- one session per account (`protocol.session_key`), several accounts per process; client ids on
  one gateway are allocated so that two sessions never ask for the same one (and a 326 from a
  client outside the process moves the session to the next id);
- every message of a session goes through its one wire pacer (`brokers.ibkr.pacing`);
- a request whose caller's deadline has passed is dropped unexecuted;
- an order id is placed at most once: placements of one account are serialised, and an id the
  session saw before — in TWS's open and completed orders and executions (loaded at connect,
  followed by events since) or in the journal — is answered with its status, never sent again;
- order status and fills are journaled in Redis as IB reports them, so that after TWS's daily or
  Sunday restart (which forgets the previous day's completed orders and executions) an order
  whose outcome the platform has not yet recorded is still found, not reported "never received";
- while the gateway is down (weekly re-login, restart, hung) or TWS has no link to IB (1100),
  nothing is sent: calls fail at once with a retryable error naming the state, and the session
  reconnects in the background with backoff;
- Redis down is not the gateway down: the process keeps running and its IB sessions stay
  connected (and keep following order status and fills); it waits for Redis, retrying every
  `REDIS_RETRY_SECONDS`, and serves again as soon as Redis answers. Journal entries Redis could not
  take are kept and written once it is back; an order is not placed while the journal cannot be
  read.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import redis

from brokers.domain import BrokerError, BrokerHealth, Fill, OrderRequest, OrderStatus
from brokers.ibkr.broker import IBKRBroker, IBKRConfig
from brokers.ibkr.contracts import utc_now
from brokers.ibkr.errors import BROKER_NAME
from brokers.ibkr.session import codec, protocol

logger = logging.getLogger(__name__)

PASSTHROUGH = frozenset({"lookup_instrument", "quotes", "listed_futures", "option_chain",
                         "underlying", "positions", "cancel_order", "account_summary",
                         "settings_resolve"})
MAX_BACKOFF_SECONDS = 60.0
REDIS_RETRY_SECONDS = 0.5


def _redis_error(operation: str, exc: redis.RedisError) -> BrokerError:
    return BrokerError(operation=operation, broker=BROKER_NAME, code="redis_unavailable",
                       message=f"Redis, which holds the session's journal, does not answer "
                               f"({type(exc).__name__}); nothing was sent to IB", retryable=True)


class Journal:
    """What IB told this session about its orders and fills, kept in Redis for a week.

    A write never fails its caller (an IB event, a placement already made): what Redis does not
    take is kept here, newest value per entry, and written by `flush` (the session's supervisor,
    every second) once Redis answers again."""

    def __init__(self, client: redis.Redis, session: str) -> None:
        self._redis = client
        self._orders, self._fills = protocol.journal_keys(session)
        self._pending: dict[tuple[str, str], str] = {}  # (hash, field) -> JSON not yet written
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time: an older value never lands last

    def order_status(self, status: OrderStatus) -> None:
        self._write(self._orders, status.client_order_id, status)

    def fill(self, fill: Fill) -> None:
        self._write(self._fills, fill.fill_id, fill)

    def _write(self, key: str, field: str, value: Any) -> None:
        with self._pending_lock:
            self._pending[(key, field)] = json.dumps(codec.encode(value))
        self.flush()

    def flush(self) -> None:
        """Write what is pending; on a Redis error keep it for the next flush."""
        with self._flush_lock:
            with self._pending_lock:
                pending = dict(self._pending)
            if not pending:
                return
            pipe = self._redis.pipeline()
            for (key, field), raw in pending.items():
                pipe.hset(key, field, raw)
            for key in {key for key, _ in pending}:
                pipe.expire(key, protocol.JOURNAL_TTL_SECONDS)
            try:
                pipe.execute()
            except redis.RedisError as exc:
                logger.warning("IBKR journal: %d entr%s kept until Redis answers (%s)", len(pending),
                               "y" if len(pending) == 1 else "ies", type(exc).__name__)
                return
            with self._pending_lock:
                for entry, raw in pending.items():
                    if self._pending.get(entry) == raw:
                        del self._pending[entry]

    @property
    def pending(self) -> int:
        with self._pending_lock:
            return len(self._pending)

    def _unwritten(self, key: str) -> dict[str, Any]:
        with self._pending_lock:
            return {field: codec.decode(json.loads(raw))
                    for (k, field), raw in self._pending.items() if k == key}

    def status(self, client_order_id: str) -> OrderStatus | None:
        """Raises redis.RedisError when Redis does not answer and nothing is pending for it."""
        unwritten = self._unwritten(self._orders).get(client_order_id)
        if unwritten is not None:
            return unwritten
        raw = self._redis.hget(self._orders, client_order_id)
        return codec.decode(json.loads(raw)) if raw else None

    def fills_since(self, since: datetime) -> list[Fill]:
        fills = {f.fill_id: f for f in (codec.decode(json.loads(raw))
                                        for raw in self._redis.hvals(self._fills))}
        fills.update(self._unwritten(self._fills))
        return [f for f in fills.values() if f.time >= since]


class AccountSession:
    """One IB account's long-lived connection, its supervisor thread and its request workers."""

    def __init__(self, key: str, credentials: dict[str, Any], client_id: int,
                 client: redis.Redis, *, workers: int = 4, keepalive_seconds: float = 30.0) -> None:
        self.key = key
        self.credentials = credentials
        self._redis = client
        self.journal = Journal(client, key)
        config = IBKRConfig.from_credentials(credentials, client_id=client_id, connect_retries=0)
        self.broker = IBKRBroker(config, listener=self.journal)
        self._host = f"{config.host}:{config.port}"
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"ibkr-{key[:6]}")
        self._place_lock = threading.Lock()
        self._keepalive = keepalive_seconds
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self.phase = "connecting"
        self.last_used = time.monotonic()
        self.down_since: datetime | None = None
        self.last_error: dict[str, Any] | None = None
        self.unanswered: str | None = None  # the last keepalive's failure, while it lasts
        self._supervisor = threading.Thread(target=self._supervise, name=f"ibkr-sup-{key[:6]}",
                                            daemon=True)

    def start(self) -> AccountSession:
        self._supervisor.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._supervisor.join(15)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.broker.disconnect()
        self.journal.flush()
        try:
            self._redis.delete(protocol.state_key(self.key))
        except redis.RedisError:
            logger.warning("IBKR session %s: state not withdrawn (Redis down); it expires", self.key)

    # ------------------------------------------------------------------ connection

    def _supervise(self) -> None:
        backoff, next_ping = 1.0, 0.0
        while not self._stop.is_set():
            if not self.broker.is_ready:
                self.phase = "connecting"
                self.publish()
                try:
                    self.broker.connect()
                except BrokerError as exc:
                    self.phase = "gateway_down"
                    self.down_since = self.down_since or utc_now()
                    self.last_error = exc.payload()
                    self._first_attempt.set()
                    self.publish()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                backoff, self.down_since = 1.0, None
                self._first_attempt.set()
            if time.monotonic() >= next_ping:  # a TWS that hangs after the handshake shows too
                next_ping = time.monotonic() + self._keepalive
                ping = self.broker.health()
                self.unanswered = None if ping.connected or self.broker.link.link_down else ping.detail
            self.phase = ("link_down" if self.broker.link.link_down is not None
                          else "unresponsive" if self.unanswered else "connected")
            self.publish()
            self.journal.flush()  # what an outage of Redis kept back
            self._stop.wait(1.0)

    def detail(self) -> str:
        if self.phase == "gateway_down":
            since = f" since {self.down_since:%Y-%m-%d %H:%M} UTC" if self.down_since else ""
            reason = (self.last_error or {}).get("message", "")
            return (f"IB Gateway/TWS at {self._host} does not answer{since} (weekly re-login, "
                    f"restart or hung); nothing is sent until it is back. {reason}").strip()
        if self.phase == "connecting":
            return f"connecting to IB Gateway/TWS at {self._host}"
        if self.phase == "unresponsive":
            return (f"IB Gateway/TWS at {self._host} is connected but did not answer a keepalive "
                    f"({self.unanswered}); calls may time out")
        return self.broker.link.describe() or "connected"

    def state(self) -> dict[str, Any]:
        return {
            "phase": self.phase, "detail": self.detail(), "client_id": self.broker.client_id,
            "link": self.broker.link.snapshot(), "last_error": self.last_error,
            "down_since": self.down_since.isoformat() if self.down_since else None,
            "model_valuation": self.broker.link.model_valuation,
            "updated_at": utc_now().isoformat(),
        }

    def publish(self) -> None:
        try:
            self._redis.set(protocol.state_key(self.key), json.dumps(self.state()),
                            ex=protocol.STATE_TTL_SECONDS)
        except redis.RedisError:
            logger.warning("IBKR session %s: state not published (Redis down)", self.key)

    # ------------------------------------------------------------------ requests

    def submit(self, request: dict[str, Any]) -> None:
        self.last_used = time.monotonic()
        self._pool.submit(self._serve, request)

    def _serve(self, request: dict[str, Any]) -> None:
        method = request["method"]
        if time.time() > request["deadline"]:
            logger.warning("IBKR session %s: %s request %s dropped, its caller's deadline passed",
                           self.key, method, request["id"])
            return
        try:
            body = {"ok": codec.encode(self.execute(method, codec.decode(request["args"]),
                                                    request["deadline"]))}
        except BrokerError as exc:
            body = {"error": codec.error_encode(exc)}
        except redis.RedisError as exc:  # the journal could not be read: nothing was sent
            logger.warning("IBKR session %s: %s not served, Redis does not answer (%s)", self.key,
                           method, type(exc).__name__)
            body = {"error": codec.error_encode(_redis_error(method, exc))}
        except Exception as exc:  # our bug: say so, never a traceback to the caller
            logger.exception("IBKR session %s: %s failed", self.key, method)
            body = {"error": codec.error_encode(BrokerError(
                operation=method, broker=BROKER_NAME, code="internal_error",
                message=type(exc).__name__, retryable=False))}
        pipe = self._redis.pipeline()
        pipe.lpush(protocol.reply_key(request["id"]), json.dumps(body))
        pipe.expire(protocol.reply_key(request["id"]), protocol.REPLY_TTL_SECONDS)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            # the caller's wait failed with the same outage: it reports the outcome unknown, and
            # its retry under the same client order id is answered from what the session knows
            logger.warning("IBKR session %s: the reply to %s %s was lost, Redis does not answer (%s)",
                           self.key, method, request["id"], type(exc).__name__)

    def execute(self, method: str, args: dict[str, Any], deadline: float) -> Any:
        if method not in PASSTHROUGH | {"health", "place_order", "order_status", "fills_since"}:
            raise BrokerError(operation=method, broker=BROKER_NAME, code="invalid_request",
                              message=f"unknown operation {method}", retryable=False)
        # a session met for the first time answers after its first connection attempt; later,
        # a session that is not connected answers at once
        self._first_attempt.wait(max(min(deadline - time.time() - 0.5, 10.0), 0))
        if method == "health":
            return self._health()
        if not self.broker.is_ready:
            raise BrokerError(operation=method, broker=BROKER_NAME,
                              code="gateway_down" if self.phase == "gateway_down" else "not_connected",
                              message=self.detail(), retryable=True,
                              context={"phase": self.phase})
        if method == "place_order":
            return self._place(args["order"], deadline)
        if method == "order_status":
            cid = args["client_order_id"]
            return self.broker.order_status(cid) or self.journal.status(cid)
        if method == "fills_since":
            return self._fills_since(args["since"])
        return getattr(self.broker, method)(**args)

    def _health(self) -> BrokerHealth:
        """From what the session knows (events, the supervisor's keepalive): no message to TWS,
        so that health never waits behind a burst in the pacer."""
        ready = self.broker.is_ready
        if not ready or self.phase in ("gateway_down", "unresponsive"):
            return BrokerHealth(BROKER_NAME, False, self.detail(), utc_now())
        link = self.broker.link
        trouble = link.describe()
        detail = f"live session as client {self.broker.client_id}" + (f"; {trouble}" if trouble else "")
        return BrokerHealth(BROKER_NAME, link.link_down is None, detail, utc_now())

    def _place(self, order: OrderRequest, deadline: float) -> OrderStatus:
        cid = order.client_order_id
        with self._place_lock:
            if time.time() > deadline:  # waited behind other placements past the caller's patience
                raise BrokerError(operation="place_order", broker=BROKER_NAME, code="deadline_exceeded",
                                  message="order not sent: its caller's deadline passed while queued",
                                  retryable=True, context={"client_order_id": cid})
            known = self.journal.status(cid)
            if known is not None:
                logger.info("IBKR session %s: order %s already journaled (%s); not sent again",
                            self.key, cid, known.state)
                return self.broker.order_status(cid) or known
            status = self.broker.place_order(order)
            self.journal.order_status(status)
            return status

    def _fills_since(self, since: datetime) -> list[Fill]:
        fills = {f.fill_id: f for f in self.journal.fills_since(since)}
        fills.update((f.fill_id, f) for f in self.broker.fills_since(since))
        return sorted(fills.values(), key=lambda f: (f.time, f.fill_id))


class SessionServer:
    """The request loop and the set of account sessions."""

    def __init__(self, client: redis.Redis, *,
                 discover: Callable[[], list[dict[str, Any]]] | None = None,
                 scan_seconds: float = 30.0, keepalive_seconds: float = 30.0) -> None:
        self._redis = client
        self._keepalive = keepalive_seconds
        self._discover = discover
        self._scan_seconds = scan_seconds
        self._sessions: dict[str, tuple[str, AccountSession]] = {}  # key -> (fingerprint, session)
        self.stopping = threading.Event()

    def _allocate_client_id(self, host: str, port: int, wanted: int) -> int:
        used = {s.broker.client_id for _, s in self._sessions.values()
                if (s.credentials["host"], s.credentials["port"]) == (host, port)}
        while wanted in used:
            wanted += 1
        return wanted

    def ensure(self, credentials: dict[str, Any]) -> AccountSession:
        """The session of these credentials, started (or restarted when they changed)."""
        key = protocol.session_key(credentials)
        fingerprint = protocol.credentials_fingerprint(credentials)
        current = self._sessions.get(key)
        if current is not None and current[0] == fingerprint:
            return current[1]
        if current is not None:
            logger.info("IBKR session %s: credentials changed; reconnecting", key)
            del self._sessions[key]
            current[1].close()
        client_id = self._allocate_client_id(credentials["host"], credentials["port"],
                                             credentials["client_id"])
        session = AccountSession(key, credentials, client_id, self._redis,
                                 keepalive_seconds=self._keepalive).start()
        self._sessions[key] = (fingerprint, session)
        logger.info("IBKR session %s: started for %s:%s as client %d", key, credentials["host"],
                    credentials["port"], client_id)
        return session

    def run(self) -> None:
        next_scan = next_alive = 0.0
        redis_down_since: float | None = None
        while not self.stopping.is_set():
            if self._discover is not None and time.monotonic() >= next_scan:
                next_scan = time.monotonic() + self._scan_seconds
                self._scan()
            try:
                if time.monotonic() >= next_alive:  # not before every request: one round trip less
                    self._redis.set(protocol.alive_key(), "1", ex=protocol.ALIVE_TTL_SECONDS)
                    next_alive = time.monotonic() + 1.0
                item = self._redis.brpop([protocol.requests_key()], timeout=1)
            except redis.RedisError as exc:
                # the sessions stay connected to TWS; the loop waits for Redis, and says alive at
                # once when it is back
                if redis_down_since is None:
                    redis_down_since = time.monotonic()
                    logger.warning("IBKR sessions: Redis does not answer (%s); the IB sessions stay "
                                   "connected, calls are served again when it is back", exc)
                next_alive = 0.0
                self.stopping.wait(REDIS_RETRY_SECONDS)
                continue
            if redis_down_since is not None:
                logger.info("IBKR sessions: Redis answers again after %.1f s; serving",
                            time.monotonic() - redis_down_since)
                redis_down_since = None
            if item is not None:
                self._dispatch(item[1])
        self.close()

    def _scan(self) -> None:
        try:
            stored = {protocol.session_key(c): c for c in self._discover()}  # type: ignore[misc]
        except Exception as exc:
            from tradingplatform.outages import outage_logged, unavailable_dependency

            if (dependency := unavailable_dependency(exc)) is None:  # our bug: its traceback
                logger.exception("IBKR sessions: scanning stored credentials failed; next scan retries")
            else:  # an outage: one line, no traceback (tradingplatform.outages)
                outage_logged(dependency, exc, "ibkr_sessions scan")
            return
        for credentials in stored.values():
            self.ensure(credentials)
        # an account no client stores any more (switched broker, changed gateway) is let go once
        # no call has used it for a whole scan interval
        idle_since = time.monotonic() - self._scan_seconds
        for key in [k for k, (_, s) in self._sessions.items()
                    if k not in stored and s.last_used < idle_since]:
            logger.info("IBKR session %s: no client stores it any more; disconnecting", key)
            self._sessions.pop(key)[1].close()

    def _dispatch(self, raw: bytes) -> None:
        try:
            request = json.loads(raw)
            session = self.ensure(request["credentials"])
        except (ValueError, KeyError, TypeError):
            logger.warning("IBKR sessions: a malformed request was dropped")
            return
        session.submit(request)

    def close(self) -> None:
        try:
            self._redis.delete(protocol.alive_key())
        except redis.RedisError:
            logger.warning("IBKR sessions: alive key not withdrawn (Redis down); it expires")
        for _, session in self._sessions.values():
            session.close()
        self._sessions.clear()
