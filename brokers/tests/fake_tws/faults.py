"""Faults, as IB produces them, and the counters that measure a client against IB's limits.

- `set_link(up=False)` is TWS losing its link to IB: 1100 now and during every later handshake,
  until `set_link(up=True)` sends 1102;
- `hang_handshake = True`: accept TCP, read the greeting, never answer (a hung gateway);
- `frozen = True`: connected clients' requests are read and never answered (a TWS that hangs
  after the handshake, on a modal dialog say);
- pacing: more than 50 messages from one client in any one second are answered with error 100,
  like IB (`pacing_violations`, `max_messages_per_second`);
- a second client with a client id already connected gets 326 and is disconnected;
- `InactiveButWorking()` / `ErrorButWorking(code)` report a working order as Inactive, or send
  an error that ib_async takes for a cancel, while TWS keeps the order working;
- `new_trading_day()` is the daily / Sunday restart: clients dropped, completed orders and
  executions of the previous day no longer served;
- `fail_option_parameters(times)`: the next `times` reqSecDefOptParams are answered with error
  200, as TWS does when its security definition server cannot answer;
- `send_error(10197, ...)` and the farm notices (2103/2105/2157) are plain notices.
"""
from __future__ import annotations

from brokers.tests.fake_tws.model import Session
from brokers.tests.fake_tws.wire import error

PACING_LIMIT = 50  # messages per client in any one second


class Faults:
    """The fault switches and rate/line counters of FakeTWS (mixed into it)."""

    def set_link(self, *, up: bool) -> None:
        """TWS loses (1100) or regains (1102) its link to IB's servers."""
        def change() -> None:
            self._link_up = up
            self._broadcast(error(-1, 1102, "Connectivity between IB and Trader Workstation has "
                                  "been restored - data maintained.") if up else
                            error(-1, 1100, "Connectivity between IB and Trader Workstation has "
                                  "been lost."))
        self._call(change)

    def fail_option_parameters(self, times: int = 1) -> None:
        """The next `times` reqSecDefOptParams (an option chain's listing) fail with error 200."""
        def arm() -> None:
            self._option_parameter_failures = times
        self._call(arm)

    def new_trading_day(self) -> None:
        """The daily restart: clients dropped; yesterday's completed orders and executions are
        no longer served (working orders and positions carry over)."""
        def restart() -> None:
            self._drop_sessions()
            self._orders = {k: o for k, o in self._orders.items() if not o.is_done}
            self._executions.clear()
        self._call(restart)

    def reset_rate_counters(self) -> None:
        """Forget the rates measured so far (a benchmark measures one phase at a time)."""
        def reset() -> None:
            self.max_messages_per_second = self.max_account_messages_per_second = 0
            self._account_received_at.clear()
            for session in self._sessions:
                session.received_at.clear()
        self._call(reset)

    def arrival_times(self, msg_id: int) -> list[float]:
        """`time.perf_counter()` at which each message of this id was read (same-process clocks)."""
        return self._call(lambda: [t for m, t in self._arrivals if m == str(msg_id)])

    def _count_for_pacing(self, session: Session) -> None:
        now = self._loop.time()
        times = session.received_at
        times.append(now)
        while now - times[0] >= 1.0:
            times.popleft()
        self.max_messages_per_second = max(self.max_messages_per_second, len(times))
        everyone = self._account_received_at
        everyone.append(now)
        while now - everyone[0] >= 1.0:
            everyone.popleft()
        self.max_account_messages_per_second = max(self.max_account_messages_per_second,
                                                   len(everyone))
        if len(times) > PACING_LIMIT:
            self.pacing_violations += 1
            self._send(session, error(-1, 100, "Max rate of messages per second has been "
                                               f"exceeded:max=50 rec={len(times)}"))

    def _lines_in_use(self) -> int:
        return sum(len(s.tickers) for s in self._sessions)
