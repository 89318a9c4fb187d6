"""The IBKR session process: one live session per account, served over Redis, through the real
ib_async client against the loopback fake TWS. The server runs in a thread here, and as a real
process (killed and restarted) in the last tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings

from brokers.domain import BrokerError, Instrument, OrderLeg, OrderRequest
from brokers.ibkr import IBKRBroker, IBKRConfig
from brokers.ibkr.session import codec, protocol
from brokers.ibkr.session.proxy import IBKRSessionBroker, redis_client
from brokers.ibkr.session.server import SessionServer
from brokers.tests.fake_tws import FakeTWS, Rest

ES_FUT, ES_C6000 = 1001, 2001
CALL = Instrument("ES", "FOP", date(2027, 12, 17), "CME", 50.0, strike=6000.0, right="C",
                  trading_class="ES", underlying_expiry=date(2027, 12, 17), broker_ref=str(ES_C6000))


def eventually(check: Callable[[], bool], what: str, guard: float = 30.0) -> None:
    deadline = time.monotonic() + guard  # a failure guard, not a measure
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def buy(cid: str, price: float = 100.5) -> OrderRequest:
    return OrderRequest(cid, (OrderLeg(CALL, "BUY", 1),), "LMT", price)


def credentials(port: int, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "client_id": 7, "underlying_instrument": "ES",
            "underlying_expiry": "202712", "connect_retries": 0, "connect_backoff_seconds": 0.05,
            "exchange_overrides": {}, "market_data_lines": 80, "market_data_fallback": "frozen",
            **extra}


@pytest.fixture
def fake() -> Iterator[FakeTWS]:
    tws = FakeTWS()
    tws.list_future(con_id=ES_FUT, symbol="ES", last_trade_date="20271217", exchange="CME",
                    multiplier=50)
    tws.list_option(con_id=ES_C6000, under_con_id=ES_FUT, last_trade_date="20271217",
                    strike=6000, right="C", trading_class="ES")
    tws.start()
    yield tws
    tws.close()


@pytest.fixture
def prefix(settings) -> str:
    settings.IBKR_SESSIONS_REDIS_PREFIX = f"test:ibkr:{uuid.uuid4().hex[:10]}"
    return settings.IBKR_SESSIONS_REDIS_PREFIX


@pytest.fixture
def server(prefix: str) -> Iterator[SessionServer]:
    redis = redis_client(django_settings.REDIS_URL)
    served = SessionServer(redis, keepalive_seconds=0.5)
    thread = threading.Thread(target=served.run, name="ibkr-sessions-test", daemon=True)
    thread.start()
    eventually(lambda: bool(redis.exists(protocol.alive_key())), "the session server did not start")
    yield served
    served.stopping.set()
    thread.join(30)


def proxy_for(port: int, deadline: float = 10.0, **extra: Any) -> IBKRSessionBroker:
    return IBKRSessionBroker(credentials(port, **extra), deadline_seconds=deadline)


def phase(proxy: IBKRSessionBroker) -> str | None:
    state = proxy.session_state()
    return state["phase"] if state else None


# ---------------------------------------------------------------- one session per account

def test_every_call_of_an_account_uses_one_live_session(fake: FakeTWS, server: SessionServer) -> None:
    proxy = proxy_for(fake.port)
    assert proxy.health().connected
    fake.script_next_order(Rest())
    assert proxy.place_order(buy("one-session")).state == "submitted"
    assert proxy.positions() == []
    assert proxy.order_status("one-session").state == "submitted"  # type: ignore[union-attr]
    assert proxy_for(fake.port).health().connected  # another caller, the same session
    assert len(fake.messages(71)) == 1  # one handshake for every call
    assert fake.connected_clients == 1


def test_two_accounts_on_one_gateway_get_their_own_client_ids(fake: FakeTWS,
                                                              server: SessionServer) -> None:
    first, second = proxy_for(fake.port), proxy_for(fake.port, account="DU1234567")
    assert first.health().connected and second.health().connected
    eventually(lambda: phase(first) == phase(second) == "connected", "states not published")
    assert {first.session_state()["client_id"], second.session_state()["client_id"]} == {7, 8}  # type: ignore[index]
    assert sorted(int(m[2]) for m in fake.messages(71)) == [7, 8]  # never a 326 round
    assert fake.connected_clients == 2


# ---------------------------------------------------------------- exactly once

def test_an_order_asked_for_many_times_at_once_is_placed_once(fake: FakeTWS,
                                                             server: SessionServer) -> None:
    proxy = proxy_for(fake.port)
    assert proxy.health().connected
    fake.script_next_order(Rest())
    results: list[object] = []

    def place() -> None:
        try:
            results.append(proxy.place_order(buy("approve-once")).broker_order_id)
        except BrokerError as e:
            results.append(e)

    callers = [threading.Thread(target=place) for _ in range(6)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert len(results) == 6 and len(set(results)) == 1  # one order id for every caller
    assert len(fake.messages(3)) == 1


def test_a_restart_across_the_trading_day_keeps_the_order_and_its_fill(
        fake: FakeTWS, server: SessionServer) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    proxy = proxy_for(fake.port)
    assert proxy.health().connected
    fake.script_next_order(Rest())
    proxy.place_order(buy("overnight", price=99.0))
    fake.fill_resting_order("overnight", 98.75)
    eventually(lambda: len(proxy.fills_since(since)) == 1, "the fill event was not journaled")
    fake.new_trading_day()  # TWS restarts and forgets yesterday's completed orders and fills
    yesterday = IBKRBroker(IBKRConfig(host="127.0.0.1", port=fake.port, client_id=30,
                                      underlying_instrument="ES", underlying_expiry="202712",
                                      connect_retries=0))
    yesterday.connect()
    try:
        assert yesterday.order_status("overnight") is None  # what a fresh session would conclude
    finally:
        yesterday.disconnect()
    eventually(lambda: phase(proxy) == "connected" and proxy.health().connected,
               "the session did not reconnect after the restart")
    status = proxy.order_status("overnight")
    assert status is not None and (status.state, status.filled_quantity) == ("filled", 1)
    (fill,) = proxy.fills_since(since)
    assert (fill.client_order_id, fill.price, fill.quantity) == ("overnight", 98.75, 1)
    assert proxy.place_order(buy("overnight", price=99.0)).state == "filled"
    assert len(fake.messages(3)) == 1  # never sent again


# ---------------------------------------------------------------- IB's states, shown

def test_a_gateway_down_for_its_weekly_restart_shows_and_nothing_is_sent(
        fake: FakeTWS, server: SessionServer) -> None:
    proxy = proxy_for(fake.port)
    assert proxy.health().connected
    fake.stop()
    eventually(lambda: phase(proxy) == "gateway_down", "gateway down not shown")
    health = proxy.health()
    assert not health.connected and "does not answer" in health.detail
    with pytest.raises(BrokerError) as e:
        proxy.place_order(buy("while-down"))
    assert (e.value.code, e.value.retryable) == ("gateway_down", True)
    fake.start()
    eventually(lambda: phase(proxy) == "connected", "the session did not come back")
    assert proxy.place_order(buy("after-relogin")).state == "filled"
    assert [o.order_ref for o in fake.orders] == ["after-relogin"]


def test_a_link_lost_mid_session_holds_orders_and_shows_in_status(
        fake: FakeTWS, server: SessionServer) -> None:
    proxy = proxy_for(fake.port)
    assert proxy.health().connected
    fake.set_link(up=False)
    eventually(lambda: phase(proxy) == "link_down", "1100 not shown")
    assert proxy.session_state()["link"]["link_down"]["code"] == 1100  # type: ignore[index]
    with pytest.raises(BrokerError) as e:
        proxy.place_order(buy("no-link"))
    assert (e.value.code, e.value.retryable) == ("connectivity_lost", True)
    fake.set_link(up=True)
    eventually(lambda: phase(proxy) == "connected", "1102 not shown")
    assert proxy.place_order(buy("link-back")).state == "filled"
    assert [o.order_ref for o in fake.orders] == ["link-back"]


def test_a_competing_session_shows_in_status(fake: FakeTWS, server: SessionServer) -> None:
    proxy = proxy_for(fake.port)
    assert proxy.health().connected
    fake.send_error(10197, "No market data during competing live session")
    eventually(lambda: (proxy.session_state() or {}).get("model_valuation") is True,
               "10197 not shown")
    assert "10197" in proxy.health().detail


def test_a_gateway_that_hangs_after_the_handshake_shows_as_unresponsive(
        fake: FakeTWS, server: SessionServer) -> None:
    proxy = proxy_for(fake.port)
    assert proxy.health().connected
    fake.frozen = True
    eventually(lambda: phase(proxy) == "unresponsive", "a frozen TWS still looked connected")
    health = proxy.health()  # answered from the session's state, not by asking the frozen TWS
    assert not health.connected and "did not answer a keepalive" in health.detail
    fake.frozen = False
    eventually(lambda: phase(proxy) == "connected", "the session did not see TWS answer again")


def test_a_hung_gateway_answers_every_caller_within_its_deadline(fake: FakeTWS,
                                                                  server: SessionServer) -> None:
    fake.hang_handshake = True
    proxy = proxy_for(fake.port, deadline=2.0)
    for _ in range(3):  # each call ends, none waits on the handshake
        with pytest.raises(BrokerError) as e:
            proxy.positions()
        assert e.value.retryable and e.value.code in ("not_connected", "gateway_down",
                                                      "deadline_exceeded")
    assert not proxy.health().connected


def test_without_the_session_process_calls_fail_at_once_and_retryable(prefix: str) -> None:
    proxy = proxy_for(1)
    with pytest.raises(BrokerError) as e:
        proxy.connect()
    assert (e.value.code, e.value.retryable) == ("session_process_down", True)


# ---------------------------------------------------------------- the process

def _start_process(prefix: str) -> subprocess.Popen:
    from tradingplatform.tests.servers import subprocess_env_for_tests

    env = dict(os.environ, **subprocess_env_for_tests(), IBKR_SESSIONS_REDIS_PREFIX=prefix)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ibkr_sessions", "--no-discovery"], cwd=django_settings.BASE_DIR,
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = redis_client(django_settings.REDIS_URL)
    eventually(lambda: process.poll() is None and bool(redis.exists(protocol.alive_key())),
               "the session process did not start")
    return process


def test_the_session_process_killed_and_restarted_sends_nothing_twice_and_loses_no_fill(
        fake: FakeTWS, prefix: str) -> None:
    redis = redis_client(django_settings.REDIS_URL)
    since = datetime.now(UTC) - timedelta(minutes=1)
    proxy = proxy_for(fake.port)
    first = _start_process(prefix)
    try:
        fake.script_next_order(Rest())
        assert proxy.place_order(buy("survives")).state == "submitted"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    eventually(lambda: fake.connected_clients == 0, "the killed process's socket stayed open")
    fake.fill_resting_order("survives", 99.5)  # filled while no session listens
    eventually(lambda: not redis.exists(protocol.alive_key()), "the dead process still looks alive")
    # a caller that gave up while the process was down: its request must never run
    stale = {"id": "stale", "key": protocol.session_key(credentials(fake.port)),
             "credentials": credentials(fake.port), "method": "place_order",
             "args": codec.encode({"order": buy("given-up")}), "deadline": time.time() + 0.2}
    redis.lpush(protocol.requests_key(), json.dumps(stale))
    time.sleep(0.5)
    second = _start_process(prefix)
    try:
        status = proxy.place_order(buy("survives"))  # the platform retries the unknown outcome
        assert (status.state, status.filled_quantity) == ("filled", 1)
        (fill,) = proxy.fills_since(since)
        assert (fill.client_order_id, fill.price) == ("survives", 99.5)
        eventually(lambda: redis.llen(protocol.requests_key()) == 0, "requests not drained")
        assert [o.order_ref for o in fake.orders] == ["survives"]
        assert len(fake.messages(3)) == 1
        assert not redis.exists(protocol.reply_key("stale"))
        assert _check(prefix) == 0  # the container health check
    finally:
        second.terminate()
        assert second.wait(30) == 0  # a clean stop on SIGTERM
    assert _check(prefix) == 1


def _check(prefix: str) -> int:
    from tradingplatform.tests.servers import subprocess_env_for_tests

    env = dict(os.environ, **subprocess_env_for_tests(), IBKR_SESSIONS_REDIS_PREFIX=prefix)
    return subprocess.run([sys.executable, "manage.py", "ibkr_sessions", "--check"],
                          cwd=django_settings.BASE_DIR, env=env, capture_output=True, timeout=60).returncode


def test_stored_credentials_get_a_live_session_before_any_call(
        alpha: Any, fake: FakeTWS, prefix: str, settings: Any) -> None:
    from django_tenants.utils import tenant_context

    from brokers.management.commands.ibkr_sessions import stored_ibkr_credentials
    from brokers.models import BrokerConnection

    settings.USE_MOCK_BROKER = False
    with tenant_context(alpha.client):
        BrokerConnection.objects.update_or_create(
            singleton=True, defaults={"broker": "ibkr", "credentials": json.dumps(credentials(fake.port))})
    found = [c for c in stored_ibkr_credentials() if c["port"] == fake.port]
    assert len(found) == 1
    served = SessionServer(redis_client(django_settings.REDIS_URL), discover=lambda: found, scan_seconds=60)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    try:
        eventually(lambda: fake.connected_clients == 1, "no session was started for the stored account")
        assert phase(proxy_for(fake.port)) in ("connecting", "connected")
    finally:
        served.stopping.set()
        thread.join(30)
    settings.USE_MOCK_BROKER = True
    assert stored_ibkr_credentials() == []  # the simulator serves everyone: no IB session


# ---------------------------------------------------------------- through the platform's API

def _connect_ibkr(api: Any, alpha: Any, port: int) -> Any:
    from tradingplatform.testing import ibkr_connect

    return ibkr_connect(api, alpha, port=port)


def test_connect_broker_and_the_agent_status_show_the_live_session(
        api: Any, alpha: Any, fake: FakeTWS, server: SessionServer, settings: Any) -> None:
    from tradingplatform.testing import bearer

    settings.USE_MOCK_BROKER, settings.IBKR_SESSION_PROCESS = False, True
    response = _connect_ibkr(api, alpha, fake.port)
    assert response.status_code == 200 and response.json()["connected"] is True, response.content

    def session() -> dict[str, Any]:
        status = api.get(f"/clients/{alpha.client_id}/agent/status", **bearer(alpha.viewer))
        assert status.status_code == 200, status.content
        return status.json()["broker"]["session"]

    eventually(lambda: session()["phase"] == "connected", "the session state is not in status")
    fake.send_error(2103, "Market data farm connection is broken:usfarm")
    fake.send_error(10197, "No market data during competing live session")
    eventually(lambda: session()["model_valuation"] is True, "10197 not in status")
    link = session()["link"]
    assert link["competing_session"]["code"] == 10197 and "usfarm" in link["farms_down"]
    fake.set_link(up=False)
    eventually(lambda: session()["phase"] == "link_down", "1100 not in status")


def test_a_hung_gateway_answers_positions_at_once_and_never_holds_the_client(
        api: Any, alpha: Any, fake: FakeTWS, server: SessionServer, settings: Any) -> None:
    from tradingplatform.testing import bearer

    settings.USE_MOCK_BROKER, settings.IBKR_SESSION_PROCESS = False, True
    settings.IBKR_CALL_DEADLINE_SECONDS = 2.0
    fake.hang_handshake = True  # accepts TCP, never completes the handshake
    assert _connect_ibkr(api, alpha, fake.port).json()["connected"] is False
    for _ in range(3):  # the lock was released each time: every request gets its answer
        response = api.get(f"/clients/{alpha.client_id}/positions", **bearer(alpha.viewer))
        assert response.status_code == 503, response.content
        detail = response.json()["detail"]
        assert detail["retryable"] is True and detail["code"] in ("not_connected", "gateway_down")


def test_a_session_no_client_stores_any_more_is_let_go_once_idle(fake: FakeTWS, prefix: str) -> None:
    stored = [credentials(fake.port)]
    served = SessionServer(redis_client(django_settings.REDIS_URL), discover=lambda: list(stored),
                           scan_seconds=0.2)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    try:
        eventually(lambda: fake.connected_clients == 1, "no session for the stored account")
        stored.clear()  # the client switched to another broker
        eventually(lambda: fake.connected_clients == 0, "the session was kept")
        # its state is withdrawn too (just after the socket closes: polled, not raced)
        eventually(lambda: phase(proxy_for(fake.port)) is None, "the session's state was kept")
    finally:
        served.stopping.set()
        thread.join(30)


def test_the_order_row_keeps_the_perm_id(alpha: Any) -> None:
    from django_tenants.utils import tenant_context

    from brokers.domain import OrderStatus
    from brokers.services import order_record, order_status_apply

    with tenant_context(alpha.client):
        row = order_record(order=buy("perm-1"), broker="ibkr")
        order_status_apply(row=row, status=OrderStatus("perm-1", "17", "submitted", broker_perm_id="900000017"))
        row.refresh_from_db()
        assert (row.broker_order_id, row.broker_perm_id) == ("17", "900000017")
        # a later status without it (a journal entry, another adapter) keeps what is known
        order_status_apply(row=row, status=OrderStatus("perm-1", "17", "filled", filled_quantity=1))
        row.refresh_from_db()
        assert row.broker_perm_id == "900000017"
