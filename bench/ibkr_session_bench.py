"""The IBKR session process: approve -> placeOrder on the wire, and IB's pacing under a burst.

Run from the repository root with the servers up: `make bench`, or
`python -m tradingplatform.devstack exec -- python -m bench.ibkr_session_bench` (about a minute).
It starts the loopback fake TWS (brokers/tests/fake_tws/, server version 178) in this process
and the session process (`manage.py ibkr_sessions --no-discovery`) as a subprocess on the
development Redis, under a key prefix of its own. Measured, in one run:

1. reference: a bare Redis round trip (PING), and an echo RPC over the same LPUSH / BRPOP pair
   of lists the session RPC uses (a thread answers), p50 / p99;
2. approve -> placeOrder on the wire through the warm session: `IBKRSessionBroker.place_order`
   called at t0, the fake TWS reading the placeOrder message at t1 (both `perf_counter` in this
   process); and the full call (until the acknowledged status is back);
3. the same for today's path before the session process: a fresh `IBKRBroker` per call
   (connect, startup sync, place, disconnect);
4. a burst of 100 client cycles at once on one account (positions, quotes of two options, fills):
   the most messages TWS read in any one second, from the account and from one client, and
   IB's error 100 count (the fake answers it like IB beyond 50).
Figures are recorded in bench/README.md under "IBKR session".
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")
os.environ["IBKR_SESSIONS_REDIS_PREFIX"] = f"bench:ibkr:{uuid.uuid4().hex[:8]}"
import django  # noqa: E402
import redis as redis_lib  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from bench.governor_bench import machine  # noqa: E402
from brokers.domain import BrokerError, Instrument, OrderLeg, OrderRequest  # noqa: E402
from brokers.ibkr import IBKRBroker  # noqa: E402
from brokers.ibkr.broker import IBKRConfig  # noqa: E402
from brokers.ibkr.session import protocol  # noqa: E402
from brokers.ibkr.session.proxy import IBKRSessionBroker, redis_client  # noqa: E402
from brokers.tests.fake_tws import FakeTWS, Rest  # noqa: E402

ORDERS = 200
ORDER_GAP_SECONDS = 0.04  # 25 orders a second: under IB's pacing, so the pacer never waits
FRESH_ORDERS = 30
CYCLES = 100
ES_FUT = 1001
OPTIONS = [(2001, 6000.0), (2002, 6100.0)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def line(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (f"{name:<46} {statistics.median(ms):8.2f} {percentile(ms, 0.99):8.2f} "
            f"{max(ms):8.2f}  {len(ms)}")


def option(con_id: int, strike: float) -> Instrument:
    return Instrument("ES", "FOP", date(2027, 12, 17), "CME", 50.0, strike=strike, right="C",
                      trading_class="ES", underlying_expiry=date(2027, 12, 17),
                      broker_ref=str(con_id))


def order(cid: str) -> OrderRequest:
    return OrderRequest(cid, (OrderLeg(option(*OPTIONS[0]), "BUY", 1),), "LMT", 100.5)


def start_fake() -> FakeTWS:
    fake = FakeTWS()
    fake.list_future(con_id=ES_FUT, symbol="ES", last_trade_date="20271217", exchange="CME",
                     multiplier=50)
    for con_id, strike in OPTIONS:
        fake.list_option(con_id=con_id, under_con_id=ES_FUT, last_trade_date="20271217",
                         strike=strike, right="C", trading_class="ES")
        fake.set_quote(con_id, bid=100.0, ask=101.0)
        fake.set_greeks(con_id, implied_vol=0.2, delta=0.5, gamma=0.001, vega=10.0, theta=-1.0,
                        option_price=100.5, underlying_price=6000.0)
    return fake.start()


def credentials(port: int) -> dict:
    return {"host": "127.0.0.1", "port": port, "client_id": 7, "underlying_instrument": "ES",
            "underlying_expiry": "202712", "connect_retries": 0, "connect_backoff_seconds": 0.05,
            "exchange_overrides": {}, "market_data_lines": 80, "market_data_fallback": "frozen"}


def redis_reference() -> tuple[list[float], list[float]]:
    redis = redis_client(settings.REDIS_URL)
    pings = []
    for _ in range(1000):
        t0 = time.perf_counter()
        redis.ping()
        pings.append(time.perf_counter() - t0)
    requests, replies = f"{protocol.prefix()}:echo:req", f"{protocol.prefix()}:echo:rep"
    stop = threading.Event()

    def echo() -> None:
        server = redis_lib.Redis.from_url(settings.REDIS_URL)  # a connection of its own
        while not stop.is_set():
            item = server.brpop([requests], timeout=1)
            if item is not None:
                server.lpush(replies, item[1])

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    rpcs = []
    for i in range(1000):
        t0 = time.perf_counter()
        redis.lpush(requests, str(i))
        redis.blpop([replies], timeout=5)
        rpcs.append(time.perf_counter() - t0)
    stop.set()
    thread.join(5)
    return pings, rpcs


def start_session_process() -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "manage.py", "ibkr_sessions", "--no-discovery"],
                               cwd=settings.BASE_DIR, env=dict(os.environ),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = redis_client(settings.REDIS_URL)
    deadline = time.monotonic() + 30
    while not redis.exists(protocol.alive_key()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the session process did not start")
        time.sleep(0.05)
    return process


def approve_to_wire(fake: FakeTWS, proxy: IBKRSessionBroker) -> tuple[list[float], list[float]]:
    to_wire, full = [], []
    for i in range(ORDERS):
        fake.script_next_order(Rest())
        t0 = time.perf_counter()
        proxy.place_order(order(f"bench-{i}"))
        t2 = time.perf_counter()
        to_wire.append(fake.arrival_times(3)[-1] - t0)
        full.append(t2 - t0)
        time.sleep(ORDER_GAP_SECONDS)
    return to_wire, full


def fresh_sessions(fake: FakeTWS) -> list[float]:
    to_wire = []
    for i in range(FRESH_ORDERS):
        fake.script_next_order(Rest())
        t0 = time.perf_counter()
        broker = IBKRBroker(IBKRConfig.from_credentials(credentials(fake.port), client_id=40))
        broker.connect()
        try:
            broker.place_order(order(f"fresh-{i}"))
        finally:
            broker.disconnect()
        to_wire.append(fake.arrival_times(3)[-1] - t0)
    return to_wire


def burst(fake: FakeTWS) -> dict:
    proxy = IBKRSessionBroker(credentials(fake.port), deadline_seconds=120)
    since = datetime.now(UTC) - timedelta(days=1)
    chain = [option(*o) for o in OPTIONS]
    failures: list[BrokerError] = []
    sent_before = fake.pacing_violations

    def cycle() -> None:
        try:
            proxy.positions()
            proxy.quotes(chain)
            proxy.fills_since(since)
        except BrokerError as e:
            failures.append(e)

    fake.reset_rate_counters()
    before = len(fake.arrival_times(1)) + len(fake.arrival_times(2))
    t0 = time.perf_counter()
    clients = [threading.Thread(target=cycle) for _ in range(CYCLES)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(300)
    seconds = time.perf_counter() - t0
    market_data = len(fake.arrival_times(1)) + len(fake.arrival_times(2)) - before
    codes = sorted({f"{e.operation}:{e.code}" for e in failures})
    return {"seconds": seconds, "failures": f"{len(failures)} {codes}", "market_data_messages": market_data,
            "max_account": fake.max_account_messages_per_second,
            "max_client": fake.max_messages_per_second,
            "errors_100": fake.pacing_violations - sent_before}


def main() -> None:
    fake = start_fake()
    process = start_session_process()
    try:
        pings, rpcs = redis_reference()
        proxy = IBKRSessionBroker(credentials(fake.port), deadline_seconds=15)
        if not proxy.health().connected:
            raise RuntimeError("the session did not connect to the fake TWS")
        proxy.place_order(order("warm-up"))
        to_wire, full = approve_to_wire(fake, proxy)
        fresh = fresh_sessions(fake)
        bursts = burst(fake)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        fake.close()
    print(f"IBKR session benchmark, {date.today().isoformat()}: {machine()}")
    print()
    print(f"{'measure (ms)':<46} {'p50':>8} {'p99':>8} {'max':>8}  n")
    print(line("reference: Redis PING", pings))
    print(line("reference: Redis echo RPC (LPUSH/BRPOP)", rpcs))
    print(line("approve -> placeOrder on the wire (session)", to_wire))
    print(line("approve -> acknowledged status (session)", full))
    print(line("approve -> placeOrder, fresh connection per call", fresh))
    print()
    p99 = percentile(to_wire, 0.99)
    print(f"session p99 to the wire = {p99 / percentile(rpcs, 0.99):.1f} x the echo RPC's p99; "
          f"fresh connection p50 = {statistics.median(fresh) / statistics.median(to_wire):.0f} x "
          f"the session's p50")
    print(f"burst of {CYCLES} client cycles on one account: {bursts['seconds']:.1f} s, "
          f"{bursts['market_data_messages']} market-data messages, most in any one second: "
          f"{bursts['max_account']} (account), {bursts['max_client']} (one client); "
          f"IB error 100: {bursts['errors_100']}; failed calls: {bursts['failures']}")


if __name__ == "__main__":
    main()
