"""A loopback stand-in for TWS / IB Gateway that speaks the real TWS socket protocol.

The unmodified `ib_async` client connects to it over TCP on 127.0.0.1, at server version 178, and
gets what a current gateway would send, faults included. The package, one idea a module:
- `wire`: framing, the handshake, field encoding and the request reader (error 320 on a request
  TWS would not read);
- `model`: contracts, orders, executions, positions, sessions and the scripted order actions;
- `messages`: the version-178 messages sent (contract details, open/completed orders, executions,
  commission reports);
- `handlers`: the answers to every request but orders, market data included;
- `orders`: placeOrder, fills, cancels, open/completed orders and executions;
- `faults`: the fault switches and the pacing / market-data-line counters;
- `server`: `FakeTWS`, its sessions, its event loop and the API tests script it with.
"""
from brokers.tests.fake_tws.faults import PACING_LIMIT
from brokers.tests.fake_tws.handlers import DELAYED_10167, FARM_NOTICES, NOT_SUBSCRIBED_354
from brokers.tests.fake_tws.model import (
    DELAYED,
    DELAYED_FROZEN,
    FROZEN,
    LIVE,
    ComboLegSpec,
    ErrorButWorking,
    FakeContract,
    FakeExecution,
    FakeOrder,
    Fill,
    Held,
    InactiveButWorking,
    OrderAction,
    Reject,
    Rest,
)
from brokers.tests.fake_tws.server import FakeTWS
from brokers.tests.fake_tws.wire import BAG_CON_ID, SERVER_VERSION, UNSET_DOUBLE

__all__ = [
    "BAG_CON_ID", "DELAYED", "DELAYED_10167", "DELAYED_FROZEN", "FARM_NOTICES", "FROZEN", "LIVE",
    "NOT_SUBSCRIBED_354", "PACING_LIMIT", "SERVER_VERSION", "UNSET_DOUBLE", "ComboLegSpec",
    "ErrorButWorking", "FakeContract", "FakeExecution", "FakeOrder", "FakeTWS", "Fill", "Held",
    "InactiveButWorking", "OrderAction", "Reject", "Rest",
]
