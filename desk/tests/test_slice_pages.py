"""The orders, chain and audit pages through Django's test client: the one tenant resolution, the
one cancel path, filters validated (400 with the field named, never a 500), the CSV export."""
from __future__ import annotations

import csv
import io
import re

import pytest
from django.test import Client as Browser
from django_tenants.utils import tenant_context

from agents.tests.books import ROOMY_LIMITS, buy_calls, configure
from brokers.domain import OrderLeg, OrderRequest
from brokers.models import Order
from brokers.services import broker_session
from risk import services as risk
from tradingplatform.testing import PASSWORD, audit_events

PAGES = ("/desk/alpha/orders", "/desk/alpha/chain", "/desk/alpha/audit", "/desk/alpha/audit.csv")


def _logged_in(user) -> Browser:
    browser = Browser()
    assert browser.post("/login", {"username": user.get_username(), "password": PASSWORD}).status_code == 302
    return browser


def _rest(fixture, client_order_id: str) -> Order:
    configure(fixture, risk_limits={**ROOMY_LIMITS, "duplicate_window_seconds": 0})
    with tenant_context(fixture.client):
        with broker_session() as broker:
            future = broker.lookup_instrument(symbol="ES", sec_type="FUT")
            bid = broker.quote(future).bid
        result = risk.order_submit(client=fixture.client, actor=risk.Actor("user", "t"), order=OrderRequest(
            client_order_id=client_order_id, legs=(OrderLeg(future, "BUY", 2),), order_type="LMT",
            limit_price=round((bid - 40.0) * 4) / 4, time_in_force="GTC"))
        assert result.accepted and result.status.state == "submitted"
        return Order.objects.get(client_order_id=client_order_id)


def _strip_csrf(content: bytes) -> bytes:
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", content)


def test_a_non_member_gets_the_same_404_as_for_a_nonexistent_client(alpha, beta):
    browser = _logged_in(beta.trader)
    for path in PAGES:
        assert browser.get(path).status_code == 404, path
        nonexistent = browser.get(path.replace("alpha", "nosuch"))
        assert _strip_csrf(browser.get(path).content) == _strip_csrf(nonexistent.content)
    assert browser.post("/desk/alpha/orders/x/cancel").status_code == 404


def test_the_nav_links_every_page(alpha):
    text = _logged_in(alpha.viewer).get("/desk/alpha/").content.decode()
    for path in ("/desk/alpha/orders", "/desk/alpha/chain", "/desk/alpha/audit"):
        assert f'href="{path}"' in text


# --- orders -------------------------------------------------------------------------------------

def test_the_orders_page_shows_working_orders_and_fills_and_a_named_confirmation(alpha):
    _rest(alpha, "page-rest")
    buy_calls(alpha, 1, client_order_id="page-fill")
    page = _logged_in(alpha.trader).get("/desk/alpha/orders").content.decode()
    assert "page-rest" in page and "Submitted" in page and "0 of 2" in page
    assert "Cancel order <strong>page-rest</strong> for <strong>Alpha Capital (alpha)</strong>" in page
    assert 'id="fills"' in page and "page-fill" in page and "▲ Buy" in page


def test_a_trader_cancels_from_the_page_through_the_one_service(alpha):
    _rest(alpha, "page-c1")
    browser = _logged_in(alpha.trader)
    response = browser.post("/desk/alpha/orders/page-c1/cancel", {"reason": "re-price"})
    assert response.status_code == 302 and response["Location"] == "/desk/alpha/orders"
    with tenant_context(alpha.client):
        assert Order.objects.get(client_order_id="page-c1").state == "cancelled"
    (event,) = audit_events(client_id="alpha", kind="order.cancelled")
    assert (event.actor_id, event.payload["reason"]) == ("alpha-trader", "re-price")
    again = browser.post("/desk/alpha/orders/page-c1/cancel")
    assert again.status_code == 409 and b'id="refusal-page-c1"' in again.content
    assert browser.post("/desk/alpha/orders/nope/cancel").status_code == 404
    assert browser.post("/desk/alpha/orders/page-c1/cancel", {"reason": "x" * 501}).status_code == 400


def test_a_viewer_sees_orders_but_cannot_cancel(alpha):
    _rest(alpha, "page-v")
    browser = _logged_in(alpha.viewer)
    page = browser.get("/desk/alpha/orders").content.decode()
    assert "Cancelling needs the trader role." in page and "Confirm cancel" not in page
    assert browser.post("/desk/alpha/orders/page-v/cancel").status_code == 403
    with tenant_context(alpha.client):
        assert Order.objects.get(client_order_id="page-v").state == "submitted"


def test_while_halted_cancel_stays_available_and_says_so(alpha):
    with tenant_context(alpha.client):
        risk.client_halt_set(client=alpha.client, halted=True, reason="desk review", actor=risk.Actor("operator", "o"))
        Order.objects.create(client_order_id="page-h", broker="mock", legs=[], order_type="LMT", state="submitted")
    page = _logged_in(alpha.trader).get("/desk/alpha/orders").content.decode()
    assert "cancels still go through" in page and "Confirm cancel" in page


def test_an_order_being_sent_cannot_be_cancelled_yet_and_says_why(alpha):
    with tenant_context(alpha.client):
        Order.objects.create(client_order_id="page-p", broker="mock", legs=[], order_type="LMT",
                             state="pending_submit")
    page = _logged_in(alpha.trader).get("/desk/alpha/orders").content.decode()
    assert "Being sent to the broker" in page and "disabled" in page


def test_with_the_broker_down_a_cancel_says_503_naming_it_and_the_order_stays(alpha):
    _rest(alpha, "page-d")
    with tenant_context(alpha.client), broker_session() as broker:
        broker.inject_disconnect(failed_reconnects=1000)
    response = _logged_in(alpha.trader).post("/desk/alpha/orders/page-d/cancel")
    assert response.status_code == 503 and b"The broker mock could not be reached" in response.content
    with tenant_context(alpha.client):
        assert Order.objects.get(client_order_id="page-d").state == "submitted"


# --- chain --------------------------------------------------------------------------------------

def test_the_chain_page_has_expiry_tabs_and_marks_held_legs_in_words(alpha):
    configure(alpha)
    call = buy_calls(alpha, 2)
    browser = _logged_in(alpha.viewer)
    page = browser.get(f"/desk/alpha/chain?expiry={call.expiry.isoformat()}").content.decode()
    assert 'aria-label="Expiries"' in page and "Calls" in page and "Puts" in page and "ATM" in page
    assert "● +2 held" in page and f'title="{call.key}"' in page
    assert "1 held" in page  # on its expiry's tab too


@pytest.mark.parametrize("query", ["expiry=soon", "expiry=2020-01-17", "expiry=2026-02-30"])
def test_a_bad_expiry_is_400_with_the_field_named(alpha, query):
    response = _logged_in(alpha.viewer).get(f"/desk/alpha/chain?{query}")
    assert response.status_code == 400 and b"<strong>expiry</strong>" in response.content


def test_with_the_broker_down_the_chain_page_says_so(alpha):
    with tenant_context(alpha.client), broker_session() as broker:
        broker.inject_disconnect(failed_reconnects=1000)
    response = _logged_in(alpha.viewer).get("/desk/alpha/chain")
    assert response.status_code == 503 and b"The broker mock could not be reached" in response.content


# --- audit --------------------------------------------------------------------------------------

def _some_audit(alpha):
    _rest(alpha, "aud-1")
    with tenant_context(alpha.client):
        risk.order_cancel(client=alpha.client, client_order_id="aud-1", actor=risk.Actor("user", "alpha-trader"),
                          reason="=HYPERLINK(1)")


def _kinds(response) -> set[str]:
    pattern = r'<th scope="row" data-label="Kind"><a href="[^"]*">([a-z_.]+)</a>'
    return set(re.findall(pattern, response.content.decode()))


def test_the_audit_page_filters_by_family_actor_and_time(alpha):
    _some_audit(alpha)
    browser = _logged_in(alpha.viewer)  # any member may read the client's audit trail
    assert _kinds(browser.get("/desk/alpha/audit?kind=order.*&actor_type=&actor_id=alpha-trader")) == {
        "order.cancelled"}
    assert _kinds(browser.get("/desk/alpha/audit?kind=order.*")) == {"order.cancelled", "order.executed"}
    assert _kinds(browser.get("/desk/alpha/audit?kind=risk.*")) == {"risk.decision"}
    assert _kinds(browser.get("/desk/alpha/audit?actor_type=user&kind=order.executed")) == {"order.executed"}
    page = browser.get("/desk/alpha/audit?since=2000-01-01T00:00&until=2000-01-02T00:00").content.decode()
    assert "No events match." in page


def test_the_audit_page_pages_older_events(alpha):
    _some_audit(alpha)
    browser = _logged_in(alpha.viewer)
    first = browser.get("/desk/alpha/audit?limit=1").content.decode()
    older = re.search(r'href="\?([^"]*before=\d+[^"]*)" rel="next"', first)
    assert older, first
    second = browser.get("/desk/alpha/audit?" + older.group(1).replace("&amp;", "&")).content.decode()
    assert "← Newest" in second


@pytest.mark.parametrize("query, field", [
    ("kind=risk*", "kind"), ("actor_type=robot", "actor_type"), ("since=yesterday", "since"),
    ("since=2026-01-02T00:00&until=2026-01-01T00:00", "until"), ("limit=0", "limit"), ("before=-3", "before")])
def test_bad_audit_filters_are_400_with_the_field_named(alpha, query, field):
    browser = _logged_in(alpha.viewer)
    for path in ("/desk/alpha/audit", "/desk/alpha/audit.csv"):
        response = browser.get(f"{path}?{query}")
        assert response.status_code == 400, path
        assert f'href="#f-{field}"'.encode() in response.content


def test_the_csv_export_streams_every_matching_event_with_the_same_filters(alpha):
    _some_audit(alpha)
    response = _logged_in(alpha.viewer).get("/desk/alpha/audit.csv?kind=order.*")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["kind"] for row in rows] == ["order.cancelled", "order.executed"]  # newest first
    assert rows[0]["actor_id"] == "alpha-trader"
    assert '"=HYPERLINK(1)"' in rows[0]["payload"]  # inside JSON, so never a formula cell
