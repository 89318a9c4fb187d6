"""The simulated market's clock, and the UTC normalisation every part of the simulator shares.

`SimClock` is the only source of time for `SimulatedMarket`: manual (tests and benchmarks move it;
it never goes back) or following the wall clock. It is part of the market's state (`to_state` /
`from_state`). It lives apart from the market so that a clock can be made, moved and stored without
anything that prices or trades.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

UTC = UTC


class SimClock:
    """The simulated market's time: manual (tests move it) or following the wall clock."""

    def __init__(self, start: datetime | None = None, *, follow_wall: bool = False) -> None:
        if follow_wall == (start is not None):
            raise ValueError("give either a start time (manual clock) or follow_wall=True")
        self._follow_wall = follow_wall
        self._now = _utc(start) if start is not None else None

    @classmethod
    def manual(cls, start: datetime) -> SimClock:
        return cls(start)

    @classmethod
    def wall(cls) -> SimClock:
        return cls(follow_wall=True)

    @property
    def is_manual(self) -> bool:
        return not self._follow_wall

    def now(self) -> datetime:
        if self._now is None:
            return datetime.now(UTC)
        return self._now

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the clock never goes back")
        return self.jump(self._manual_now() + timedelta(seconds=seconds))

    def jump(self, to: datetime) -> datetime:
        to = _utc(to)
        if to < self._manual_now():
            raise ValueError("the clock never goes back")
        self._now = to
        return to

    def _manual_now(self) -> datetime:
        if self._now is None:
            raise ValueError("a clock that follows the wall clock cannot be moved")
        return self._now

    def to_state(self) -> dict[str, Any]:
        if self._now is None:
            return {"mode": "wall"}
        return {"mode": "manual", "now": self._now.isoformat()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SimClock:
        if state["mode"] == "wall":
            return cls.wall()
        return cls.manual(datetime.fromisoformat(state["now"]))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(UTC)
