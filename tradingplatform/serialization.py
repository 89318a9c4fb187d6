"""Making validated data storable as JSON."""
from __future__ import annotations

from typing import Any


def json_ready(value: Any) -> Any:
    """Dicts, lists and primitives as they are; anything else (Decimal, date, ...) as its text."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
