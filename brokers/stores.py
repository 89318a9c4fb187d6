"""The simulated market's account state, kept in the client's schema."""
from __future__ import annotations

from typing import Any

from brokers.models import SimulatorState


class DatabaseSimulatorStore:
    """Implements brokers.mock.SimulatorStateStore on the current schema's SimulatorState row.

    Callers serialize sessions per client (brokers.services.broker_session holds a lock), and each
    save is written at once, as a real broker's state would be: nothing rolls it back.
    """

    def load(self) -> dict[str, Any] | None:
        row = SimulatorState.objects.filter(singleton=True).first()
        return row.state if row is not None else None

    def save(self, state: dict[str, Any]) -> None:
        SimulatorState.objects.update_or_create(singleton=True, defaults={"state": state})
