"""`PhillipBroker`: the `Broker` interface over PhillipCapital's REST contract
(docs/brokers/phillip.md). What is asked and what the answers mean live here; the HTTP exchange is
brokers.phillip.transport's, reading the answers brokers.phillip.parsing's."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote as url_quote

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
from brokers.phillip.parsing import (
    Fields,
    Malformed,
    decode_json,
    format_time,
    parse_instrument,
    parse_order,
    parse_quote,
)
from brokers.phillip.transport import (
    BROKER_NAME,
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_READ_TIMEOUT_SECONDS,
    PhillipTransport,
)
from brokers.products import PRODUCTS

QUOTES_PER_REQUEST = 100
_CLIENT_ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


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
        self._transport = PhillipTransport(
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            request_retries=request_retries,
            request_backoff_seconds=request_backoff_seconds,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            clock=clock,
        )
        self._exchange = exchange
        self._currency = currency
        self._instrument_ids: dict[str, str] = {}

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
            f"PhillipBroker(base_url={self._transport.base_url!r}, exchange={self._exchange!r}, "
            f"currency={self._currency!r}, request_retries={self._transport.retries})"
        )

    # -- Broker -----------------------------------------------------------------------------

    def connect(self) -> None:
        self._transport.access_token("connect", force_new=True)

    def disconnect(self) -> None:
        self._transport.close()

    def health(self) -> BrokerHealth:
        try:
            response = self._transport.request("health", "GET", "/health", retries=0)
            with self._transport.parsing("health", "/health", response):
                fields = Fields(decode_json(response.content), "")
                status = fields.choice("status", ("ok", "degraded"))
                detail = fields.text_or_empty("detail")
        except BrokerError as error:
            return BrokerHealth(self.name, False, f"{error.code}: {error.message}", datetime.now(UTC))
        return BrokerHealth(self.name, status == "ok", self._transport.scrub(detail), datetime.now(UTC))

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
            for instrument in self._list(operation, "/instruments", params, "instruments", parse_instrument)
            if instrument.symbol == symbol
            and instrument.sec_type == sec_type
            and (expiry is None or instrument.expiry == expiry)
            and (strike is None or instrument.strike == float(strike))
            and (right is None or instrument.right == right)
        ]
        description = {key: value for key, value in params.items() if key != "exchange"}
        if not matches:
            raise self._transport.error(
                operation, "instrument_not_found", "no listed contract matches", False, description
            )
        if sec_type == "FUT" and expiry is None:
            chosen = min(matches, key=lambda instrument: instrument.expiry)
        elif len(matches) > 1:
            raise self._transport.error(
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
            for instrument in self._list("listed_futures", "/instruments", params, "instruments", parse_instrument)
            if instrument.symbol == symbol and instrument.sec_type == "FUT"
        ]
        futures.sort(key=lambda instrument: instrument.expiry)
        self._instrument_ids.update({instrument.key: instrument.broker_ref for instrument in futures})
        return futures

    def option_chain(self, underlying: Instrument) -> list[Instrument]:
        operation = "option_chain"
        if underlying.sec_type != "FUT":
            raise self._transport.error(
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
            for instrument in self._list(operation, "/instruments", params, "instruments", parse_instrument)
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
        by_id: dict[str, Fields] = {}
        for start in range(0, len(unique_ids), QUOTES_PER_REQUEST):
            batch = unique_ids[start : start + QUOTES_PER_REQUEST]
            params = [("instrument_id", instrument_id) for instrument_id in batch]
            response = self._transport.request(operation, "GET", "/quotes", params=params)
            with self._transport.parsing(operation, "/quotes", response):
                for fields in Fields(decode_json(response.content), "").items("quotes"):
                    by_id[fields.text("instrument_id")] = fields
                missing = [instrument_id for instrument_id in batch if instrument_id not in by_id]
                if missing:
                    raise Malformed("quotes", f"a quote for every instrument asked (missing {missing[0]})")
        with self._transport.parsing(operation, "/quotes", None):
            return [
                parse_quote(by_id[instrument_id], instrument)
                for instrument_id, instrument in zip(ids, instruments, strict=True)
            ]

    def positions(self) -> list[Position]:
        def parse(fields: Fields) -> Position:
            quantity = fields.integer("quantity")
            if quantity == 0:
                raise Malformed(fields.path("quantity"), "a non-zero integer")
            return Position(
                parse_instrument(fields.obj("instrument")), quantity, fields.number("average_price")
            )

        return self._list("positions", "/positions", {}, "positions", parse)

    def place_order(self, order: OrderRequest) -> OrderStatus:
        operation = "place_order"
        if not _CLIENT_ORDER_ID_PATTERN.match(order.client_order_id):
            raise self._transport.error(
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
        response = self._transport.request(operation, "POST", "/orders", json_body=body, accept=(200, 201))
        with self._transport.parsing(operation, "/orders", response):
            return parse_order(Fields(decode_json(response.content), ""), order.client_order_id)

    def cancel_order(self, client_order_id: str) -> OrderStatus:
        operation = "cancel_order"
        path = f"{self._order_path(client_order_id)}/cancel"
        response = self._transport.request(operation, "POST", path, json_body={})
        with self._transport.parsing(operation, path, response):
            return parse_order(Fields(decode_json(response.content), ""), client_order_id)

    def order_status(self, client_order_id: str) -> OrderStatus | None:
        operation = "order_status"
        path = self._order_path(client_order_id)
        try:
            response = self._transport.request(operation, "GET", path)
        except BrokerError as error:
            if error.code == "order_not_found":
                return None
            raise
        with self._transport.parsing(operation, path, response):
            return parse_order(Fields(decode_json(response.content), ""), client_order_id)

    def fills_since(self, since: datetime) -> list[Fill]:
        operation = "fills_since"
        if since.utcoffset() is None:
            raise self._transport.error(operation, "invalid_request", "since must be timezone-aware", False, {})

        def parse(fields: Fields) -> Fill:
            return Fill(
                fill_id=fields.text("fill_id"),
                client_order_id=fields.text("client_order_id"),
                instrument=parse_instrument(fields.obj("instrument")),
                side=fields.choice("side", ("BUY", "SELL")),  # type: ignore[arg-type]
                quantity=fields.integer("quantity", minimum=1),
                price=fields.number("price"),
                commission=fields.number("commission"),
                time=fields.moment("time"),
                realized_pnl=fields.optional_number("realized_pnl"),
            )

        return self._list(operation, "/fills", {"since": format_time(since)}, "fills", parse)

    def account_summary(self) -> AccountSummary:
        operation = "account_summary"
        path = "/account/summary"
        response = self._transport.request(operation, "GET", path, params={"currency": self._currency})
        with self._transport.parsing(operation, path, response):
            fields = Fields(decode_json(response.content), "")
            if fields.text("currency") != self._currency:
                raise Malformed("currency", f"the currency asked for ({self._currency})")
            return AccountSummary(
                currency=self._currency,
                net_liquidation=fields.number("net_liquidation"),
                initial_margin=fields.number("initial_margin"),
                maintenance_margin=fields.number("maintenance_margin"),
                available_funds=fields.number("available_funds"),
                realized_pnl=fields.optional_number("realized_pnl"),
                unrealized_pnl=fields.optional_number("unrealized_pnl"),
            )

    # -- helpers ---------------------------------------------------------------------------

    def _list(
        self,
        operation: str,
        path: str,
        params: dict[str, str],
        key: str,
        parse: Callable[[Fields], Any],
    ) -> list[Any]:
        """Every item of a paginated list endpoint, following `next_cursor` to the end."""
        items: list[Any] = []
        cursor: str | None = None
        seen_cursors: set[str] = set()
        while True:
            page_params = dict(params, cursor=cursor) if cursor is not None else params
            response = self._transport.request(operation, "GET", path, params=page_params)
            with self._transport.parsing(operation, path, response):
                page = Fields(decode_json(response.content), "")
                items.extend(parse(fields) for fields in page.items(key))
                next_cursor = page.optional_text("next_cursor")
                if next_cursor in seen_cursors:
                    raise Malformed("next_cursor", "null or a cursor not seen before")
            if next_cursor is None:
                return items
            seen_cursors.add(next_cursor)
            cursor = next_cursor

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
