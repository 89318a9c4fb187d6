"""The event loop the IB client lives on, and the pacing of outgoing requests.

Callers are synchronous (Django views, Celery tasks), may run in any thread and may have no event
loop of their own. ib_async is asyncio code bound to one loop, so each broker owns a daemon thread
running a private loop; calls are submitted with `run_coroutine_threadsafe` and waited for with a
timeout, after which the coroutine is cancelled.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run on the loop and wait; raises TimeoutError (coroutine cancelled) after `timeout`."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:g} s") from None

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


class TokenBucket:
    """At most `rate` messages per second on average, bursts up to `capacity`.

    IB disconnects clients that exceed about 50 messages per second; every request we send takes
    tokens first. `clock` is injectable so that the arithmetic is testable without sleeping.
    """

    def __init__(self, rate: float, capacity: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = capacity
        self._tokens = capacity
        self._clock = clock
        self._updated = clock()

    def reserve(self, count: float = 1.0) -> float:
        """Take `count` tokens now (possibly going into debt); return the seconds to wait."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        self._tokens -= count
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    async def acquire(self, count: float = 1.0) -> None:
        delay = self.reserve(count)
        if delay > 0:
            await asyncio.sleep(delay)
