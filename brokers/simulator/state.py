"""The account's state records and their JSON form.

`_Order`, `_Faults` and `_Ledger` are the mutable records `SimulatedMarket` keeps its orders,
injected faults and positions/fills in. The serialization helpers turn fills, order requests and
orders into JSON-compatible dicts and back; `SimulatedMarket.to_state` / `from_state` build the
whole state from them. The format is stored by the mock broker's state store, so it must not change
without a new `STATE_VERSION` (`brokers.simulator.account`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from brokers.codec import instrument_from_json, instrument_to_json
from brokers.domain import Fill, OrderLeg, OrderRequest, OrderState, OrderStatus, Position

TERMINAL_STATES: frozenset[str] = frozenset({"filled", "cancelled", "rejected"})


# ---------------------------------------------------------------------------------------------
# State records


@dataclass(slots=True)
class _Order:
    request: OrderRequest
    broker_order_id: str
    sequence: int
    placed_at: datetime
    units: int
    state: OrderState
    updated_at: datetime
    filled_units: int = 0
    filled_value: float = 0.0  # sum of units x net price, for the average
    message: str = ""
    next_check_step: int | None = None  # resting orders: first step not yet matched
    ends_at: datetime | None = None  # resting orders: when they are cancelled if unfilled

    @property
    def is_resting(self) -> bool:
        return self.next_check_step is not None and self.state not in TERMINAL_STATES

    def status(self) -> OrderStatus:
        working = self.state not in TERMINAL_STATES
        return OrderStatus(
            client_order_id=self.request.client_order_id,
            broker_order_id=self.broker_order_id,
            state=self.state,
            filled_quantity=self.filled_units,
            remaining_quantity=self.units - self.filled_units if working else 0,
            average_fill_price=self.filled_value / self.filled_units if self.filled_units else None,
            message=self.message,
            time=self.updated_at,
        )


@dataclass(slots=True)
class _Faults:
    disconnected: bool = False
    failed_reconnects: int = 0
    rejections_remaining: int = 0
    rejection_code: str = "rejected"
    rejection_message: str = ""
    fill_ratio: float = 1.0


@dataclass(slots=True)
class _Ledger:
    positions: dict[str, Position] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    realized_pnl: float = 0.0
    commissions: float = 0.0
    fill_sequence: int = 0


# ---------------------------------------------------------------------------------------------
# Serialization helpers (JSON-compatible dicts; floats round-trip exactly through json)


def fill_to_state(fill: Fill) -> dict[str, Any]:
    return {
        "fill_id": fill.fill_id,
        "client_order_id": fill.client_order_id,
        "instrument": instrument_to_json(fill.instrument),
        "side": fill.side,
        "quantity": fill.quantity,
        "price": fill.price,
        "commission": fill.commission,
        "time": fill.time.isoformat(),
        "realized_pnl": fill.realized_pnl,
    }


def fill_from_state(data: dict[str, Any]) -> Fill:
    return Fill(**{
        **data,
        "instrument": instrument_from_json(data["instrument"]),
        "time": datetime.fromisoformat(data["time"]),
    })


def order_request_to_state(request: OrderRequest) -> dict[str, Any]:
    return {
        "client_order_id": request.client_order_id,
        "legs": [
            {"instrument": instrument_to_json(leg.instrument), "side": leg.side, "quantity": leg.quantity}
            for leg in request.legs
        ],
        "order_type": request.order_type,
        "limit_price": request.limit_price,
        "time_in_force": request.time_in_force,
    }


def order_request_from_state(data: dict[str, Any]) -> OrderRequest:
    return OrderRequest(
        client_order_id=data["client_order_id"],
        legs=tuple(
            OrderLeg(instrument_from_json(leg["instrument"]), leg["side"], leg["quantity"])
            for leg in data["legs"]
        ),
        order_type=data["order_type"],
        limit_price=data["limit_price"],
        time_in_force=data["time_in_force"],
    )


def _order_to_state(order: _Order) -> dict[str, Any]:
    return {
        "request": order_request_to_state(order.request),
        "broker_order_id": order.broker_order_id,
        "sequence": order.sequence,
        "placed_at": order.placed_at.isoformat(),
        "units": order.units,
        "state": order.state,
        "updated_at": order.updated_at.isoformat(),
        "filled_units": order.filled_units,
        "filled_value": order.filled_value,
        "message": order.message,
        "next_check_step": order.next_check_step,
        "ends_at": order.ends_at.isoformat() if order.ends_at else None,
    }


def _order_from_state(data: dict[str, Any]) -> _Order:
    return _Order(
        request=order_request_from_state(data["request"]),
        broker_order_id=data["broker_order_id"],
        sequence=data["sequence"],
        placed_at=datetime.fromisoformat(data["placed_at"]),
        units=data["units"],
        state=data["state"],
        updated_at=datetime.fromisoformat(data["updated_at"]),
        filled_units=data["filled_units"],
        filled_value=data["filled_value"],
        message=data["message"],
        next_check_step=data["next_check_step"],
        ends_at=datetime.fromisoformat(data["ends_at"]) if data["ends_at"] else None,
    )
