"""Interactive Brokers error codes, mapped to the platform's BrokerError codes.

IB reports every failure as a numeric code on its error channel. The table decides two things the
caller acts on: a stable code of ours, and whether trying again later can succeed (connectivity,
pacing, timeouts) or cannot (a rejection or a malformed request stays wrong however often it is
sent). Codes missing from the table are passed through as `ib_<code>`, not retryable: an unknown
failure must not start a retry loop that could send an order twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brokers.domain import BrokerError

BROKER_NAME = "ibkr"


@dataclass(frozen=True, slots=True)
class IBErrorKind:
    code: str
    retryable: bool


IB_ERRORS: dict[int, IBErrorKind] = {
    100: IBErrorKind("pacing_violation", True),  # max rate of messages per second exceeded
    101: IBErrorKind("max_tickers_reached", True),  # every market-data line is held
    103: IBErrorKind("duplicate_order_id", False),
    110: IBErrorKind("invalid_price_increment", False),
    161: IBErrorKind("order_not_cancellable", False),
    162: IBErrorKind("pacing_violation", True),  # historical data pacing
    200: IBErrorKind("unknown_contract", False),  # no security definition found
    201: IBErrorKind("order_rejected", False),
    202: IBErrorKind("order_cancelled", False),
    203: IBErrorKind("security_not_allowed", False),
    321: IBErrorKind("invalid_request", False),  # server validation of the API request
    326: IBErrorKind("client_id_in_use", False),  # configuration: another session holds the id
    354: IBErrorKind("market_data_not_subscribed", False),
    420: IBErrorKind("pacing_violation", True),
    502: IBErrorKind("connect_failed", True),  # TWS not running / API port closed
    504: IBErrorKind("not_connected", True),
    507: IBErrorKind("connection_lost", True),  # bad message length: socket torn down
    1100: IBErrorKind("connectivity_lost", True),  # TWS <-> IB servers link down
    1101: IBErrorKind("connectivity_restored_data_lost", True),
    1102: IBErrorKind("connectivity_restored", True),
    1300: IBErrorKind("connection_lost", True),  # TWS socket port reset
    2103: IBErrorKind("market_data_farm_down", True),
    2105: IBErrorKind("market_data_farm_down", True),
    2110: IBErrorKind("connectivity_lost", True),  # TWS <-> server link broken, auto-restores
    10147: IBErrorKind("order_not_found", False),
    10148: IBErrorKind("order_not_cancellable", False),
    10167: IBErrorKind("market_data_delayed", True),  # live data not yet available
    10197: IBErrorKind("competing_session", True),  # market data held by another session
}

# Notices that mean "still alive" or "link state changed"; they never fail an operation.
INFORMATIONAL_CODES = frozenset({1101, 1102, 2104, 2106, 2107, 2108, 2119, 2158})
# Codes after which TWS can no longer reach IB: orders must not be sent until 1101/1102.
LINK_DOWN_CODES = frozenset({1100, 2110})
LINK_RESTORED_CODES = frozenset({1101, 1102})


def ib_error_kind(ib_code: int) -> IBErrorKind:
    return IB_ERRORS.get(ib_code, IBErrorKind(f"ib_{ib_code}", False))


def broker_error_from_ib(
    *, operation: str, ib_code: int, ib_message: str, context: dict[str, Any] | None = None
) -> BrokerError:
    kind = ib_error_kind(ib_code)
    return BrokerError(
        operation=operation,
        broker=BROKER_NAME,
        code=kind.code,
        message=f"IB error {ib_code}: {ib_message}",
        retryable=kind.retryable,
        context={"ib_code": ib_code, **(context or {})},
    )
