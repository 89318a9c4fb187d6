"""`IBKRSessionBroker`: the Broker the web and the workers use for an IBKR client.

It holds no connection: every call is one request to the session process over Redis, bounded by
one deadline (`IBKR_CALL_DEADLINE_SECONDS`) for its whole life — queueing, pacing, TWS's answer.
No retry happens here, so a caller holding the client's lock holds it for one deadline at most; the
session process does the reconnecting, in the background. A call that times out is reported as
retryable with an unknown outcome (for an order: ask `order_status` before sending it again; the
process also refuses to place an order id it has seen).

Redis down fails a call at once, never at its deadline: `session_process_unreachable`, retryable,
caused by the Redis error (so that the API answers it as the outage it is: 503 `dependency:
redis`). `context["sent"]` says whether the request had reached Redis (then its outcome is
unknown: it may have run, or may run once Redis is back within its deadline).
"""
from __future__ import annotations

import functools
import json
import time
import uuid
from datetime import date, datetime
from typing import Any

import redis
from django.conf import settings

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
from brokers.ibkr.errors import BROKER_NAME
from brokers.ibkr.session import codec, protocol

_WAIT_SLICE = 2.0  # seconds; under the client's socket timeout
_alive_seen: dict[redis.Redis, float] = {}  # client -> when the process was last seen alive


@functools.cache
def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


class IBKRSessionBroker(Broker):
    name = BROKER_NAME

    def __init__(self, credentials: dict[str, Any], *, deadline_seconds: float | None = None,
                 redis_url: str | None = None) -> None:
        self._credentials = dict(credentials)
        self._key = protocol.session_key(credentials)
        self._deadline = float(deadline_seconds or settings.IBKR_CALL_DEADLINE_SECONDS)
        self._redis = redis_client(redis_url or settings.REDIS_URL)

    @classmethod
    def from_credentials(cls, validated: dict[str, Any]) -> IBKRSessionBroker:
        return cls(validated)

    # ------------------------------------------------------------------ plumbing

    def _error(self, operation: str, code: str, message: str, **context: Any) -> BrokerError:
        return BrokerError(operation=operation, broker=BROKER_NAME, code=code, message=message,
                           retryable=True, context=context)

    def _unreachable(self, operation: str, *, sent: bool) -> BrokerError:
        outcome = ("the call had been handed over: its outcome is unknown (an order is asked for "
                   "by its id before any resend)" if sent else "nothing was sent")
        return self._error(operation, "session_process_unreachable",
                           f"Redis, through which the IBKR session process is reached, does not "
                           f"answer; {outcome}", dependency="redis", sent=sent)

    def _process_alive(self, operation: str) -> None:
        if time.monotonic() - _alive_seen.get(self._redis, -1e9) < 1.0:
            return  # seen alive within the last second: spare the round trip
        try:
            alive = self._redis.exists(protocol.alive_key())
        except redis.RedisError as exc:
            raise self._unreachable(operation, sent=False) from exc
        if not alive:
            raise self._error(operation, "session_process_down",
                              "the IBKR session process is not running (make run starts it; "
                              "compose: service ibkr-sessions)")
        _alive_seen[self._redis] = time.monotonic()

    def _call(self, operation: str, **args: Any) -> Any:
        self._process_alive(operation)
        request_id = uuid.uuid4().hex
        deadline = time.time() + self._deadline
        request = {"id": request_id, "key": self._key, "credentials": self._credentials,
                   "method": operation, "args": codec.encode(args), "deadline": deadline}
        sent = False
        try:
            self._redis.lpush(protocol.requests_key(), json.dumps(request))
            sent = True
            reply = None
            while reply is None and time.time() < deadline:
                # in slices shorter than the socket timeout, so that a dead Redis is noticed
                reply = self._redis.blpop([protocol.reply_key(request_id)],
                                          timeout=min(max(deadline - time.time(), 0.01), _WAIT_SLICE))
        except redis.RedisError as exc:
            raise self._unreachable(operation, sent=sent) from exc
        if reply is None:
            raise self._error(operation, "deadline_exceeded",
                              f"no answer from the IBKR session within {self._deadline:g} s; the "
                              "outcome is unknown (an order is asked for by its id before any "
                              "resend)", deadline_seconds=self._deadline)
        body = json.loads(reply[1])
        if "error" in body:
            raise codec.error_decode(body["error"])
        return codec.decode(body["ok"])

    # ------------------------------------------------------------------ Broker

    def connect(self) -> None:
        """Nothing to open: the session process holds the connection. Fails fast when it is down."""
        self._process_alive("connect")

    def disconnect(self) -> None:
        """The session stays up for the next caller."""

    def health(self) -> BrokerHealth:
        return self._call("health")

    def session_state(self) -> dict[str, Any] | None:
        """What the process last published about this account's session (no round trip to it)."""
        raw = self._redis.get(protocol.state_key(self._key))
        return json.loads(raw) if raw else None

    def lookup_instrument(self, *, symbol: str, sec_type: SecType, expiry: date | None = None,
                          strike: float | None = None, right: Right | None = None) -> Instrument:
        return self._call("lookup_instrument", symbol=symbol, sec_type=sec_type, expiry=expiry,
                          strike=strike, right=right)

    def quotes(self, instruments: list[Instrument]) -> list[Quote]:
        return self._call("quotes", instruments=instruments)

    def listed_futures(self, symbol: str) -> list[Instrument]:
        return self._call("listed_futures", symbol=symbol)

    def option_chain(self, underlying: Instrument) -> list[Instrument]:
        return self._call("option_chain", underlying=underlying)

    def underlying(self) -> Instrument:
        return self._call("underlying")

    def positions(self) -> list[Position]:
        return self._call("positions")

    def place_order(self, order: OrderRequest) -> OrderStatus:
        return self._call("place_order", order=order)

    def cancel_order(self, client_order_id: str) -> OrderStatus:
        return self._call("cancel_order", client_order_id=client_order_id)

    def order_status(self, client_order_id: str) -> OrderStatus | None:
        return self._call("order_status", client_order_id=client_order_id)

    def fills_since(self, since: datetime) -> list[Fill]:
        return self._call("fills_since", since=since)

    def account_summary(self) -> AccountSummary:
        return self._call("account_summary")

    def settings_resolve(self) -> dict[str, Any]:
        return self._call("settings_resolve")
