"""Reading PhillipCapital's answers: strict field access, and the domain objects built from them.

Pure: no Django, no HTTP. Every accessor raises `Malformed` naming the field's path and what was
expected; the broker turns it into a `malformed_response` BrokerError, which is never retried.
"""
from __future__ import annotations

import email.utils
import json
import math
from datetime import UTC, date, datetime
from typing import Any, NoReturn

from brokers.domain import Greeks, Instrument, OrderStatus, Quote

ORDER_STATES = ("pending_submit", "submitted", "partially_filled", "filled", "cancelled", "rejected")


class Malformed(Exception):
    def __init__(self, field: str, expected: str) -> None:
        super().__init__(f"{field}: expected {expected}")
        self.field = field
        self.expected = expected


def reject_non_finite(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def decode_json(content: bytes) -> Any:
    try:
        return json.loads(content, parse_constant=reject_non_finite)
    except (ValueError, RecursionError):
        raise Malformed("body", "a JSON document") from None


class Fields:
    """Typed, strict access to one JSON object; every mistake names the field that caused it."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise Malformed(where or "body", "an object")
        self._data = data
        self._where = where

    def path(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def _get(self, key: str) -> Any:
        if key not in self._data:
            raise Malformed(self.path(key), "a value (missing)")
        return self._data[key]

    def text(self, key: str, *, allow_empty: bool = False) -> str:
        value = self._get(key)
        if not isinstance(value, str) or (not allow_empty and not value):
            raise Malformed(self.path(key), "a non-empty string" if not allow_empty else "a string")
        return value

    def text_or_empty(self, key: str) -> str:
        """An optional string: missing or null reads as ""."""
        return "" if self._data.get(key) is None else self.text(key, allow_empty=True)

    def optional_text(self, key: str) -> str | None:
        return None if self._data.get(key) is None else self.text(key)

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self._get(key)
        if value not in options:
            raise Malformed(self.path(key), f"one of {', '.join(options)}")
        return value

    def optional_choice(self, key: str, options: tuple[str, ...]) -> str | None:
        return None if self._data.get(key) is None else self.choice(key, options)

    def integer(self, key: str, *, minimum: int | None = None) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            raise Malformed(
                self.path(key), "an integer" + (f" >= {minimum}" if minimum is not None else "")
            )
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise Malformed(self.path(key), "a finite number")
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
        raise Malformed(self.path(key), "a date YYYY-MM-DD")

    def optional_day(self, key: str) -> date | None:
        return None if self._data.get(key) is None else self.day(key)

    def moment(self, key: str) -> datetime:
        value = self._get(key)
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.utcoffset() is None:
            raise Malformed(self.path(key), "an ISO 8601 time with an offset")
        return parsed.astimezone(UTC)

    def optional_moment(self, key: str) -> datetime | None:
        return None if self._data.get(key) is None else self.moment(key)

    def obj(self, key: str) -> Fields:
        return Fields(self._get(key), self.path(key))

    def optional_obj(self, key: str) -> Fields | None:
        return None if self._data.get(key) is None else self.obj(key)

    def items(self, key: str) -> list[Fields]:
        value = self._get(key)
        if not isinstance(value, list):
            raise Malformed(self.path(key), "an array")
        return [Fields(item, f"{self.path(key)}[{index}]") for index, item in enumerate(value)]


def parse_instrument(fields: Fields) -> Instrument:
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


def _positive(fields: Fields, key: str) -> float:
    value = fields.number(key)
    if value <= 0:
        raise Malformed(fields.path(key), "a number > 0")
    return value


def parse_order(fields: Fields, expected_client_order_id: str) -> OrderStatus:
    client_order_id = fields.text("client_order_id")
    if client_order_id != expected_client_order_id:
        raise Malformed(fields.path("client_order_id"), f"the id asked for ({expected_client_order_id})")
    return OrderStatus(
        client_order_id=client_order_id,
        broker_order_id=fields.text("order_id"),
        state=fields.choice("state", ORDER_STATES),  # type: ignore[arg-type]
        filled_quantity=fields.integer("filled_quantity", minimum=0),
        remaining_quantity=fields.integer("remaining_quantity", minimum=0),
        average_fill_price=fields.optional_number("average_fill_price"),
        message=fields.text("message", allow_empty=True),
        time=fields.moment("updated_at"),
    )


def parse_retry_after(value: str | None) -> float | None:
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


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_quote(fields: Fields, instrument: Instrument) -> Quote:
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
