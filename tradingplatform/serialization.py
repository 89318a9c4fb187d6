"""Making validated data storable as JSON."""
from __future__ import annotations

import math
from typing import Any


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: an unknown number goes out as null."""
    if value is None or not math.isfinite(value):
        return None
    return value


def json_ready(value: Any) -> Any:
    """Dicts, lists and primitives as they are (a NaN or infinite float as null); anything else
    (Decimal, date, ...) as its text."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)
