"""The IBKR session process while Redis, through which it is reached, stops and comes back: the
real process (`manage.py ibkr_sessions`), a Redis server of the test's own that it stops and starts
again (tradingplatform.tests.faults), and the loopback fake TWS.

A call made while Redis is down fails at once as that outage (the API: 503 `dependency: redis`)
and sends nothing to TWS; the process keeps running, keeps its IB session connected and serves
again once Redis is back, without a restart; an order whose reply Redis lost is placed once, and
the caller's retry under its client order id finds it.
"""
from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.conf import settings as django_settings

from brokers.domain import BrokerError, OrderStatus
from brokers.ibkr.session import protocol
from brokers.ibkr.session.proxy import IBKRSessionBroker, redis_client
from brokers.tests import test_ibkr_session as session_tests
from brokers.tests.fake_tws import FakeTWS, Held
from brokers.tests.test_ibkr_session import (
    _connect_ibkr,
    _start_process,
    buy,
    credentials,
    eventually,
    proxy_for,
)
from tradingplatform.tests.faults import DedicatedRedis, dedicated_redis

fake, prefix = session_tests.fake, session_tests.prefix  # the session tests' fixtures

KEEPALIVE = 49  # reqCurrentTime: the session's keepalive, the one message sent on its own
DEADLINE = 20.0  # the callers' call deadline: an outage must fail a call well within it
AT_ONCE = DEADLINE / 4  # a generous bound for "at once", far under the deadline


@pytest.fixture
def redis_server(settings: Any) -> Iterator[DedicatedRedis]:
    """A Redis of this test's own, used by the session process and by every proxy (REDIS_URL)."""
    with dedicated_redis() as server:
        settings.REDIS_URL = server.url
        yield server


@pytest.fixture
def process(fake: FakeTWS, prefix: str, redis_server: DedicatedRedis) -> Iterator[Any]:
    started = _start_process(prefix)
    yield started
    if started.poll() is None:
        started.send_signal(signal.SIGTERM)
        started.wait(30)


def sent_to_tws(fake: FakeTWS) -> list[int]:
    return [m for m in fake.message_ids() if m != KEEPALIVE]


def answers_again(proxy: IBKRSessionBroker) -> bool:
    try:
        return proxy.health().connected
    except BrokerError as e:
        assert e.code == "session_process_unreachable", e  # only Redis is in the way
        return False


def test_redis_down_fails_calls_at_once_and_the_session_serves_again_when_it_is_back(
        fake: FakeTWS, redis_server: DedicatedRedis, process: Any) -> None:
    proxy = proxy_for(fake.port, deadline=DEADLINE)
    assert proxy.health().connected
    assert proxy.positions() == []
    before = sent_to_tws(fake)
    redis_server.stop()
    for call in (proxy.positions, proxy.health, lambda: proxy.place_order(buy("while-redis-down"))):
        started = time.monotonic()
        with pytest.raises(BrokerError) as e:
            call()
        assert time.monotonic() - started < AT_ONCE  # not a wait until the deadline
        assert (e.value.code, e.value.retryable, e.value.context) == (
            "session_process_unreachable", True, {"dependency": "redis", "sent": False})
    with pytest.raises(subprocess.TimeoutExpired):  # a bound, left early if it exits
        process.wait(timeout=2.0)  # the process waits for Redis, it does not exit
    assert fake.connected_clients == 1  # and its IB session stays connected
    back = datetime.now(UTC)
    redis_server.start()
    eventually(lambda: answers_again(proxy), "the session process did not serve again")
    assert process.poll() is None  # served again by the same process, not a restart
    assert sent_to_tws(fake) == before  # nothing of the failed calls reached TWS
    assert len(fake.messages(71)) == 1  # one handshake: the IB session lived through it
    assert fake.connected_clients == 1

    def published_since_back() -> dict[str, Any] | None:  # Redis's snapshot kept the last one
        state = proxy.session_state()
        return state if state and datetime.fromisoformat(state["updated_at"]) >= back else None

    eventually(lambda: published_since_back() is not None, "the session's state was not published again")
    state = published_since_back()
    assert state is not None and state["phase"] == "connected" and state["detail"] == "connected"
    assert state["link"]["link_down"] is None and state["last_error"] is None
    assert proxy.positions() == []
    assert fake.orders == []


def test_an_order_whose_reply_redis_lost_is_placed_once_and_found_by_the_retry(
        fake: FakeTWS, redis_server: DedicatedRedis, process: Any, prefix: str) -> None:
    proxy = proxy_for(fake.port, deadline=DEADLINE)
    assert proxy.health().connected
    fake.script_next_order(Held())  # TWS takes the order and answers only once Redis is gone
    outcome: list[OrderStatus | BrokerError | float] = []

    def place() -> None:
        started = time.monotonic()
        try:
            outcome.append(proxy.place_order(buy("reply-lost")))
        except BrokerError as e:
            outcome.append(e)
        outcome.append(time.monotonic() - started)

    caller = threading.Thread(target=place)
    caller.start()
    eventually(lambda: len(fake.messages(3)) == 1, "the order did not reach TWS")
    redis_server.stop()  # the session process has the request; its reply cannot travel
    caller.join(DEADLINE + 10)
    error, waited = outcome
    assert isinstance(error, BrokerError) and waited < AT_ONCE
    assert (error.code, error.retryable, error.context["sent"]) == ("session_process_unreachable",
                                                                    True, True)
    fake.release_held_orders()  # TWS acknowledges while Redis is down: the journal cannot take it
    redis_server.start()
    eventually(lambda: answers_again(proxy), "the session process did not serve again")
    # what the journal could not take during the outage is written once Redis is back, before any
    # call asks (it keeps the order findable after TWS's daily restart)
    orders, _ = protocol.journal_keys(protocol.session_key(credentials(fake.port)))
    redis = redis_client(django_settings.REDIS_URL)
    eventually(lambda: redis.hget(orders, "reply-lost") is not None, "the journal entry was lost")
    status = proxy.place_order(buy("reply-lost"))  # the platform's retry, same client order id
    assert (status.client_order_id, status.state) == ("reply-lost", "submitted")
    assert proxy.order_status("reply-lost") == status
    assert len(fake.messages(3)) == 1  # placed once
    assert [o.order_ref for o in fake.orders] == ["reply-lost"]
    assert process.poll() is None and len(fake.messages(71)) == 1


def test_an_api_read_while_redis_is_down_answers_503_naming_redis(
        api: Any, alpha: Any, fake: FakeTWS, redis_server: DedicatedRedis, process: Any,
        settings: Any) -> None:
    from tradingplatform.testing import bearer

    settings.USE_MOCK_BROKER, settings.IBKR_SESSION_PROCESS = False, True
    settings.IBKR_CALL_DEADLINE_SECONDS = DEADLINE
    response = _connect_ibkr(api, alpha, fake.port)
    assert response.status_code == 200 and response.json()["connected"] is True, response.content
    assert api.get(f"/clients/{alpha.client_id}/positions", **bearer(alpha.viewer)).status_code == 200
    before = sent_to_tws(fake)
    redis_server.stop()
    for _ in range(2):  # the client's lock is released each time
        started = time.monotonic()
        response = api.get(f"/clients/{alpha.client_id}/positions", **bearer(alpha.viewer))
        assert time.monotonic() - started < AT_ONCE
        assert response.status_code == 503, response.content
        assert response.json()["dependency"] == "redis" and response["Retry-After"]
    assert sent_to_tws(fake) == before
    redis_server.start()
    eventually(lambda: answers_again(proxy_for(fake.port)), "the session process did not serve again")
    response = api.get(f"/clients/{alpha.client_id}/positions", **bearer(alpha.viewer))
    assert response.status_code == 200, response.content
