"""Server time of the trader's book page (`GET /desk/{id}/`) with a 50-leg book and a full
trading day of history, against a bare endpoint (`GET /health`) measured in the same run.

Run from the repository root with the servers up: `make bench`, or
`python -m tradingplatform.devstack exec -- python -m bench.desk_book_bench` (about a minute).
In-process through Django's test client (the whole request: middleware, session, tenant
resolution, the selectors, quotes from the simulated market for every leg, the valuation, the
risk graph's scenarios, the day's chart, the template), on the development database. The client
`bench-desk` holds an ES future and 49 ES options (stored positions, as a sync leaves them) and a
point a minute since the trading day began. Figures are recorded in bench/README.md under
"Desk".
"""
from __future__ import annotations

import os
import secrets
import time
from datetime import date, timedelta
from decimal import Decimal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")
import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client as Browser  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_tenants.utils import tenant_context  # noqa: E402

from bench.governor_bench import machine  # noqa: E402
from bench.stream_latency_bench import timing  # noqa: E402
from brokers.domain import Position  # noqa: E402
from brokers.services import broker_session, positions_sync  # noqa: E402
from risk.models import BookHistoryPoint  # noqa: E402
from risk.selectors import trading_day_start_get  # noqa: E402
from tenants.models import Client, Membership  # noqa: E402
from tenants.services import client_onboard  # noqa: E402

CLIENT_ID = "bench-desk"
LEGS = 50
REQUESTS = 200
WARMUP = 20


def desk_client() -> tuple[Client, object]:
    """The bench client (made once), its book of LEGS legs and today's history (made each run)."""
    client = Client.objects.filter(client_id=CLIENT_ID).first()
    if client is None:
        client = client_onboard(client_id=CLIENT_ID, name="Desk benchmark",
                                owner_username=f"bench-desk-{secrets.token_hex(4)}",
                                owner_password=secrets.token_urlsafe(16), owner_email="bench@example.invalid",
                                actor="bench")
    owner = Membership.objects.select_related("user").get(client=client, role=Membership.Role.OWNER).user
    now = timezone.now()
    with tenant_context(client):
        with broker_session() as broker:
            future = broker.listed_futures("ES")[0]
            chain = sorted(broker.option_chain(future), key=lambda o: (abs(o.strike - broker.quote(future).mid)))
            instruments = [future, *chain[: LEGS - 1]]
            positions = [Position(instrument, quantity=(i % 5) - 2 or 1, average_price=10.0)
                         for i, instrument in enumerate(instruments)]
        positions_sync(positions=positions, now=now)
        BookHistoryPoint.objects.all().delete()
        start = trading_day_start_get(now)
        minutes = int((now - start).total_seconds() // 60)
        rows = []
        for minute in range(minutes):
            at = start + timedelta(minutes=minute)
            for underlying in ("ES", BookHistoryPoint.BOOK):
                rows.append(BookHistoryPoint(at=at, underlying=underlying, net_delta=(minute % 40) / 4 - 5,
                                             net_gamma=0.01, net_vega=100.0, net_theta=-50.0,
                                             unrealized_pnl=Decimal(minute % 300), open_legs=LEGS,
                                             daily_pnl=Decimal(minute % 300 - 150) if not underlying else None))
        BookHistoryPoint.objects.bulk_create(rows, batch_size=2000)
    return client, owner


def measure(browser: Browser, path: str, count: int) -> list[int]:
    samples = []
    for index in range(WARMUP + count):
        started = time.perf_counter_ns()
        response = browser.get(path)
        elapsed = time.perf_counter_ns() - started
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}")
        if index >= WARMUP:
            samples.append(elapsed)
    return samples


def main() -> None:
    call_command("migrate_platform", verbosity=0)
    client, owner = desk_client()
    browser = Browser(HTTP_HOST="localhost")
    browser.force_login(owner)
    page = f"/desk/{client.client_id}/"
    body = browser.get(page).content.decode()
    if body.count('<tr>\n      <th scope="row" data-label="Instrument">') != LEGS or "book-history" not in body:
        raise RuntimeError("the book page does not show the bench book and its chart")
    # Interleaved rounds, so that both see the same machine load.
    book, health = [], []
    for _ in range(4):
        health += measure(browser, "/health", REQUESTS // 4)
        book += measure(browser, page, REQUESTS // 4)
    page_t, health_t = timing("book page, 50 legs + the day's chart", book), timing("/health (reference)", health)
    print(f"desk book page benchmark, {date.today().isoformat()}, {machine()}")
    print()
    print(f"{'request':<40}  {'p50 ms':>8}  {'p99 ms':>8}  {'mean ms':>8}  calls")
    for t in (page_t, health_t):
        print(f"{t.name:<40}  {t.p50_us / 1e3:8.2f}  {t.p99_us / 1e3:8.2f}  {t.mean_us / 1e3:8.2f}  {t.calls}")
    print(f"book page / health: p50 {page_t.p50_us / health_t.p50_us:.0f}x, p99 {page_t.p99_us / health_t.p99_us:.0f}x")


if __name__ == "__main__":
    main()
