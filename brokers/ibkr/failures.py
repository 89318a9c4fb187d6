"""Failures raised on the IB event loop; `IBKRBroker._run` turns each into the BrokerError of the
public operation it belongs to."""
from __future__ import annotations

from typing import Any


class Failure(Exception):
    """Raised inside the loop; turned into a BrokerError carrying the public operation name."""

    def __init__(self, code: str, message: str, *, retryable: bool,
                 context: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.retryable = code, message, retryable
        self.context = dict(context or {})


class IBFailure(Exception):
    def __init__(self, ib_code: int, ib_message: str, context: dict[str, Any]) -> None:
        super().__init__(ib_message)
        self.ib_code, self.ib_message, self.context = ib_code, ib_message, context
