"""The wire pacer's window arithmetic and the IB error table, without a network."""
from __future__ import annotations

import asyncio

from brokers.ibkr.errors import broker_error_from_ib
from brokers.ibkr.pacing import WirePacer


class _Conn:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def sendMsg(self, frame: bytes) -> None:  # noqa: N802 (ib_async's name)
        self.frames.append(frame)


class _Client:
    """Just the surface of ib_async's Client that the pacer uses."""

    MaxRequests = 45

    def __init__(self) -> None:
        self.conn = _Conn()
        self.connected = True

    def isConnected(self) -> bool:  # noqa: N802
        return self.connected

    def _prefix(self, msg: bytes) -> bytes:
        return msg


def test_pacer_holds_messages_beyond_the_window_and_sends_them_in_order() -> None:
    now = [100.0]

    async def scenario() -> list[bytes]:
        pacer = WirePacer(limit=3, window=1.25, clock=lambda: now[0])
        client = _Client()
        pacer.install(client)
        assert client.MaxRequests == 0  # ib_async's own throttle is off: one pacer decides
        for i in range(5):
            client.sendMsg(f"m{i}")
        assert [f.decode() for f in client.conn.frames] == ["m0", "m1", "m2"]
        assert pacer.queued == 2 and pacer.room() == 0
        now[0] += 1.24
        pacer.submit(None)
        assert len(client.conn.frames) == 3  # still inside the window
        now[0] += 0.01
        pacer.submit(None)
        return client.conn.frames

    frames = asyncio.run(scenario())
    assert [f.decode() for f in frames] == ["m0", "m1", "m2", "m3", "m4"]


def test_pacer_drops_queued_messages_when_the_connection_is_gone() -> None:
    async def scenario() -> tuple[int, int]:
        pacer = WirePacer(limit=1, window=10, clock=lambda: 0.0)
        client = _Client()
        pacer.install(client)
        client.sendMsg("first")
        client.sendMsg("queued")
        client.connected = False
        pacer.submit(None)
        return len(client.conn.frames), pacer.dropped_total

    assert asyncio.run(scenario()) == (1, 1)


def test_error_table_sets_retryable() -> None:
    assert broker_error_from_ib(operation="x", ib_code=201, ib_message="r").retryable is False
    assert broker_error_from_ib(operation="x", ib_code=1100, ib_message="l").retryable is True
    assert broker_error_from_ib(operation="x", ib_code=502, ib_message="c").code == "connect_failed"
    unknown = broker_error_from_ib(operation="x", ib_code=9999, ib_message="?")
    assert (unknown.code, unknown.retryable, unknown.context) == ("ib_9999", False,
                                                                    {"ib_code": 9999})
