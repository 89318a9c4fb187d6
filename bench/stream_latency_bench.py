"""Tick-to-websocket latency of a `greeks` event: from the `publish_event` call to the frame read
off a websocket served by a real daphne process.

Run from the repository root with the servers up: `make bench`, or
`python -m tradingplatform.devstack exec -- python -m bench.stream_latency_bench` (about 10 s).
It starts daphne on a free loopback port against the development database and Redis, connects
to `/clients/bench/stream` as the owner of the `bench` client (bench/pretrade_bench.py's), and
publishes one event at a time, reading frames until that event arrives before publishing the
next. The path timed: the outbox transaction in PostgreSQL (the client's counter row, the event
row, the commit), the channel layer's group_send to Redis on commit and the event's mark as sent,
daphne's consumer picking it up and writing the frame, TCP on loopback, and this process reading
and parsing it. Each event here is a transaction of its own (a standalone publish); an event
published with its change shares that change's commit. Figures are recorded in bench/README.md
under "Live stream".
"""
from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")
import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from rest_framework_simplejwt.tokens import AccessToken  # noqa: E402

from bench.governor_bench import Timing, machine, report  # noqa: E402
from bench.pretrade_bench import bench_client  # noqa: E402
from tenants.models import Membership  # noqa: E402
from tradingplatform.events import publish_event  # noqa: E402
from tradingplatform.tests.servers import Websocket, daphne_server  # noqa: E402

EVENTS = 500
WARMUP_EVENTS = 50


def greeks_data(sequence: int) -> dict:
    """A payload shaped like risk.selectors.net_greeks_json's, tagged so the reader can find it."""
    return {
        "as_of": datetime.now(UTC).isoformat(), "net_delta": 3.21, "unrealized_pnl": -412.5,
        "open_legs": 14,
        "by_underlying": [
            {"underlying": "ES", "delta": 2.71, "gamma": 0.012, "vega": 1830.0, "theta": -512.0},
            {"underlying": "NQ", "delta": 0.5, "gamma": 0.001, "vega": 410.0, "theta": -96.0},
        ],
        "bench_seq": sequence,
    }


def read_until(ws: Websocket, sequence: int) -> None:
    """Frames until the event tagged `sequence` (the replay on connect, or a repeat, comes first)."""
    while True:
        opcode, payload = ws.frame()
        if opcode == 9:  # daphne's keep-alive ping (every 20 s): a slow run meets one
            continue
        if opcode != 1:
            raise RuntimeError(f"unexpected websocket frame, opcode {opcode}: {payload[:200]!r}")
        if json.loads(payload)["data"].get("bench_seq") == sequence:
            return


def joined(ws: Websocket, client_id: str) -> None:
    """Publish until one event comes back: the consumer joins its group right after the handshake."""
    ws.sock.settimeout(0.5)
    for attempt in range(40):
        publish_event(client_id=client_id, type="greeks", data=greeks_data(-1 - attempt))
        try:
            read_until(ws, -1 - attempt)
            break
        except TimeoutError:
            continue
    else:
        raise RuntimeError("the stream never delivered an event")
    ws.sock.settimeout(10)


def timing(name: str, samples: list[int]) -> Timing:
    samples = sorted(samples)
    count = len(samples)
    return Timing(name=name, calls=count, p50_us=samples[count // 2] / 1e3,
                  p99_us=samples[min(count - 1, int(count * 0.99))] / 1e3, mean_us=sum(samples) / count / 1e3)


def main() -> None:
    call_command("migrate_platform", verbosity=0)
    client = bench_client()
    owner = Membership.objects.select_related("user").get(client=client, role=Membership.Role.OWNER).user
    clock = time.perf_counter_ns
    delivered, published = [], []
    with daphne_server() as port:
        ws = Websocket(port, f"/clients/{client.client_id}/stream?token={AccessToken.for_user(owner)}")
        try:
            if ws.status != 101:
                raise RuntimeError(f"the stream refused the bench owner: HTTP {ws.status}")
            joined(ws, client.client_id)
            for sequence in range(WARMUP_EVENTS + EVENTS):
                started = clock()
                publish_event(client_id=client.client_id, type="greeks", data=greeks_data(sequence))
                returned = clock()
                read_until(ws, sequence)
                if sequence >= WARMUP_EVENTS:
                    delivered.append(clock() - started)
                    published.append(returned - started)
        finally:
            ws.close()
            time.sleep(1)  # lets daphne run the consumer's disconnect (leaving the group) before it stops
    timings = [timing("greeks event, publish_event to websocket frame", delivered),
               timing("  of which the publish_event call itself", published)]
    print(f"stream latency benchmark, {date.today().isoformat()}, {machine()}")
    print()
    print(report(timings))
    print(f"max: {max(delivered) / 1e6:.2f} ms end to end, {max(published) / 1e6:.2f} ms publishing")


if __name__ == "__main__":
    main()
