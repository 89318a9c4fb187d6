"""PhillipCapital adapter: the client side of the REST contract in docs/brokers/phillip.md.

Retries are a small explicit loop rather than urllib3's `Retry`: urllib3 cannot parse a fractional
`Retry-After`, reports exhaustion as an exception that has lost the status and attempt count, and
knows nothing of the one token refresh a 401 earns. The loop retries timeouts, connection
failures, 429 and 5xx, including on `POST` — safe here only because every `POST` of the contract
is idempotent (`POST /orders` by `client_order_id`). Nothing else is retried.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import email.utils
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any, NoReturn
from urllib.parse import quote as url_quote

import requests
from django.core.validators import URLValidator
from requests.adapters import HTTPAdapter
from rest_framework import serializers

from brokers.domain import (
    AccountSummary,
    Broker,
    BrokerError,
    BrokerHealth,
    Fill,
    Greeks,
    Instrument,
    OrderRequest,
    OrderStatus,
    Position,
    Quote,
    Right,
    SecType,
)
from brokers.products import PRODUCTS

logger = logging.getLogger(__name__)

BROKER_NAME = "phillip"
EXCHANGES = ("CME", "CBOT", "NYMEX", "COMEX")
DEFAULT_CONNECT_TIMEOUT_SECONDS = 3.05
DEFAULT_READ_TIMEOUT_SECONDS = 10.0
# No single wait (backoff or Retry-After) may hold a worker longer than this; a server asking for
# more gets a retryable failure at once and the caller decides when to come back.
MAX_WAIT_SECONDS = 30.0
QUOTES_PER_REQUEST = 100
TOKEN_PATH = "/oauth/token"

_ORDER_STATES = ("pending_submit", "submitted", "partially_filled", "filled", "cancelled", "rejected")
_EXHAUSTED_CODES = {"read_timeout": "timeout", "connection": "unavailable", 429: "rate_limited"}
_MAX_SERVER_TEXT = 200
_CLIENT_ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class _Malformed(Exception):
    def __init__(self, field: str, expected: str) -> None:
        super().__init__(f"{field}: expected {expected}")
        self.field = field
        self.expected = expected


def _reject_non_finite(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def _decode_json(content: bytes) -> Any:
    try:
        return json.loads(content, parse_constant=_reject_non_finite)
    except (ValueError, RecursionError):
        raise _Malformed("body", "a JSON document") from None


class _Fields:
    """Typed, strict access to one JSON object; every mistake names the field that caused it."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise _Malformed(where or "body", "an object")
        self._data = data
        self._where = where

    def _name(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def _get(self, key: str) -> Any:
        if key not in self._data:
            raise _Malformed(self._name(key), "a value (missing)")
        return self._data[key]

    def text(self, key: str, *, allow_empty: bool = False) -> str:
        value = self._get(key)
        if not isinstance(value, str) or (not allow_empty and not value):
            raise _Malformed(self._name(key), "a non-empty string" if not allow_empty else "a string")
        return value

    def text_or_empty(self, key: str) -> str:
        """An optional string: missing or null reads as ""."""
        return "" if self._data.get(key) is None else self.text(key, allow_empty=True)

    def optional_text(self, key: str) -> str | None:
        return None if self._data.get(key) is None else self.text(key)

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self._get(key)
        if value not in options:
            raise _Malformed(self._name(key), f"one of {', '.join(options)}")
        return value

    def optional_choice(self, key: str, options: tuple[str, ...]) -> str | None:
        return None if self._data.get(key) is None else self.choice(key, options)

    def integer(self, key: str, *, minimum: int | None = None) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            raise _Malformed(
                self._name(key), "an integer" + (f" >= {minimum}" if minimum is not None else "")
            )
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _Malformed(self._name(key), "a finite number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self._data.get(key) is None else self.number(key)

    def day(self, key: str) -> date:
        value = self._get(key)
        try:
            if isinstance(value, str) and len(value) == 10:
                return date.fromisoformat(value)
        except ValueError:
            pass
        raise _Malformed(self._name(key), "a date YYYY-MM-DD")

    def optional_day(self, key: str) -> date | None:
        return None if self._data.get(key) is None else self.day(key)

    def moment(self, key: str) -> datetime:
        value = self._get(key)
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.utcoffset() is None:
            raise _Malformed(self._name(key), "an ISO 8601 time with an offset")
        return parsed.astimezone(UTC)

    def optional_moment(self, key: str) -> datetime | None:
        return None if self._data.get(key) is None else self.moment(key)

    def obj(self, key: str) -> _Fields:
        return _Fields(self._get(key), self._name(key))

    def optional_obj(self, key: str) -> _Fields | None:
        return None if self._data.get(key) is None else self.obj(key)

    def items(self, key: str) -> list[_Fields]:
        value = self._get(key)
        if not isinstance(value, list):
            raise _Malformed(self._name(key), "an array")
        return [_Fields(item, f"{self._name(key)}[{index}]") for index, item in enumerate(value)]


def _parse_instrument(fields: _Fields) -> Instrument:
    sec_type = fields.choice("sec_type", ("FUT", "FOP"))
    is_option = sec_type == "FOP"
    return Instrument(
        symbol=fields.text("symbol"),
        sec_type=sec_type,  # type: ignore[arg-type]
        expiry=fields.day("expiry"),
        exchange=fields.text("exchange"),
        multiplier=_positive(fields, "multiplier"),
        currency=fields.text("currency"),
        strike=fields.number("strike") if is_option else None,
        right=fields.choice("right", ("C", "P")) if is_option else None,  # type: ignore[arg-type]
        trading_class=fields.text_or_empty("trading_class"),
        exercise_style=(
            fields.optional_choice("exercise_style", ("american", "european")) if is_option else None  # type: ignore[arg-type]
        ),
        underlying_expiry=fields.optional_day("underlying_expiry") if is_option else None,
        broker_ref=fields.text("instrument_id"),
    )


def _positive(fields: _Fields, key: str) -> float:
    value = fields.number(key)
    if value <= 0:
        raise _Malformed(fields._name(key), "a number > 0")
    return value


def _parse_order(fields: _Fields, expected_client_order_id: str) -> OrderStatus:
    client_order_id = fields.text("client_order_id")
    if client_order_id != expected_client_order_id:
        raise _Malformed(fields._name("client_order_id"), f"the id asked for ({expected_client_order_id})")
    return OrderStatus(
        client_order_id=client_order_id,
        broker_order_id=fields.text("order_id"),
        state=fields.choice("state", _ORDER_STATES),  # type: ignore[arg-type]
        filled_quantity=fields.integer("filled_quantity", minimum=0),
        remaining_quantity=fields.integer("remaining_quantity", minimum=0),
        average_fill_price=fields.optional_number("average_fill_price"),
        message=fields.text("message", allow_empty=True),
        time=fields.moment("updated_at"),
    )


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (decimal seconds or an HTTP date), if usable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class PhillipBroker(Broker):
    """`Broker` over PhillipCapital's REST API. One instance per client connection.

    Calls are synchronous; the token is shared under a lock, so the instance may be used from
    several threads, though one thread at a time is the expected use (a view or a Celery task).
    `disconnect()` forgets the token and closes pooled connections; a later call reconnects.
    """

    name = BROKER_NAME

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        exchange: str,
        currency: str,
        request_retries: int = 3,
        request_backoff_seconds: float = 0.5,
        connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if connect_timeout_seconds <= 0 or read_timeout_seconds <= 0:
            raise ValueError("timeouts must be positive: an unbounded wait is never acceptable")
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._exchange = exchange
        self._currency = currency
        self._retries = request_retries
        self._backoff = request_backoff_seconds
        self._timeouts = (connect_timeout_seconds, read_timeout_seconds)
        self._clock = clock
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_lock = threading.Lock()
        # Every token this instance held recently, so that server text echoing one is scrubbed.
        self._recent_tokens: collections.deque[str] = collections.deque(maxlen=4)
        self._basic_credentials = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._instrument_ids: dict[str, str] = {}
        self._session = self._new_session()

    @classmethod
    def from_credentials(
        cls,
        validated: dict[str, Any],
        *,
        default_base_url: str,
        connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
    ) -> PhillipBroker:
        """From `PhillipCredentialsSerializer(...).validated_data` (or the same dict decrypted)."""
        return cls(
            base_url=validated.get("base_url") or default_base_url,
            client_id=validated["client_id"],
            client_secret=validated["client_secret"],
            exchange=validated["exchange"],
            currency=validated["currency"],
            request_retries=validated["request_retries"],
            request_backoff_seconds=validated["request_backoff_seconds"],
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
        )

    def __repr__(self) -> str:
        return (
            f"PhillipBroker(base_url={self._base_url!r}, exchange={self._exchange!r}, "
            f"currency={self._currency!r}, request_retries={self._retries})"
        )

    # -- Broker -----------------------------------------------------------------------------

    def connect(self) -> None:
        self._access_token("connect", force_new=True)

    def disconnect(self) -> None:
        with self._token_lock:
            self._token = None
        self._session.close()
        self._session = self._new_session()

    def health(self) -> BrokerHealth:
        try:
            response = self._request("health", "GET", "/health", retries=0)
            with self._parsing("health", "/health", response):
                fields = _Fields(_decode_json(response.content), "")
                status = fields.choice("status", ("ok", "degraded"))
                detail = fields.text_or_empty("detail")
        except BrokerError as error:
            return BrokerHealth(self.name, False, f"{error.code}: {error.message}", datetime.now(UTC))
        return BrokerHealth(self.name, status == "ok", self._scrub(detail), datetime.now(UTC))

    def lookup_instrument(
        self,
        *,
        symbol: str,
        sec_type: SecType,
        expiry: date | None = None,
        strike: float | None = None,
        right: Right | None = None,
    ) -> Instrument:
        operation = "lookup_instrument"
        symbol = symbol.upper()
        params: dict[str, str] = {
            "symbol": symbol,
            "sec_type": sec_type,
            "exchange": self._exchange_for(symbol),
        }
        if expiry is not None:
            params["expiry"] = expiry.isoformat()
        if strike is not None:
            params["strike"] = repr(float(strike))
        if right is not None:
            params["right"] = right
        # Filters are applied again here: a server ignoring one must not hand us the wrong contract.
        matches = [
            instrument
            for instrument in self._list(operation, "/instruments", params, "instruments", _parse_instrument)
            if instrument.symbol == symbol
            and instrument.sec_type == sec_type
            and (expiry is None or instrument.expiry == expiry)
            and (strike is None or instrument.strike == float(strike))
            and (right is None or instrument.right == right)
        ]
        description = {key: value for key, value in params.items() if key != "exchange"}
        if not matches:
            raise self._error(
                operation, "instrument_not_found", "no listed contract matches", False, description
            )
        if sec_type == "FUT" and expiry is None:
            chosen = min(matches, key=lambda instrument: instrument.expiry)
        elif len(matches) > 1:
            raise self._error(
                operation, "ambiguous_instrument", f"{len(matches)} contracts match", False, description
            )
        else:
            chosen = matches[0]
        self._instrument_ids[chosen.key] = chosen.broker_ref
        return chosen

    def listed_futures(self, symbol: str) -> list[Instrument]:
        symbol = symbol.upper()
        params = {"symbol": symbol, "sec_type": "FUT", "exchange": self._exchange_for(symbol)}
        futures = [
            instrument
            for instrument in self._list("listed_futures", "/instruments", params, "instruments", _parse_instrument)
            if instrument.symbol == symbol and instrument.sec_type == "FUT"
        ]
        futures.sort(key=lambda instrument: instrument.expiry)
        self._instrument_ids.update({instrument.key: instrument.broker_ref for instrument in futures})
        return futures

    def option_chain(self, underlying: Instrument) -> list[Instrument]:
        operation = "option_chain"
        if underlying.sec_type != "FUT":
            raise self._error(
                operation,
                "invalid_request",
                "the underlying must be a future",
                False,
                {"instrument": underlying.key},
            )
        params = {
            "symbol": underlying.symbol,
            "sec_type": "FOP",
            "exchange": underlying.exchange,
            "underlying_expiry": underlying.expiry.isoformat(),
        }
        chain = [
            instrument
            for instrument in self._list(operation, "/instruments", params, "instruments", _parse_instrument)
            if instrument.symbol == underlying.symbol
            and instrument.sec_type == "FOP"
            and instrument.underlying_expiry == underlying.expiry
        ]
        chain.sort(
            key=lambda instrument: (instrument.expiry, instrument.right or "", instrument.strike or 0.0)
        )
        for instrument in chain:
            self._instrument_ids[instrument.key] = instrument.broker_ref
        return chain

    def quotes(self, instruments: list[Instrument]) -> list[Quote]:
        operation = "quotes"
        ids = [self._instrument_id(instrument, operation) for instrument in instruments]
        unique_ids = list(dict.fromkeys(ids))
        by_id: dict[str, _Fields] = {}
        for start in range(0, len(unique_ids), QUOTES_PER_REQUEST):
            batch = unique_ids[start : start + QUOTES_PER_REQUEST]
            params = [("instrument_id", instrument_id) for instrument_id in batch]
            response = self._request(operation, "GET", "/quotes", params=params)
            with self._parsing(operation, "/quotes", response):
                for fields in _Fields(_decode_json(response.content), "").items("quotes"):
                    by_id[fields.text("instrument_id")] = fields
                missing = [instrument_id for instrument_id in batch if instrument_id not in by_id]
                if missing:
                    raise _Malformed("quotes", f"a quote for every instrument asked (missing {missing[0]})")
        with self._parsing(operation, "/quotes", None):
            return [
                self._parse_quote(by_id[instrument_id], instrument)
                for instrument_id, instrument in zip(ids, instruments, strict=True)
            ]

    def positions(self) -> list[Position]:
        def parse(fields: _Fields) -> Position:
            quantity = fields.integer("quantity")
            if quantity == 0:
                raise _Malformed(fields._name("quantity"), "a non-zero integer")
            return Position(
                _parse_instrument(fields.obj("instrument")), quantity, fields.number("average_price")
            )

        return self._list("positions", "/positions", {}, "positions", parse)

    def place_order(self, order: OrderRequest) -> OrderStatus:
        operation = "place_order"
        if not _CLIENT_ORDER_ID_PATTERN.match(order.client_order_id):
            raise self._error(
                operation,
                "invalid_request",
                "client_order_id must be 1-64 of A-Z a-z 0-9 . _ : -",
                False,
                {"client_order_id": order.client_order_id},
            )
        body = {
            "client_order_id": order.client_order_id,
            "order_type": order.order_type,
            "limit_price": order.limit_price,
            "time_in_force": order.time_in_force,
            "legs": [
                {
                    "instrument_id": self._instrument_id(leg.instrument, operation),
                    "side": leg.side,
                    "quantity": leg.quantity,
                }
                for leg in order.legs
            ],
        }
        response = self._request(operation, "POST", "/orders", json_body=body, accept=(200, 201))
        with self._parsing(operation, "/orders", response):
            return _parse_order(_Fields(_decode_json(response.content), ""), order.client_order_id)

    def cancel_order(self, client_order_id: str) -> OrderStatus:
        operation = "cancel_order"
        path = f"{self._order_path(client_order_id)}/cancel"
        response = self._request(operation, "POST", path, json_body={})
        with self._parsing(operation, path, response):
            return _parse_order(_Fields(_decode_json(response.content), ""), client_order_id)

    def order_status(self, client_order_id: str) -> OrderStatus | None:
        operation = "order_status"
        path = self._order_path(client_order_id)
        try:
            response = self._request(operation, "GET", path)
        except BrokerError as error:
            if error.code == "order_not_found":
                return None
            raise
        with self._parsing(operation, path, response):
            return _parse_order(_Fields(_decode_json(response.content), ""), client_order_id)

    def fills_since(self, since: datetime) -> list[Fill]:
        operation = "fills_since"
        if since.utcoffset() is None:
            raise self._error(operation, "invalid_request", "since must be timezone-aware", False, {})

        def parse(fields: _Fields) -> Fill:
            return Fill(
                fill_id=fields.text("fill_id"),
                client_order_id=fields.text("client_order_id"),
                instrument=_parse_instrument(fields.obj("instrument")),
                side=fields.choice("side", ("BUY", "SELL")),  # type: ignore[arg-type]
                quantity=fields.integer("quantity", minimum=1),
                price=fields.number("price"),
                commission=fields.number("commission"),
                time=fields.moment("time"),
                realized_pnl=fields.optional_number("realized_pnl"),
            )

        return self._list(operation, "/fills", {"since": _format_time(since)}, "fills", parse)

    def account_summary(self) -> AccountSummary:
        operation = "account_summary"
        path = "/account/summary"
        response = self._request(operation, "GET", path, params={"currency": self._currency})
        with self._parsing(operation, path, response):
            fields = _Fields(_decode_json(response.content), "")
            if fields.text("currency") != self._currency:
                raise _Malformed("currency", f"the currency asked for ({self._currency})")
            return AccountSummary(
                currency=self._currency,
                net_liquidation=fields.number("net_liquidation"),
                initial_margin=fields.number("initial_margin"),
                maintenance_margin=fields.number("maintenance_margin"),
                available_funds=fields.number("available_funds"),
                realized_pnl=fields.optional_number("realized_pnl"),
                unrealized_pnl=fields.optional_number("unrealized_pnl"),
            )

    # -- parsing helpers --------------------------------------------------------------------

    @staticmethod
    def _parse_quote(fields: _Fields, instrument: Instrument) -> Quote:
        time_taken = fields.moment("time")
        greeks_fields = fields.optional_obj("greeks")
        greeks = None
        if greeks_fields is not None:
            greeks = Greeks(
                delta=greeks_fields.number("delta"),
                gamma=greeks_fields.number("gamma"),
                vega=greeks_fields.number("vega"),
                theta=greeks_fields.number("theta"),
                rho=greeks_fields.number("rho"),
                implied_vol=greeks_fields.optional_number("implied_vol"),
                source="broker",
                time=greeks_fields.optional_moment("time") or time_taken,
            )
        return Quote(
            instrument=instrument,
            bid=fields.optional_number("bid"),
            ask=fields.optional_number("ask"),
            last=fields.optional_number("last"),
            bid_size=fields.integer("bid_size", minimum=0),
            ask_size=fields.integer("ask_size", minimum=0),
            time=time_taken,
            underlying_price=fields.optional_number("underlying_price"),
            greeks=greeks,
        )

    def _list(
        self,
        operation: str,
        path: str,
        params: dict[str, str],
        key: str,
        parse: Callable[[_Fields], Any],
    ) -> list[Any]:
        """Every item of a paginated list endpoint, following `next_cursor` to the end."""
        items: list[Any] = []
        cursor: str | None = None
        seen_cursors: set[str] = set()
        while True:
            page_params = dict(params, cursor=cursor) if cursor is not None else params
            response = self._request(operation, "GET", path, params=page_params)
            with self._parsing(operation, path, response):
                page = _Fields(_decode_json(response.content), "")
                items.extend(parse(fields) for fields in page.items(key))
                next_cursor = page.optional_text("next_cursor")
                if next_cursor in seen_cursors:
                    raise _Malformed("next_cursor", "null or a cursor not seen before")
            if next_cursor is None:
                return items
            seen_cursors.add(next_cursor)
            cursor = next_cursor

    @contextlib.contextmanager
    def _parsing(self, operation: str, path: str, response: requests.Response | None) -> Iterator[None]:
        try:
            yield
        except _Malformed as malformed:
            context: dict[str, Any] = {"path": path, "field": malformed.field}
            if response is not None:
                context["status"] = response.status_code
            raise self._error(
                operation, "malformed_response", f"unexpected answer: {malformed}", False, context
            ) from None

    # -- instruments ------------------------------------------------------------------------

    def _exchange_for(self, symbol: str) -> str:
        product = PRODUCTS.get(symbol)
        return product.exchange if product is not None else self._exchange

    def _instrument_id(self, instrument: Instrument, operation: str) -> str:
        if instrument.broker_ref:
            return instrument.broker_ref
        cached = self._instrument_ids.get(instrument.key)
        if cached is not None:
            return cached
        try:
            found = self.lookup_instrument(
                symbol=instrument.symbol,
                sec_type=instrument.sec_type,
                expiry=instrument.expiry,
                strike=instrument.strike,
                right=instrument.right,
            )
        except BrokerError as error:
            raise BrokerError(
                operation=operation,
                broker=error.broker,
                code=error.code,
                message=error.message,
                retryable=error.retryable,
                context={**error.context, "instrument": instrument.key},
            ) from None
        return found.broker_ref

    @staticmethod
    def _order_path(client_order_id: str) -> str:
        return f"/orders/by-client-id/{url_quote(client_order_id, safe='')}"

    # -- transport --------------------------------------------------------------------------

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=0)  # retries are ours, see the module docstring
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update({"Accept": "application/json", "User-Agent": "tradingplatform-phillip/1"})
        return session

    def _access_token(self, operation: str, *, force_new: bool = False) -> str:
        with self._token_lock:
            if not force_new and self._token is not None and self._clock() < self._token_refresh_at:
                return self._token
            self._token = None
            request_id = uuid.uuid4().hex
            response, attempts = self._send(
                operation,
                "POST",
                TOKEN_PATH,
                request_id=request_id,
                retries=self._retries,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {self._basic_credentials}"},
            )
            if response.status_code != 200:
                if response.status_code in (400, 401):
                    raise self._error(
                        operation,
                        "auth_failed",
                        "the token request was refused",
                        False,
                        self._answer_context("POST", TOKEN_PATH, response, attempts, request_id),
                    )
                self._raise_for_answer(
                    operation, "POST", TOKEN_PATH, response, attempts=attempts, request_id=request_id
                )
            with self._parsing(operation, TOKEN_PATH, response):
                fields = _Fields(_decode_json(response.content), "")
                token = fields.text("access_token")
                if fields.text("token_type").lower() != "bearer":
                    raise _Malformed("token_type", "Bearer")
                lifetime = fields.integer("expires_in", minimum=1)
            self._recent_tokens.append(token)
            self._token = token
            # Refresh a little early so that a token never expires in flight.
            self._token_refresh_at = self._clock() + lifetime - min(60.0, lifetime / 10.0)
            return token

    def _forget_token(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:
                self._token = None

    def _request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | list[tuple[str, str]] | None = None,
        json_body: dict[str, Any] | None = None,
        accept: tuple[int, ...] = (200,),
        retries: int | None = None,
    ) -> requests.Response:
        """One authenticated call: retried per the contract, one token refresh on 401."""
        request_id = uuid.uuid4().hex
        retries = self._retries if retries is None else retries
        refreshed = False
        while True:
            token = self._access_token(operation)
            response, attempts = self._send(
                operation,
                method,
                path,
                request_id=request_id,
                retries=retries,
                params=params,
                json=json_body,
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code == 401:
                self._forget_token(token)
                if refreshed:
                    raise self._error(
                        operation,
                        "auth_failed",
                        "the access token was refused after a refresh",
                        False,
                        self._answer_context(method, path, response, 2, request_id),
                    )
                refreshed = True
                continue
            if response.status_code in accept:
                return response
            self._raise_for_answer(
                operation, method, path, response, attempts=attempts, request_id=request_id
            )

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        request_id: str,
        retries: int,
        **request_arguments: Any,
    ) -> tuple[requests.Response, int]:
        """The HTTP exchange with retries: the first answer not worth retrying, and the attempts made."""
        url = f"{self._base_url}{path}"
        headers = {"X-Request-ID": request_id, **request_arguments.pop("headers", {})}
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            response: requests.Response | None = None
            try:
                response = self._session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=self._timeouts,
                    allow_redirects=False,
                    **request_arguments,
                )
            except requests.exceptions.ReadTimeout:
                failure: str | int = "read_timeout"
            except requests.exceptions.SSLError as error:
                # A certificate or TLS failure is configuration, not weather: retrying cannot help.
                raise self._error(
                    operation,
                    "tls_error",
                    f"TLS failed: {error}",
                    False,
                    {"method": method, "path": path, "attempts": attempt, "request_id": request_id},
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError):
                failure = "connection"  # includes connect timeouts, refusals and resets
            except requests.exceptions.RequestException as error:
                raise self._error(
                    operation,
                    "request_failed",
                    f"the request could not be sent: {error}",
                    False,
                    {"method": method, "path": path, "attempts": attempt, "request_id": request_id},
                ) from None
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response, attempt
                failure = response.status_code
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))

            context: dict[str, Any] = {
                "method": method,
                "path": path,
                "attempts": attempt,
                "request_id": request_id,
            }
            if response is not None:
                context = self._answer_context(method, path, response, attempt, request_id)
            if retry_after is not None:
                context["retry_after_seconds"] = retry_after
            if method == "POST" and path != TOKEN_PATH:
                context["outcome_unknown"] = True
            too_long = retry_after is not None and retry_after > MAX_WAIT_SECONDS
            if attempt > retries or too_long:
                code = _EXHAUSTED_CODES.get(failure, "server_error")
                reason = f"HTTP {failure}" if isinstance(failure, int) else failure.replace("_", " ")
                message = f"{reason} after {attempt} attempt{'s' if attempt > 1 else ''}"
                if too_long:
                    message = f"{reason}: the server asked to wait {retry_after:.0f} s"
                raise self._error(operation, code, message, True, context)

            wait = (
                retry_after
                if retry_after is not None
                else min(self._backoff * 2 ** (attempt - 1), MAX_WAIT_SECONDS)
            )
            logger.warning(
                "phillip %s %s attempt %d/%d failed (%s); retrying in %.2f s",
                method,
                path,
                attempt,
                retries + 1,
                failure,
                wait,
                extra={"broker": self.name, "operation": operation, "broker_request_id": request_id},
            )
            time.sleep(wait)

    def _answer_context(
        self, method: str, path: str, response: requests.Response, attempts: int, request_id: str = ""
    ) -> dict[str, Any]:
        context: dict[str, Any] = {
            "method": method,
            "path": path,
            "attempts": attempts,
            "status": response.status_code,
        }
        if request_id:
            context["request_id"] = request_id
        broker_code, broker_message = self._error_body(response)
        if broker_code:
            context["broker_code"] = broker_code
        if broker_message:
            context["broker_message"] = broker_message
        return context

    def _error_body(self, response: requests.Response) -> tuple[str, str]:
        """The server's error code and message, from either error shape, scrubbed; blanks if none."""
        try:
            body = json.loads(response.content, parse_constant=_reject_non_finite)
        except (ValueError, RecursionError):
            return "", ""
        if not isinstance(body, dict):
            return "", ""
        error = body.get("error")
        if isinstance(error, dict):  # the API's shape
            code, message = error.get("code"), error.get("message")
        else:  # the RFC 6749 shape of the token endpoint
            code, message = error, body.get("error_description")
        return (
            self._scrub(code) if isinstance(code, str) else "",
            self._scrub(message) if isinstance(message, str) else "",
        )

    def _raise_for_answer(
        self,
        operation: str,
        method: str,
        path: str,
        response: requests.Response,
        *,
        attempts: int,
        request_id: str,
    ) -> NoReturn:
        status = response.status_code
        context = self._answer_context(method, path, response, attempts, request_id)
        broker_code = context.get("broker_code", "")
        if status == 403:
            code = "forbidden"
        elif status == 404:
            code = "order_not_found" if broker_code == "order_not_found" else "not_found"
        elif status == 409 and broker_code == "client_order_id_conflict":
            code = "duplicate_client_order_id"
        elif status == 409 and broker_code == "order_not_cancellable":
            code = "order_not_cancellable"
        elif status in (400, 409, 422):
            code = "invalid_request"
        else:
            code = "unexpected_status"
        message = context.get("broker_message") or f"HTTP {status}"
        raise self._error(operation, code, message, False, context)

    def _scrub(self, text: str) -> str:
        for secret in (self._client_secret, self._basic_credentials, *self._recent_tokens):
            if secret:
                text = text.replace(secret, "***")
        return text[:_MAX_SERVER_TEXT]

    def _error(
        self, operation: str, code: str, message: str, retryable: bool, context: dict[str, Any]
    ) -> BrokerError:
        return BrokerError(
            operation=operation,
            broker=self.name,
            code=code,
            message=self._scrub(message),
            retryable=retryable,
            context=context,
        )


class PhillipCredentialsSerializer(serializers.Serializer):
    """The `credentials` of `connect-broker` for `broker: phillip`. Never echoes the secret."""

    client_id = serializers.CharField(max_length=200)
    client_secret = serializers.CharField(
        max_length=500, write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    request_retries = serializers.IntegerField(min_value=0, max_value=10)
    request_backoff_seconds = serializers.FloatField(min_value=0.0, max_value=30.0)
    exchange = serializers.CharField()
    currency = serializers.CharField()
    base_url = serializers.URLField(
        required=False, max_length=500, validators=[URLValidator(schemes=["http", "https"])]
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                # A mistyped key ("client_secert") must not pass silently as a missing optional field.
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def validate_client_secret(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        return value

    def validate_request_backoff_seconds(self, value: float) -> float:
        if not math.isfinite(value):
            raise serializers.ValidationError("A finite number is required.")
        return value

    def validate_exchange(self, value: str) -> str:
        exchange = value.strip().upper()
        if exchange == "GLOBEX":
            raise serializers.ValidationError(
                "GLOBEX is a trading platform, not an exchange: use CME, CBOT, NYMEX or COMEX."
            )
        if exchange not in EXCHANGES:
            raise serializers.ValidationError(f"Must be one of {', '.join(EXCHANGES)}.")
        return exchange

    def validate_currency(self, value: str) -> str:
        currency = value.strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise serializers.ValidationError("A 3-letter ISO 4217 code is required, e.g. USD.")
        return currency

    def validate_base_url(self, value: str) -> str:
        return value.rstrip("/")
