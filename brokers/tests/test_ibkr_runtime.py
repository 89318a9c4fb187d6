"""The pacing token bucket and the IB error table, without a network."""
from __future__ import annotations

from brokers.ibkr.errors import broker_error_from_ib
from brokers.ibkr.runtime import TokenBucket


def test_token_bucket_allows_a_burst_then_paces() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=45, capacity=45, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(45)] == [0.0] * 45
    assert bucket.reserve() == 1 / 45
    now[0] += 1.0  # a second later the bucket has refilled
    assert bucket.reserve(10) == 0.0


def test_error_table_sets_retryable() -> None:
    assert broker_error_from_ib(operation="x", ib_code=201, ib_message="r").retryable is False
    assert broker_error_from_ib(operation="x", ib_code=1100, ib_message="l").retryable is True
    assert broker_error_from_ib(operation="x", ib_code=502, ib_message="c").code == "connect_failed"
    unknown = broker_error_from_ib(operation="x", ib_code=9999, ib_message="?")
    assert (unknown.code, unknown.retryable, unknown.context) == ("ib_9999", False,
                                                                    {"ib_code": 9999})
