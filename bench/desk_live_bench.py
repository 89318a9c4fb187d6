"""A `greeks` event to the book page's updated numbers, in a real browser: Debian's chromium
(Playwright, headless) on the book page of bench/desk_book_bench.py's client (50 legs, a day of
history), served by a real daphne process; and, for reference, the same page's regions
re-fetched with no event (the page's own `fetch` of itself and the swap).

Run from the repository root with the servers up: `make bench`, or
`python -m tradingplatform.devstack exec -- python -m bench.desk_live_bench` (about a minute).
Each round: the page arms a one-shot listener for `desk:refreshed` (static/desk/desk.js fires it
once the book's regions are swapped in), this process takes t0 and publishes a `greeks` event
(`tradingplatform.events.publish_event`), then waits for the listener; t1 when it answers. The
path: Redis and the channel layer, daphne's consumer, the websocket, desk.js, its fetch of the
page (the whole server render), the parse and the swap of the three regions. Figures are
recorded in bench/README.md under "Desk".
"""
from __future__ import annotations

import os
import time
from datetime import date

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API keeps a loop in this thread
import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from bench.desk_book_bench import desk_client  # noqa: E402
from bench.governor_bench import machine  # noqa: E402
from bench.stream_latency_bench import greeks_data, timing  # noqa: E402
from tradingplatform.events import publish_event  # noqa: E402
from tradingplatform.tests.servers import daphne_server  # noqa: E402

CHROMIUM = os.environ.get("DESK_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
EVENTS = 100
WARMUP = 10
PASSWORD = "bench-desk-password-0123"
ARM = """() => {
    window.__numbers = new Promise(resolve => document.body.addEventListener(
        "desk:numbers", () => resolve(performance.now()), {once: true}));
    window.__refreshed = new Promise(resolve => document.body.addEventListener(
        "desk:refreshed", () => resolve(performance.now()), {once: true})); }"""


def main() -> None:
    call_command("migrate_platform", verbosity=0)
    client, owner = desk_client()
    owner.set_password(PASSWORD)
    owner.save()
    clock = time.perf_counter_ns
    delivered, numbers = [], []
    with daphne_server() as port, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900},
                                   base_url=f"http://127.0.0.1:{port}").new_page()
        page.goto("/login")
        page.fill("#username", owner.get_username())
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"**/desk/{client.client_id}/")
        page.wait_for_selector("#live-status[data-state=live]", timeout=15_000)
        time.sleep(0.5)  # the consumer joins its group right after the handshake
        for index in range(WARMUP + EVENTS):
            page.evaluate(ARM)
            started = clock()
            publish_event(client_id=client.client_id, type="greeks", data=greeks_data(index))
            page.evaluate("() => window.__numbers")
            written = clock()
            page.evaluate("() => window.__refreshed")
            if index >= WARMUP:
                numbers.append(written - started)
                delivered.append(clock() - started)
        browser.close()
    get_user_model().objects.filter(pk=owner.pk).update(password="!")  # no usable password left behind
    results = [timing("greeks event to the page's updated numbers", numbers),
               timing("... and the regions re-rendered and swapped", delivered)]
    print(f"desk live update benchmark, {date.today().isoformat()}, {machine()}")
    print()
    print(f"{'path':<45}  {'p50 ms':>8}  {'p99 ms':>8}  {'mean ms':>8}  events")
    for result in results:
        print(f"{result.name:<45}  {result.p50_us / 1e3:8.2f}  {result.p99_us / 1e3:8.2f}  "
              f"{result.mean_us / 1e3:8.2f}  {result.calls}")
    print(f"max: {max(numbers) / 1e6:.1f} ms (numbers), {max(delivered) / 1e6:.1f} ms (regions)")


if __name__ == "__main__":
    main()
