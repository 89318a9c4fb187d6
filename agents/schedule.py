"""When an agent's cycles are due: pure arithmetic, no Django.

Cycle n of a client with interval T starts at `n * T + phase` seconds after the epoch, where the
phase (0 <= phase < T) is fixed by the client's id, so that clients with one interval spread over
it instead of all starting at once. A cycle's start never depends on when the last one ended:
an interval of 5 s gives a cycle every 5 s, whatever each takes. Slot n is named by its key
`schedule:T:n`, so that a cycle is never run twice for one slot.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class Slot:
    key: str
    start: datetime
    end: datetime  # the next slot's start: a cycle not started by then is not started at all


def _phase(client_id: str, interval: int) -> float:
    return zlib.crc32(client_id.encode()) % (interval * 1000) / 1000


def slot_at(*, client_id: str, interval: int, number: int) -> Slot:
    start = number * interval + _phase(client_id, interval)
    return Slot(key=f"schedule:{interval}:{number}", start=datetime.fromtimestamp(start, UTC),
                end=datetime.fromtimestamp(start + interval, UTC))


def slot_number(*, client_id: str, interval: int, when: datetime) -> int:
    """The slot running at `when` (the last one started at or before it)."""
    return math.floor((when.timestamp() - _phase(client_id, interval)) / interval)


def slots_to_queue(*, client_id: str, interval: int, now: datetime, horizon: timedelta) -> list[Slot]:
    """The slots a scheduler looking now, and next after `horizon`, queues: the one running now
    (started, not yet over) and every one starting before the next look."""
    current = slot_number(client_id=client_id, interval=interval, when=now)
    slots = [slot_at(client_id=client_id, interval=interval, number=current)]
    while slots[-1].end <= now + horizon:
        slots.append(slot_at(client_id=client_id, interval=interval, number=current + len(slots)))
    return slots


def next_cycle_at(*, client_id: str, interval: int, now: datetime) -> datetime:
    """The start of the next slot after now."""
    return slot_at(client_id=client_id, interval=interval,
                   number=slot_number(client_id=client_id, interval=interval, when=now) + 1).start
