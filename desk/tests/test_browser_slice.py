"""The orders, chain and audit pages in a real browser (Playwright + Debian's chromium against a
real daphne): cancel a resting order from the page, the page following an `order` event, the
chain at phone width, axe-core on each page, screenshots at 1280 and 390 px.

Like test_browser.py, this module commits its own client (`desk-ord`) so daphne sees it."""
from __future__ import annotations

import time

import pytest
from django_tenants.utils import tenant_context

from agents.tests.books import buy_calls
from brokers.domain import OrderLeg, OrderRequest
from brokers.models import Order
from brokers.services import broker_session
from desk.tests.browsing import AXE, api_call, committed_client, page_logged_in, shot, wait_changed, wait_live
from risk import services as risk

CLIENT = "desk-ord"


@pytest.fixture(scope="module")
def ord_client(django_db_setup, django_db_blocker):
    with committed_client(CLIENT, django_db_blocker) as fixture:
        with django_db_blocker.unblock():
            buy_calls(fixture, 2, client_order_id="ord-seed")
        yield fixture


def _rest(fixture, client_order_id: str) -> None:
    """A GTC buy limit well under the market: it rests on the simulated market until cancelled."""
    with tenant_context(fixture.client):
        with broker_session() as broker:
            future = broker.lookup_instrument(symbol="ES", sec_type="FUT")
            bid = broker.quote(future).bid
        result = risk.order_submit(client=fixture.client, actor=risk.Actor("user", "desk-ord-trader"),
                                   order=OrderRequest(client_order_id=client_order_id,
                                                      legs=(OrderLeg(future, "BUY", 1),), order_type="LMT",
                                                      limit_price=round((bid - 40.0) * 4) / 4, time_in_force="GTC"))
    assert result.accepted and result.status.state == "submitted", result


def _state(fixture, client_order_id: str) -> str:
    with tenant_context(fixture.client):
        return Order.objects.get(client_order_id=client_order_id).state


def test_a_trader_cancels_a_resting_order_from_the_page_with_a_named_confirmation(browser, server, ord_client,
                                                                                  committed):
    _rest(ord_client, "ord-page-1")
    page = page_logged_in(browser, server, ord_client.trader)
    page.goto(f"/desk/{CLIENT}/orders")
    wait_live(page)
    row = page.locator("#order-ord-page-1")
    assert "Submitted" in row.inner_text() and "0 of 1" in row.inner_text()
    row.locator("button.cancel-open").click()
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    assert f"({CLIENT})" in dialog.inner_text() and "ord-page-1" in dialog.inner_text()
    assert dialog.locator("button", has_text="Keep the order").count() == 1
    assert page.evaluate("document.activeElement.closest('dialog') !== null")  # focus is in the dialog
    dialog.locator("input[name=reason]").fill("re-pricing")
    shot(page, "orders-cancel-dialog-1280")
    dialog.locator("button[type=submit]").click()
    page.wait_for_selector(".messages .message")
    assert "Cancelled ord-page-1" in page.locator(".messages").inner_text()
    assert page.locator("#order-ord-page-1").count() == 0
    assert _state(ord_client, "ord-page-1") == "cancelled"
    page.context.close()


def test_the_open_page_follows_a_cancel_made_elsewhere_without_a_reload(browser, server, ord_client, committed):
    _rest(ord_client, "ord-live-1")
    page = page_logged_in(browser, server, ord_client.trader)
    page.goto(f"/desk/{CLIENT}/orders")
    wait_live(page)
    before = page.locator("#orders-live").inner_text()
    assert "ord-live-1" in before
    status, body = api_call(server, "POST", f"/clients/{CLIENT}/orders/ord-live-1/cancel", ord_client.trader,
                        {"reason": "from the API"})
    assert status == 200, body
    started = time.monotonic()
    wait_changed(page.locator("#orders-live"), before)
    page.wait_for_selector("#order-ord-live-1", state="detached", timeout=3_000)
    assert time.monotonic() - started < 3.0
    assert "ord-live-1" in page.locator("#recent-orders").inner_text()  # now among the finished ones
    page.context.close()


@pytest.mark.parametrize("name", ["orders", "chain", "audit"])
def test_each_page_at_both_widths_no_sideways_scroll_and_axe_finds_nothing_serious(browser, server, ord_client, name,
                                                                                   committed):
    _rest(ord_client, f"ord-shot-{name}")
    for width, height in ((1280, 900), (390, 844), (360, 740)):
        page = page_logged_in(browser, server, ord_client.trader, width=width, height=height)
        page.goto(f"/desk/{CLIENT}/{name}")
        page.wait_for_load_state("load")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (name, width)
        if name == "chain":
            assert "● +2 held" in page.locator("#chain").inner_text() or page.locator(".held-tag").count() >= 1
            scroller = page.locator(".table-scroll")
            assert scroller.get_attribute("role") == "region" and scroller.get_attribute("tabindex") == "0"
        shot(page, f"{name}-{width}")
        page.add_script_tag(url=f"/static/vendor/{AXE.name}")
        result = page.evaluate("() => axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa', 'wcag22aa']})")
        serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
                   if v["impact"] in ("serious", "critical")]
        assert serious == [], (name, width, serious)
        page.context.close()


def test_a_member_of_another_client_gets_404_on_these_pages(browser, server, ord_client, beta):
    # (Its `beta` fixture also tells pytest-django this module needs the test database.)
    page = page_logged_in(browser, server, beta.trader)
    for path in ("orders", "chain", "audit", "audit.csv"):
        assert page.goto(f"/desk/{CLIENT}/{path}").status == 404, path
    page.context.close()
