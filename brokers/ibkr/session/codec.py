"""The broker interface's dataclasses (and BrokerError) as JSON, for the session process's RPC."""
from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Any

from brokers import domain
from brokers.domain import BrokerError

_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    domain.Instrument, domain.Greeks, domain.Quote, domain.OrderLeg, domain.OrderRequest,
    domain.OrderStatus, domain.Fill, domain.Position, domain.AccountSummary, domain.BrokerHealth)}
_TUPLE_FIELDS = {("OrderRequest", "legs")}


def encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if name not in _TYPES:
            raise TypeError(f"{name} does not travel over the session RPC")
        return {"__t": name, **{f.name: encode(getattr(value, f.name))
                                for f in dataclasses.fields(value)}}
    if isinstance(value, datetime):
        return {"__dt": value.isoformat()}
    if isinstance(value, date):
        return {"__d": value.isoformat()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__dt" in value:
        return datetime.fromisoformat(value["__dt"])
    if "__d" in value:
        return date.fromisoformat(value["__d"])
    if "__t" in value:
        name = value["__t"]
        fields = {k: decode(v) for k, v in value.items() if k != "__t"}
        for tuple_type, field in _TUPLE_FIELDS:
            if name == tuple_type:
                fields[field] = tuple(fields[field])
        return _TYPES[name](**fields)
    return {k: decode(v) for k, v in value.items()}


def error_encode(error: BrokerError) -> dict[str, Any]:
    return encode(error.payload())


def error_decode(payload: dict[str, Any]) -> BrokerError:
    payload = decode(payload)
    return BrokerError(operation=payload["operation"], broker=payload["broker"], code=payload["code"],
                       message=payload["message"], retryable=payload["retryable"],
                       context=payload.get("context"))
