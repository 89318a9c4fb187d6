"""What TWS / IB Gateway has told us about its own state, from its error channel.

IB reports state changes as numbered notices, not as request failures:
- 1100 (or 2110): TWS lost its link to IB's servers; nothing may be sent until 1101/1102;
- 2103/2105/2157: a market-data / historical / security-definition farm is down (2104/2106/2158:
  it is back); quotes may stall, the book is then valued with the model's greeks;
- 10197: another session of this login holds the live market data (a competing live session);
- 326: the client id is already in use on this gateway (the connection is refused).

`LinkState` keeps the latest of each, with when it began, for health and status pages. It lives
on the session's event loop; readers in other threads get copies through `snapshot()`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from brokers.ibkr.contracts import utc_now
from brokers.ibkr.errors import LINK_DOWN_CODES, LINK_RESTORED_CODES

FARM_DOWN_CODES = frozenset({2103, 2105, 2157})
FARM_OK_CODES = frozenset({2104, 2106, 2158})
COMPETING_SESSION_CODE = 10197
CLIENT_ID_IN_USE_CODE = 326


@dataclass(frozen=True, slots=True)
class Notice:
    code: int
    message: str
    since: datetime


@dataclass
class LinkState:
    link_down: Notice | None = None
    farms_down: dict[str, Notice] = field(default_factory=dict)  # farm name -> notice
    competing_session: Notice | None = None
    client_id_in_use: Notice | None = None

    def on_error(self, code: int, message: str) -> str | None:
        """Record a notice; returns "down"/"restored" when the link to IB changed, else None."""
        now = utc_now()
        if code in LINK_DOWN_CODES:
            if self.link_down is None:
                self.link_down = Notice(code, message, now)
            return "down"
        if code in LINK_RESTORED_CODES:
            self.link_down = None
            return "restored"
        if code in FARM_DOWN_CODES:
            self.farms_down[_farm_name(message)] = Notice(code, message, now)
        elif code in FARM_OK_CODES:
            self.farms_down.pop(_farm_name(message), None)
        elif code == COMPETING_SESSION_CODE:
            self.competing_session = self.competing_session or Notice(code, message, now)
        elif code == CLIENT_ID_IN_USE_CODE:
            self.client_id_in_use = Notice(code, message, now)
        return None

    def connection_started(self) -> None:
        """A new API connection: TWS repeats every notice that still holds during the handshake
        (1100 included), so what the last connection heard no longer counts."""
        self.link_down = None
        self.farms_down.clear()
        self.competing_session = None
        self.client_id_in_use = None

    def market_data_answered(self) -> None:
        """Live data came through: no other session holds it any more."""
        self.competing_session = None

    @property
    def model_valuation(self) -> bool:
        """The broker's own greeks cannot be trusted now: value with the model."""
        return bool(self.farms_down) or self.competing_session is not None

    def snapshot(self) -> dict[str, object]:
        def one(notice: Notice | None) -> dict[str, object] | None:
            return None if notice is None else {
                "code": notice.code, "message": notice.message, "since": notice.since.isoformat()}
        return {
            "link_down": one(self.link_down),
            "farms_down": {name: one(n) for name, n in sorted(self.farms_down.items())},
            "competing_session": one(self.competing_session),
            "client_id_in_use": one(self.client_id_in_use),
        }

    def describe(self) -> str:
        """One line for BrokerHealth.detail ("" when nothing is wrong)."""
        parts = []
        if self.link_down is not None:
            parts.append(f"IB error {self.link_down.code}: TWS has no link to IB since "
                         f"{self.link_down.since:%H:%M:%S} UTC; nothing is sent until it is back")
        for name, notice in sorted(self.farms_down.items()):
            parts.append(f"IB {notice.code}: data farm {name} down; valuing with the model")
        if self.competing_session is not None:
            parts.append("IB 10197: another session of this login holds the live market data; "
                         "valuing with the model")
        return "; ".join(parts)


def _farm_name(message: str) -> str:
    # "Market data farm connection is broken:usfarm" / "... is OK:usfarm.nj"
    return message.rsplit(":", 1)[-1].strip() or "?"
