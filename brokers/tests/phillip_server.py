"""A loopback PhillipCapital server: docs/brokers/phillip.md implemented, with scriptable faults.

It keeps real state (tokens, orders, fills, positions), listens on 127.0.0.1 on an ephemeral port
and counts every request per route, so that tests can prove that a lost answer never doubled an
order. Faults are scripted per route ("POST /orders", "GET /orders/by-client-id/{id}", ...):

    with PhillipServer() as server:
        server.fail("GET /positions", 503, times=2)            # a 5xx storm (times=None: forever)
        server.fail("POST /orders", 429, retry_after="0.05")    # rate limited once
        server.stall("POST /orders", seconds=1.0)               # record the order, answer too late
        server.malformed("GET /fills", b'{"fills": [')          # a broken body
        server.expire_tokens()                                  # every issued token now gets 401
        server.state.fill_order("my-order-1")                   # the exchange fills a working order
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from brokers.products import PRODUCTS
from risk.greeks import black76

BASE_PATH = "/v1"
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), template)
    for method, pattern, template in (
        ("POST", r"^/oauth/token$", "/oauth/token"),
        ("GET", r"^/health$", "/health"),
        ("GET", r"^/instruments$", "/instruments"),
        ("GET", r"^/quotes$", "/quotes"),
        ("GET", r"^/positions$", "/positions"),
        ("POST", r"^/orders$", "/orders"),
        ("GET", r"^/orders/by-client-id/(?P<id>[^/]+)$", "/orders/by-client-id/{id}"),
        ("POST", r"^/orders/by-client-id/(?P<id>[^/]+)/cancel$", "/orders/by-client-id/{id}/cancel"),
        ("GET", r"^/fills$", "/fills"),
        ("GET", r"^/account/summary$", "/account/summary"),
    )
)
CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
WORKING_STATES = ("pending_submit", "submitted", "partially_filled")
MAX_QUOTES_PER_REQUEST = 100


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(
        status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


def error_answer(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    return json_answer(status, {"error": {"code": code, "message": message, "details": {}}}, headers)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.answer = error_answer(status, code, message)


@dataclass
class Fault:
    route: str  # "METHOD /template"
    times: int | None  # None: forever
    status: int | None = None  # None: answer what the state answers
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    process_first: bool = False  # apply the request to the state before stalling (a lost answer)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    route: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic() on arrival


def _instrument(
    symbol: str,
    sec_type: str,
    expiry: date,
    strike: float | None = None,
    right: str | None = None,
    underlying_expiry: date | None = None,
) -> dict[str, Any]:
    product = PRODUCTS[symbol]
    is_option = sec_type == "FOP"
    instrument_id = f"{symbol}-{sec_type}-{expiry:%Y%m%d}" + (f"-{strike:g}-{right}" if is_option else "")
    return {
        "instrument_id": instrument_id,
        "symbol": symbol,
        "sec_type": sec_type,
        "exchange": product.exchange,
        "currency": "USD",
        "expiry": expiry.isoformat(),
        "multiplier": product.multiplier,
        "trading_class": product.option_trading_class if is_option else symbol,
        "strike": strike,
        "right": right,
        "exercise_style": product.exercise_style if is_option else None,
        "underlying_expiry": underlying_expiry.isoformat() if underlying_expiry else None,
    }


def default_catalog() -> list[dict[str, Any]]:
    """A few listed contracts: ES futures (listed out of order on purpose) with options, and CL."""
    es_front, es_next, es_far = date(2026, 12, 18), date(2027, 3, 19), date(2027, 6, 18)
    cl_front, lo_front = date(2026, 12, 17), date(2026, 12, 16)
    catalog = [_instrument("ES", "FUT", day) for day in (es_next, es_front, es_far)]
    catalog += [
        _instrument("ES", "FOP", es_front, float(strike), right, es_front)
        for strike in range(5900, 6101, 50)
        for right in ("C", "P")
    ]
    catalog += [_instrument("ES", "FOP", es_next, 6000.0, right, es_next) for right in ("C", "P")]
    catalog.append(_instrument("CL", "FUT", cl_front))
    catalog += [_instrument("CL", "FOP", lo_front, float(strike), "C", cl_front) for strike in (65, 70, 75)]
    return catalog


def _isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class PhillipState:
    """What the broker knows. Every method takes the lock; handlers run on many threads."""

    def __init__(
        self, *, clients: dict[str, str], token_lifetime_seconds: int, page_size: int, currency: str = "USD"
    ) -> None:
        self.lock = threading.RLock()
        self.clients = dict(clients)
        self.token_lifetime_seconds = token_lifetime_seconds
        self.page_size = page_size
        self.tokens: dict[str, float] = {}
        self.instruments = {item["instrument_id"]: item for item in default_catalog()}
        self.quotes: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}  # by client_order_id
        self.order_requests: dict[str, dict[str, Any]] = {}  # the body each order was created from
        self.fills: list[dict[str, Any]] = []
        self.positions: dict[str, dict[str, Any]] = {}  # by instrument_id
        self.health_status = "ok"
        self.account = {
            "currency": currency,
            "net_liquidation": 1_250_000.0,
            "initial_margin": 84_000.0,
            "maintenance_margin": 76_000.0,
            "available_funds": 1_166_000.0,
            "realized_pnl": 0.0,
            "unrealized_pnl": None,
        }
        self._ids = itertools.count(1)

    # -- auth ---------------------------------------------------------------------------------

    def issue_token(self, client_id: str, client_secret: str) -> dict[str, Any] | None:
        with self.lock:
            expected = self.clients.get(client_id)
            if expected is None or not secrets.compare_digest(expected.encode(), client_secret.encode()):
                return None
            token = secrets.token_urlsafe(24)
            self.tokens[token] = time.monotonic() + self.token_lifetime_seconds
            return {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime_seconds}

    def token_valid(self, token: str) -> bool:
        with self.lock:
            expires_at = self.tokens.get(token)
            return expires_at is not None and time.monotonic() < expires_at

    # -- market data --------------------------------------------------------------------------

    def set_quote(self, instrument_id: str, **fields: Any) -> None:
        with self.lock:
            self.quotes[instrument_id] = {**self.quote(instrument_id), **fields}

    def quote(self, instrument_id: str) -> dict[str, Any]:
        with self.lock:
            if instrument_id in self.quotes:
                return dict(self.quotes[instrument_id])
            return self._model_quote(self.instruments[instrument_id])

    def _model_quote(self, instrument: dict[str, Any]) -> dict[str, Any]:
        product = PRODUCTS[instrument["symbol"]]
        now = datetime.now(UTC)
        forward = product.reference_price
        quote: dict[str, Any] = {
            "instrument_id": instrument["instrument_id"],
            "bid": forward - product.future_tick,
            "ask": forward + product.future_tick,
            "last": forward,
            "bid_size": 25,
            "ask_size": 30,
            "time": _isoformat(now),
            "underlying_price": None,
            "greeks": None,
        }
        if instrument["sec_type"] == "FOP":
            years = max((date.fromisoformat(instrument["expiry"]) - now.date()).days, 1) / 365.0
            model = black76(
                forward, instrument["strike"], years, 0.04, product.reference_vol, instrument["right"] == "C"
            )
            tick = product.option_tick
            price = max(round(float(model.price) / tick) * tick, tick)
            quote.update(
                bid=round(price - tick, 6),
                ask=round(price + tick, 6),
                last=round(price, 6),
                underlying_price=forward,
                greeks={
                    "delta": float(model.delta),
                    "gamma": float(model.gamma),
                    "vega": float(model.vega),
                    "theta": float(model.theta),
                    "rho": float(model.rho),
                    "implied_vol": product.reference_vol,
                    "time": _isoformat(now),
                },
            )
        return quote

    # -- orders -------------------------------------------------------------------------------

    def submit_order(self, body: Any) -> tuple[int, dict[str, Any]]:
        request = self._validated_order(body)
        with self.lock:
            existing = self.orders.get(request["client_order_id"])
            if existing is not None:
                if self.order_requests[request["client_order_id"]] != request:
                    raise ApiError(
                        409,
                        "client_order_id_conflict",
                        "an order with this client_order_id exists with a different body",
                    )
                return 200, dict(existing)
            quantities = [leg["quantity"] for leg in request["legs"]]
            units = math.gcd(*quantities)
            now = _isoformat(datetime.now(UTC))
            order = {
                "order_id": f"PO{next(self._ids)}",
                "client_order_id": request["client_order_id"],
                "state": "submitted",
                "quantity": units,
                "filled_quantity": 0,
                "remaining_quantity": units,
                "average_fill_price": None,
                "message": "",
                "created_at": now,
                "updated_at": now,
                **{key: request[key] for key in ("order_type", "limit_price", "time_in_force", "legs")},
            }
            self.orders[request["client_order_id"]] = order
            self.order_requests[request["client_order_id"]] = request
            if request["order_type"] == "MKT":
                self.fill_order(request["client_order_id"])
            return 201, dict(self.orders[request["client_order_id"]])

    def _validated_order(self, body: Any) -> dict[str, Any]:
        def invalid(message: str) -> ApiError:
            return ApiError(422, "order_invalid", message)

        if not isinstance(body, dict):
            raise invalid("the body must be an object")
        client_order_id = body.get("client_order_id")
        if not isinstance(client_order_id, str) or not CLIENT_ORDER_ID.match(client_order_id):
            raise invalid("client_order_id must be 1-64 of A-Z a-z 0-9 . _ : -")
        order_type = body.get("order_type")
        if order_type not in ("LMT", "MKT"):
            raise invalid("order_type must be LMT or MKT")
        limit_price = body.get("limit_price")
        if order_type == "LMT" and (
            isinstance(limit_price, bool) or not isinstance(limit_price, int | float)
        ):
            raise invalid("a LMT order needs a numeric limit_price")
        if order_type == "MKT" and limit_price is not None:
            raise invalid("a MKT order takes no limit_price")
        if body.get("time_in_force") not in ("DAY", "GTC", "IOC"):
            raise invalid("time_in_force must be DAY, GTC or IOC")
        legs = body.get("legs")
        if not isinstance(legs, list) or not 1 <= len(legs) <= 8:
            raise invalid("legs must hold 1 to 8 legs")
        clean_legs = []
        for leg in legs:
            if not isinstance(leg, dict) or leg.get("side") not in ("BUY", "SELL"):
                raise invalid("every leg needs a side BUY or SELL")
            quantity = leg.get("quantity")
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
                raise invalid("every leg needs an integer quantity > 0")
            with self.lock:
                if leg.get("instrument_id") not in self.instruments:
                    raise ApiError(
                        422, "unknown_instrument", f"unknown instrument_id {leg.get('instrument_id')!r}"
                    )
            clean_legs.append(
                {"instrument_id": leg["instrument_id"], "side": leg["side"], "quantity": quantity}
            )
        return {
            "client_order_id": client_order_id,
            "order_type": order_type,
            "limit_price": float(limit_price) if limit_price is not None else None,
            "time_in_force": body["time_in_force"],
            "legs": clean_legs,
        }

    def order(self, client_order_id: str) -> dict[str, Any]:
        with self.lock:
            order = self.orders.get(client_order_id)
            if order is None:
                raise ApiError(404, "order_not_found", f"no order with client_order_id {client_order_id}")
            return dict(order)

    def cancel_order(self, client_order_id: str) -> dict[str, Any]:
        with self.lock:
            order = self.orders.get(client_order_id)
            if order is None:
                raise ApiError(404, "order_not_found", f"no order with client_order_id {client_order_id}")
            if order["state"] in ("filled", "rejected"):
                raise ApiError(409, "order_not_cancellable", f"the order is {order['state']}")
            if order["state"] != "cancelled":
                order.update(
                    state="cancelled",
                    remaining_quantity=0,
                    message="cancelled by the client",
                    updated_at=_isoformat(datetime.now(UTC)),
                )
            return dict(order)

    def fill_order(
        self,
        client_order_id: str,
        *,
        units: int | None = None,
        leg_prices: list[float] | None = None,
        at: datetime | None = None,
        commission_per_contract: float = 2.25,
    ) -> list[dict[str, Any]]:
        """The exchange fills `units` combo units (all that remain by default); returns the new fills."""
        with self.lock:
            order = self.orders[client_order_id]
            if order["state"] not in WORKING_STATES:
                raise ValueError(f"order {client_order_id} is {order['state']}, not working")
            units = order["remaining_quantity"] if units is None else units
            if not 0 < units <= order["remaining_quantity"]:
                raise ValueError(f"cannot fill {units} of {order['remaining_quantity']} remaining units")
            when = at or datetime.now(UTC)
            net_price = 0.0
            new_fills = []
            for index, leg in enumerate(order["legs"]):
                instrument = self.instruments[leg["instrument_id"]]
                quote = self.quote(leg["instrument_id"])
                price = (
                    leg_prices[index]
                    if leg_prices
                    else (quote["ask"] if leg["side"] == "BUY" else quote["bid"])
                )
                contracts = units * leg["quantity"] // order["quantity"]
                signed = contracts if leg["side"] == "BUY" else -contracts
                net_price += (
                    price * (leg["quantity"] // order["quantity"]) * (1 if leg["side"] == "BUY" else -1)
                )
                realized = self._apply_to_position(instrument, signed, price)
                fill = {
                    "fill_id": f"PF{next(self._ids)}",
                    "order_id": order["order_id"],
                    "client_order_id": client_order_id,
                    "instrument": dict(instrument),
                    "side": leg["side"],
                    "quantity": contracts,
                    "price": price,
                    "commission": commission_per_contract * contracts,
                    "time": _isoformat(when),
                    "realized_pnl": realized,
                }
                self.fills.append(fill)
                new_fills.append(fill)
                if realized is not None:
                    self.account["realized_pnl"] += realized
            done_before = order["filled_quantity"]
            previous = order["average_fill_price"] or 0.0
            order["filled_quantity"] = done_before + units
            order["remaining_quantity"] -= units
            order["average_fill_price"] = (previous * done_before + net_price * units) / order[
                "filled_quantity"
            ]
            order["state"] = "filled" if order["remaining_quantity"] == 0 else "partially_filled"
            order["updated_at"] = _isoformat(when)
            return new_fills

    def _apply_to_position(self, instrument: dict[str, Any], signed: int, price: float) -> float | None:
        """Average-price bookkeeping; the realized P&L (account currency) when the fill closes some."""
        key = instrument["instrument_id"]
        held = self.positions.get(key)
        if held is None:
            self.positions[key] = {"instrument": dict(instrument), "quantity": signed, "average_price": price}
            return None
        quantity, average = held["quantity"], held["average_price"]
        if quantity * signed > 0:
            total = quantity + signed
            held.update(quantity=total, average_price=(average * quantity + price * signed) / total)
            return None
        closed = min(abs(signed), abs(quantity))
        realized = (price - average) * closed * (1 if quantity > 0 else -1) * instrument["multiplier"]
        remaining = quantity + signed
        if remaining == 0:
            del self.positions[key]
        elif remaining * quantity > 0:
            held["quantity"] = remaining
        else:
            held.update(quantity=remaining, average_price=price)
        return realized

    def fills_since(self, since: datetime) -> list[dict[str, Any]]:
        with self.lock:
            chosen = [fill for fill in self.fills if datetime.fromisoformat(fill["time"]) >= since]
        return sorted(chosen, key=lambda fill: (fill["time"], fill["fill_id"]))


class PhillipServer:
    """The server and its scripting surface; a context manager that starts and stops it."""

    def __init__(
        self,
        *,
        clients: dict[str, str] | None = None,
        token_lifetime_seconds: int = 3600,
        page_size: int = 50,
    ) -> None:
        self.state = PhillipState(
            clients=clients or {"desk-1": "s3cret-Value-!"},
            token_lifetime_seconds=token_lifetime_seconds,
            page_size=page_size,
        )
        self.request_counts: collections.Counter[str] = collections.Counter()
        self.recorded: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.phillip = self  # type: ignore[attr-defined]
        # A short poll interval: shutdown() waits up to one interval, and every test stops a server.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="phillip-server",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{BASE_PATH}"

    def start(self) -> PhillipServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> PhillipServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- scripting ----------------------------------------------------------------------------

    def fail(
        self,
        route: str,
        status: int,
        *,
        times: int | None = 1,
        retry_after: str | None = None,
        body: bytes | None = None,
        code: str = "scripted_failure",
    ) -> None:
        """Answer `status` (with the standard error body unless `body`) to the next `times` calls."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        if body is None:
            answer = error_answer(status, code, f"scripted {status}")
            body, headers = answer.body, {**answer.headers, **headers}
        self._add(Fault(route, times, status=status, body=body, headers=headers))

    def stall(self, route: str, *, seconds: float, times: int | None = 1, process_first: bool = True) -> None:
        """Delay the answer by `seconds`; with `process_first` the request has taken effect already."""
        self._add(Fault(route, times, delay_seconds=seconds, process_first=process_first))

    def malformed(self, route: str, body: bytes, *, times: int | None = 1, status: int = 200) -> None:
        self._add(Fault(route, times, status=status, body=body, headers={"Content-Type": "application/json"}))

    def expire_tokens(self) -> None:
        with self.state.lock:
            self.state.tokens.clear()

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    def count(self, route: str) -> int:
        return self.request_counts[route]

    def _add(self, fault: Fault) -> None:
        with self._faults_lock:
            self._faults.append(fault)

    def take_fault(self, route: str) -> Fault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.route == route and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
            return None

    # -- the contract -------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        route: str,
        path_id: str | None,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> Answer:
        try:
            if route == "POST /oauth/token":
                return self._token(headers, body)
            self._authenticate(headers)
            return self._dispatch(route, path_id, query, body)
        except ApiError as error:
            return error.answer

    def _token(self, headers: dict[str, str], body: bytes) -> Answer:
        form = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return json_answer(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant_type must be client_credentials",
                },
            )
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                client_id = client_secret = ""
        issued = self.state.issue_token(client_id, client_secret)
        if issued is None:
            return json_answer(
                401,
                {"error": "invalid_client", "error_description": "client authentication failed"},
                {"WWW-Authenticate": 'Basic realm="phillip"'},
            )
        return json_answer(200, issued)

    def _authenticate(self, headers: dict[str, str]) -> None:
        authorization = headers.get("authorization", "")
        token = authorization[7:] if authorization.lower().startswith("bearer ") else ""
        if not self.state.token_valid(token):
            raise ApiError(401, "invalid_token", "the access token is missing, unknown or expired")

    def _dispatch(self, route: str, path_id: str | None, query: dict[str, list[str]], body: bytes) -> Answer:
        state = self.state
        if route == "GET /health":
            return json_answer(200, {"status": state.health_status, "detail": ""})
        if route == "GET /instruments":
            return self._page(query, "instruments", self._instruments(query))
        if route == "GET /quotes":
            ids = query.get("instrument_id", [])
            if not ids or len(ids) > MAX_QUOTES_PER_REQUEST:
                raise ApiError(400, "invalid_request", f"give 1 to {MAX_QUOTES_PER_REQUEST} instrument_id")
            unknown = [instrument_id for instrument_id in ids if instrument_id not in state.instruments]
            if unknown:
                raise ApiError(422, "unknown_instrument", f"unknown instrument_id {unknown[0]!r}")
            return json_answer(
                200, {"quotes": [state.quote(instrument_id) for instrument_id in dict.fromkeys(ids)]}
            )
        if route == "GET /positions":
            with state.lock:
                rows = [dict(position) for position in state.positions.values()]
            return self._page(query, "positions", rows)
        if route == "POST /orders":
            try:
                payload = json.loads(body)
            except ValueError:
                raise ApiError(400, "invalid_request", "the body is not JSON") from None
            status, order = state.submit_order(payload)
            return json_answer(status, order)
        if route == "GET /orders/by-client-id/{id}":
            return json_answer(200, state.order(path_id or ""))
        if route == "POST /orders/by-client-id/{id}/cancel":
            return json_answer(200, state.cancel_order(path_id or ""))
        if route == "GET /fills":
            try:
                since = datetime.fromisoformat(query["since"][0])
            except (KeyError, ValueError):
                since = None
            if since is None or since.utcoffset() is None:
                raise ApiError(400, "invalid_request", "since must be an ISO 8601 time with an offset")
            return self._page(query, "fills", state.fills_since(since))
        if route == "GET /account/summary":
            with state.lock:
                if query.get("currency", [""])[0] != state.account["currency"]:
                    raise ApiError(422, "unsupported_currency", "the account reports in another currency")
                return json_answer(200, dict(state.account))
        raise ApiError(404, "not_found", "no such endpoint")

    def _instruments(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        def one(name: str) -> str | None:
            return query.get(name, [None])[0]

        for required in ("symbol", "sec_type", "exchange"):
            if not one(required):
                raise ApiError(400, "invalid_request", f"{required} is required")
        if one("exchange") == "GLOBEX":
            raise ApiError(400, "invalid_request", "GLOBEX is not an exchange")
        strike = one("strike")
        with self.state.lock:
            return [
                dict(item)
                for item in self.state.instruments.values()
                if item["symbol"] == one("symbol")
                and item["sec_type"] == one("sec_type")
                and item["exchange"] == one("exchange")
                and (one("expiry") is None or item["expiry"] == one("expiry"))
                and (strike is None or item["strike"] == float(strike))
                and (one("right") is None or item["right"] == one("right"))
                and (
                    one("underlying_expiry") is None or item["underlying_expiry"] == one("underlying_expiry")
                )
            ]

    def _page(self, query: dict[str, list[str]], key: str, rows: list[dict[str, Any]]) -> Answer:
        cursor = query.get("cursor", ["p0"])[0]
        if not re.fullmatch(r"p\d+", cursor):
            raise ApiError(400, "invalid_request", "bad cursor")
        start = int(cursor[1:])
        end = start + self.state.page_size
        return json_answer(200, {key: rows[start:end], "next_cursor": f"p{end}" if end < len(rows) else None})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PhillipLoopback/1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # the tests' output stays quiet
        return

    def _serve(self, method: str) -> None:
        phillip: PhillipServer = self.server.phillip  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        path = parts.path[len(BASE_PATH) :] if parts.path.startswith(BASE_PATH + "/") else ""
        route, path_id = f"{method} ?", None
        for route_method, pattern, template in ROUTES:
            match = pattern.match(path) if route_method == method else None
            if match:
                route = f"{method} {template}"
                path_id = unquote(match.group("id")) if "id" in pattern.groupindex else None
                break
        headers = {key.lower(): value for key, value in self.headers.items()}
        with phillip._faults_lock:
            phillip.request_counts[route] += 1
            phillip.recorded.append(
                RecordedRequest(method, route, parts.path, headers, body, time.monotonic())
            )

        query = parse_qs(parts.query)
        fault = phillip.take_fault(route)
        if fault is None:
            self._write(phillip.handle(method, route, path_id, query, headers, body))
            return
        answer = None
        if fault.status is None or fault.process_first:
            answer = phillip.handle(method, route, path_id, query, headers, body)
        if fault.status is not None:
            answer = Answer(fault.status, fault.body or b"", fault.headers)
        if fault.delay_seconds and phillip.stopping.wait(fault.delay_seconds):
            return  # shutting down: nobody is waiting for this answer any more
        assert answer is not None
        self._write(answer)

    def _write(self, answer: Answer) -> None:
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting: the answer is lost, as scripted
