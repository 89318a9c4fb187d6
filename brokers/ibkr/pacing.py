"""IB's message pacing, enforced at the wire.

TWS / IB Gateway answers error 100 ("Max rate of messages per second has been exceeded") and then
drops a client that sends more than 50 messages in one second. Pacing the requests we *think* of
sending is not enough (cancels, startup requests and ib_async's own follow-ups slip past a token
bucket), so `WirePacer` replaces the client's `sendMsg`: every message of the session, cancels
included, is queued and written only while fewer than `limit` messages went out in the last
`window` seconds. One pacer per account, shared across reconnects.

The window is wider than IB's one second (1.25 s by default) so that a batch delayed on its way
(loop latency, TCP) cannot meet the next batch inside one of TWS's one-second windows: 45 messages
per 1.25 s reach TWS as at most 45 in any second with up to 0.25 s of jitter.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 45
DEFAULT_WINDOW_SECONDS = 1.25


class WirePacer:
    """At most `limit` messages in any `window` seconds, in order, for one IB client."""

    def __init__(self, limit: int = DEFAULT_LIMIT, window: float = DEFAULT_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit, self.window = limit, window
        self._clock = clock
        self._sent: deque[float] = deque()
        self._queue: deque[str] = deque()
        self._client: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self.sent_total = 0
        self.dropped_total = 0

    def install(self, client: Any) -> None:
        """Route every message of this ib_async `Client` through the pacer (its own throttle off)."""
        client.MaxRequests = 0
        client.sendMsg = self.submit
        self._client = client

    @property
    def queued(self) -> int:
        return len(self._queue)

    def room(self) -> int:
        """How many messages may go out right now."""
        self._forget_old(self._clock())
        return self.limit - len(self._sent)

    async def room_available(self) -> None:
        """Wait while messages are queued: a caller about to send many (market-data lines) lets
        the queue drain instead of piling requests up behind it."""
        while self._queue:
            await asyncio.sleep(0.005)

    def submit(self, msg: str | None) -> None:
        if msg:
            self._queue.append(msg)
        self._drain()

    def _forget_old(self, now: float) -> None:
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()

    def _drain(self) -> None:
        self._timer = None
        client = self._client
        if client is None:
            return
        if self._queue and not client.isConnected():
            # never write a stale request into a later connection: the caller learns of the loss
            # by its own timeout (an order's outcome is then unknown and asked for by orderRef)
            self.dropped_total += len(self._queue)
            logger.warning("IBKR pacer dropped %d queued message(s): not connected", len(self._queue))
            self._queue.clear()
            return
        now = self._clock()
        self._forget_old(now)
        while self._queue and len(self._sent) < self.limit:
            msg = self._queue.popleft()
            client.conn.sendMsg(client._prefix(msg.encode()))
            self._sent.append(now)
            self.sent_total += 1
        if self._queue and self._timer is None:
            loop = asyncio.get_running_loop()
            delay = max(self._sent[0] + self.window - now, 0.001)
            self._timer = loop.call_later(delay, self._drain)
