"""Instruments to and from JSON, for the rows that store them."""
from __future__ import annotations

from datetime import date
from typing import Any

from brokers.domain import Instrument


def instrument_to_json(instrument: Instrument) -> dict[str, Any]:
    return {
        "symbol": instrument.symbol,
        "sec_type": instrument.sec_type,
        "expiry": instrument.expiry.isoformat(),
        "exchange": instrument.exchange,
        "multiplier": instrument.multiplier,
        "currency": instrument.currency,
        "strike": instrument.strike,
        "right": instrument.right,
        "trading_class": instrument.trading_class,
        "exercise_style": instrument.exercise_style,
        "underlying_expiry": instrument.underlying_expiry.isoformat() if instrument.underlying_expiry else None,
        "broker_ref": instrument.broker_ref,
    }


def instrument_from_json(data: dict[str, Any]) -> Instrument:
    return Instrument(
        symbol=data["symbol"],
        sec_type=data["sec_type"],
        expiry=date.fromisoformat(data["expiry"]),
        exchange=data["exchange"],
        multiplier=float(data["multiplier"]),
        currency=data.get("currency", "USD"),
        strike=float(data["strike"]) if data.get("strike") is not None else None,
        right=data.get("right"),
        trading_class=data.get("trading_class", ""),
        exercise_style=data.get("exercise_style"),
        underlying_expiry=date.fromisoformat(data["underlying_expiry"]) if data.get("underlying_expiry") else None,
        broker_ref=data.get("broker_ref", ""),
    )
