"""The TWS socket protocol at server version 178: framing, the handshake, field encoding and the
request reader.

The fake negotiates server version 178 (`MIN_SERVER_VER_PENDING_PRICE_REVISION`), the highest
ib_async 2.1 offers and what it gets from a current gateway. Every request it parses is read field
by field after ib_async's `client.py` for 178, and must be consumed exactly: a request with a
missing or extra field, a wrong version field or an unknown message id is answered with IB's error
320 ("Error reading request") like TWS does, and the fake keeps a list of them in `bad_requests` so
a test can assert none happened (`forget_bad_requests()` after sending some on purpose).
"""
from __future__ import annotations

import asyncio
import struct
from typing import Any

SERVER_VERSION = 178
BAG_CON_ID = 28812380  # IB's conId for every BAG contract
UNSET_DOUBLE = "1.7976931348623157E308"  # how TWS writes Double.MAX_VALUE ("no value")


class BadRequest(Exception):
    """A request that is not what TWS reads at this server version."""


class Reader:
    """Reads one request's fields in order; `done()` insists every field was consumed."""

    def __init__(self, fields: list[str]) -> None:
        self.fields, self.at = fields, 1  # fields[0] is the message id

    def str(self) -> str:
        if self.at >= len(self.fields):
            raise BadRequest(f"message {self.fields[0]} ends after {len(self.fields)} fields")
        value = self.fields[self.at]
        self.at += 1
        return value

    def int(self) -> int:
        text = self.str()
        try:
            return int(text) if text else 0
        except ValueError:
            raise BadRequest(f"field {self.at - 1} of message {self.fields[0]} is not an "
                              f"integer: {text!r}") from None

    def float(self) -> float | None:
        text = self.str()
        if text in ("", UNSET_DOUBLE):
            return None
        if text == "Infinite":
            return float("inf")
        try:
            return float(text)
        except ValueError:
            raise BadRequest(f"field {self.at - 1} of message {self.fields[0]} is not a "
                              f"number: {text!r}") from None

    def version(self, expected: int) -> None:
        got = self.int()
        if got != expected:
            raise BadRequest(f"message {self.fields[0]} version {got}, TWS reads {expected}")

    def skip(self, count: int) -> list[str]:
        return [self.str() for _ in range(count)]

    def contract(self) -> dict[str, str]:
        names = ("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right",
                 "multiplier", "exchange", "primaryExchange", "currency", "localSymbol",
                 "tradingClass")
        return dict(zip(names, self.skip(len(names)), strict=True))

    def done(self) -> None:
        if self.at != len(self.fields):
            raise BadRequest(f"message {self.fields[0]} has {len(self.fields) - self.at} "
                              f"unexpected trailing field(s)")


def error(req_id: int, code: int, message: str) -> list[Any]:
    return [4, 2, req_id, code, message, ""]  # "" = advancedOrderRejectJson (166+)


def offers_our_version(handshake: bytes) -> bool:
    """The client's "v<min>..<max>[ options]" must include SERVER_VERSION."""
    try:
        low, high = handshake.decode().split(" ")[0].lstrip("v").split("..")
        return int(low) <= SERVER_VERSION <= int(high)
    except ValueError:
        return False


def frame(fields: list[Any]) -> bytes:
    payload = "".join(f"{value}\0" for value in fields).encode()
    return struct.pack(">I", len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    return await reader.readexactly(size)


def num(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def opt(value: float | None) -> str:
    return "" if value is None else repr(value)

