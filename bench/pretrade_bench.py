"""The full pre-trade path: the client's risk lock, the governor, the recorded decision, the audit
write (hash chain included) and the order row — everything `order_submit` does before it calls the
broker — on real PostgreSQL, at books of 10 and 200 legs.

Run from the repository root with the database up: `make bench` (it starts the embedded servers
unless DATABASE_URL / REDIS_URL are set), or
`python -m tradingplatform.devstack exec -- python -m bench.pretrade_bench`.
It uses a client `bench` in the development database (created once) and leaves its audit rows:
the audit trail is append-only. Figures are recorded in bench/README.md under "Pre-trade path".
"""
from __future__ import annotations

import os
import secrets
from datetime import date
from itertools import count

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")
import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django_tenants.utils import tenant_context  # noqa: E402

from agents.models import AgentConfig  # noqa: E402
from bench.governor_bench import machine, report, time_calls  # noqa: E402
from brokers.domain import BrokerHealth, OrderLeg, OrderRequest, Position  # noqa: E402
from brokers.services import BookSnapshot  # noqa: E402
from brokers.simulator import SimClock, SimConfig, SimulatedMarket  # noqa: E402
from risk.book import value_book  # noqa: E402
from risk.models import RiskDecisionRecord  # noqa: E402
from risk.selectors import delta_models_get  # noqa: E402
from risk.services import Actor, client_risk_lock, pretrade_decide  # noqa: E402
from tenants.models import Client  # noqa: E402
from tenants.services import client_onboard  # noqa: E402

BENCH_LIMITS = {
    # Wide enough that every decision is accepted: the accepted path does the most writing.
    "max_net_delta": 1e9, "max_order_contracts": 1000, "max_leg_contracts": 1000, "max_open_legs": 10_000,
    "max_daily_loss": "1000000000", "max_quote_age_seconds": 3600.0, "max_orders_per_minute": 1000,
    "duplicate_window_seconds": 0.0, "max_spread_pct": 10.0,
}


def bench_client() -> Client:
    client = Client.objects.filter(client_id="bench").first()
    if client is None:
        client = client_onboard(client_id="bench", name="Benchmark", owner_username=f"bench-{secrets.token_hex(4)}",
                                owner_password=secrets.token_urlsafe(16), owner_email="bench@example.invalid",
                                actor="bench")
    return client


def snapshot_of(legs: int, market: SimulatedMarket) -> tuple[BookSnapshot, OrderRequest]:
    future = market.listed_futures("ES")[0]
    chain = sorted(market.option_chain(future), key=lambda option: (option.expiry, option.strike, option.right))
    instruments = [future, *chain[: legs - 1]]
    quotes = {quote.instrument.key: quote for quote in market.quotes(instruments)}
    positions = [Position(instrument, quantity=(i % 5) - 2 or 1, average_price=quotes[instrument.key].mid)
                 for i, instrument in enumerate(instruments)]
    valuation = value_book(positions, quotes, now=market.clock.now(), rate=0.04)
    # The delta models as a sync reads them (once, with the book: risk.services.book_sync).
    snapshot = BookSnapshot(valuation=valuation, quotes=quotes, health=BrokerHealth("mock", True), new_fills=[],
                            delta_models=delta_models_get())
    order_legs = (OrderLeg(chain[0], "BUY", 1), OrderLeg(future, "SELL", 1))
    return snapshot, OrderRequest(client_order_id="", legs=order_legs, order_type="MKT")


def scenario(client: Client, legs: int, market: SimulatedMarket):
    snapshot, template = snapshot_of(legs, market)
    numbers = count()
    actor = Actor("system", "bench")

    def decide() -> None:
        order = OrderRequest(client_order_id=f"bench-{legs}-{secrets.token_hex(6)}-{next(numbers)}",
                             legs=template.legs, order_type=template.order_type)
        with client_risk_lock(client):
            decision, row = pretrade_decide(client=client, order=order, snapshot=snapshot, quotes=snapshot.quotes,
                                            actor=actor, purpose="bench", broker_name="mock")
        if not decision.accepted:
            raise RuntimeError(f"the benchmark expects accepted decisions: {decision.as_dict()['violations']}")

    def forget_recent_decisions() -> None:
        # Keeps the order-rate window as small as in real use (the rate limit bounds it there).
        RiskDecisionRecord.objects.all().delete()

    return decide, forget_recent_decisions


def select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def main() -> None:
    call_command("migrate_platform", verbosity=0)
    client = bench_client()
    market = SimulatedMarket(SimConfig(seed=1), clock=SimClock.wall())
    timings = []
    with tenant_context(client):
        AgentConfig.objects.update_or_create(singleton=True, defaults={"parameters": {"risk_limits": BENCH_LIMITS}})
        # The reference, measured in the same run on the same connection: one database round trip.
        reference = time_calls("reference: SELECT 1 round trip", select_one, calls=2_000, warmup=200)
        timings.append(reference)
        for legs in (10, 200):
            decide, between = scenario(client, legs, market)
            timings.append(time_calls(f"pre-trade path, {legs}-leg book, 2-leg order", decide,
                                      calls=2_000, warmup=200, between=between))
    print(f"pre-trade path benchmark, {date.today().isoformat()}, {machine()}")
    print()
    print(report(timings))
    print()
    for timing in timings[1:]:
        p50, p99 = timing.p50_us / reference.p50_us, timing.p99_us / reference.p99_us
        print(f"{timing.name}: p50 {p50:.1f}x, p99 {p99:.1f}x the SELECT 1 round trip")


if __name__ == "__main__":
    main()
