"""Working orders and the one cancel path: the service (a trader's cancel and a halt's share it),
the selector and the API, on the simulated market with resting limit orders."""
from __future__ import annotations

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from agents.tests.books import ROOMY_LIMITS, configure
from brokers.domain import OrderLeg, OrderRequest
from brokers.models import Order
from brokers.selectors import orders_list
from brokers.services import broker_session
from risk import services
from tradingplatform.events import live_state_get, recent_events
from tradingplatform.testing import audit_events, bearer

TRADER = services.Actor("user", "alpha-trader")


@pytest.fixture(autouse=True)
def _roomy_limits(alpha):
    configure(alpha, risk_limits={**ROOMY_LIMITS, "duplicate_window_seconds": 0})


def _rest(fixture, client_order_id: str, *, quantity: int = 1) -> Order:
    """A buy limit well under the market: it rests (GTC) until cancelled."""
    with tenant_context(fixture.client):
        with broker_session() as broker:
            future = broker.lookup_instrument(symbol="ES", sec_type="FUT")
            bid = broker.quote(future).bid
        result = services.order_submit(client=fixture.client, actor=TRADER, order=OrderRequest(
            client_order_id=client_order_id, legs=(OrderLeg(future, "BUY", quantity),), order_type="LMT",
            limit_price=round((bid - 40.0) * 4) / 4, time_in_force="GTC"))
        assert result.accepted and result.status.state == "submitted", result
        return Order.objects.get(client_order_id=client_order_id)


def _fill_now(fixture, client_order_id: str) -> Order:
    with tenant_context(fixture.client):
        with broker_session() as broker:
            future = broker.lookup_instrument(symbol="ES", sec_type="FUT")
        result = services.order_submit(client=fixture.client, actor=TRADER, order=OrderRequest(
            client_order_id=client_order_id, legs=(OrderLeg(future, "BUY", 1),), order_type="MKT"))
        assert result.accepted and result.status.state == "filled", result.decision
        return Order.objects.get(client_order_id=client_order_id)


def _broker_down(fixture, failed_reconnects: int = 1000) -> None:
    with tenant_context(fixture.client), broker_session() as broker:
        broker.inject_disconnect(failed_reconnects=failed_reconnects)


# --- selector -----------------------------------------------------------------------------------

def test_working_and_recent_orders_are_apart(alpha):
    _rest(alpha, "o-rest")
    _fill_now(alpha, "o-done")
    with tenant_context(alpha.client):
        assert [o.client_order_id for o in orders_list(state="working")] == ["o-rest"]
        assert [o.client_order_id for o in orders_list(state="recent")] == ["o-done"]


# --- service ------------------------------------------------------------------------------------

def test_a_trader_cancels_a_working_order_audited_with_who_and_why_and_published(alpha):
    _rest(alpha, "o-1")
    with tenant_context(alpha.client):
        row = services.order_cancel(client=alpha.client, client_order_id="o-1", actor=TRADER, reason="price moved")
        assert row.state == "cancelled" and Order.objects.get(client_order_id="o-1").state == "cancelled"
    (event,) = audit_events(client_id="alpha", kind="order.cancelled")
    assert (event.actor_type, event.actor_id) == ("user", "alpha-trader")
    assert event.payload["reason"] == "price moved" and event.payload["state_before"] == "submitted"
    published = [e for e in recent_events(client_id="alpha", limit=20) if e["type"] == "order"]
    assert published[-1]["data"] == {"event": "cancelled", "client_order_id": "o-1", "state": "cancelled",
                                     "filled_quantity": 0, "by": "alpha-trader", "reason": "price moved"}


def test_unknown_and_finished_orders_are_refused_and_nothing_is_sent(alpha):
    _fill_now(alpha, "o-filled")
    with tenant_context(alpha.client):
        with pytest.raises(services.OrderNotFound):
            services.order_cancel(client=alpha.client, client_order_id="nope", actor=TRADER, reason="")
        with pytest.raises(services.OrderNotWorking) as refused:
            services.order_cancel(client=alpha.client, client_order_id="o-filled", actor=TRADER, reason="")
    assert refused.value.order.state == "filled"
    assert audit_events(client_id="alpha", kind="order.cancelled") == []


def test_an_order_that_never_reached_the_broker_is_closed_not_cancelled(alpha):
    with tenant_context(alpha.client):
        Order.objects.create(client_order_id="o-lost", broker="mock", legs=[], order_type="LMT",
                             state=Order.State.PENDING_SUBMIT)
        with pytest.raises(services.OrderNotWorking, match="never reached the broker"):
            services.order_cancel(client=alpha.client, client_order_id="o-lost", actor=TRADER, reason="")
        assert Order.objects.get(client_order_id="o-lost").state == "rejected"


def test_an_order_a_halt_could_not_cancel_can_be_cancelled_while_halted(alpha):
    _rest(alpha, "o-halted")
    _broker_down(alpha, failed_reconnects=1)  # down for the halt's own cancel, back after
    operator = services.Actor("operator", "ops")
    with tenant_context(alpha.client):
        services.client_halt_set(client=alpha.client, halted=True, reason="review", actor=operator)
        assert Order.objects.get(client_order_id="o-halted").state == "submitted"
        services.order_cancel(client=alpha.client, client_order_id="o-halted", actor=TRADER, reason="halted")
        assert Order.objects.get(client_order_id="o-halted").state == "cancelled"


def test_a_halt_cancels_through_the_same_path_naming_the_operator_and_the_reason(alpha):
    _rest(alpha, "o-h1")
    _rest(alpha, "o-h2", quantity=2)
    with tenant_context(alpha.client):
        services.client_halt_set(client=alpha.client, halted=True, reason="compliance",
                                 actor=services.Actor("operator", "ops-anna"))
        assert set(Order.objects.values_list("state", flat=True)) == {"cancelled"}
    events = audit_events(client_id="alpha", kind="order.cancelled")
    assert {e.payload["client_order_id"] for e in events} == {"o-h1", "o-h2"}
    assert {(e.actor_type, e.actor_id) for e in events} == {("operator", "ops-anna")}
    assert all("compliance" in e.payload["reason"] for e in events)
    (halt,) = audit_events(client_id="alpha", kind="halt.client")
    assert sorted(halt.payload["cancelled_orders"]) == ["o-h1", "o-h2"]


def test_when_the_broker_is_down_the_cancel_raises_and_the_order_stays_working(alpha):
    _rest(alpha, "o-down")
    _broker_down(alpha)
    with tenant_context(alpha.client):
        with pytest.raises(services.BrokerError) as failed:
            services.order_cancel(client=alpha.client, client_order_id="o-down", actor=TRADER, reason="")
        assert Order.objects.get(client_order_id="o-down").state == "submitted"
    assert failed.value.broker == "mock" and failed.value.retryable


# --- API ----------------------------------------------------------------------------------------

def test_the_api_lists_working_and_recent_orders_for_a_viewer(api, alpha):
    _rest(alpha, "a-rest", quantity=3)
    _fill_now(alpha, "a-done")
    working = api.get("/clients/alpha/orders?state=working", **bearer(alpha.viewer))
    assert working.status_code == 200, working.content
    (row,) = working.json()["results"]
    assert (row["client_order_id"], row["state"], row["working"], row["quantity"], row["filled_quantity"]) == (
        "a-rest", "submitted", True, 3, 0)
    assert row["legs"][0]["instrument_key"].startswith("ES FUT") and row["legs"][0]["side"] == "BUY"
    recent = api.get("/clients/alpha/orders?state=recent", **bearer(alpha.viewer)).json()["results"]
    assert [r["client_order_id"] for r in recent] == ["a-done"] and recent[0]["working"] is False
    assert api.get("/clients/alpha/orders", **bearer(alpha.viewer)).json()["count"] == 1  # working by default


@pytest.mark.parametrize("query, field", [("state=open", "state"), ("limit=0", "limit"), ("offset=-1", "offset"),
                                          ("bogus=1", "bogus")])
def test_bad_order_filters_are_400_with_field_errors(api, alpha, query, field):
    response = api.get(f"/clients/alpha/orders?{query}", **bearer(alpha.viewer))
    assert response.status_code == 400 and field in response.json()["errors"]


def test_cancel_through_the_api_200_then_409_and_404_for_an_unknown_order(api, alpha):
    _rest(alpha, "a-c1")
    url = "/clients/alpha/orders/a-c1/cancel"
    response = api.post(url, {"reason": "too far"}, format="json", **bearer(alpha.trader))
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "cancelled"
    again = api.post(url, {}, format="json", **bearer(alpha.trader))
    assert again.status_code == 409
    assert again.json()["code"] == "order_not_working" and again.json()["order"]["state"] == "cancelled"
    assert api.post("/clients/alpha/orders/nope/cancel", {}, format="json", **bearer(alpha.trader)).status_code == 404
    (event,) = audit_events(client_id="alpha", kind="order.cancelled")
    assert (event.actor_id, event.payload["reason"]) == ("alpha-trader", "too far")


def test_a_viewer_cannot_cancel_and_a_non_member_gets_404(api, alpha, beta):
    _rest(alpha, "a-c2")
    url = "/clients/alpha/orders/a-c2/cancel"
    assert api.post(url, {}, format="json", **bearer(alpha.viewer)).status_code == 403
    assert api.post(url, {}, format="json", **bearer(beta.trader)).status_code == 404
    assert api.get("/clients/alpha/orders", **bearer(beta.trader)).status_code == 404
    connection.set_schema_to_public()
    with tenant_context(alpha.client):
        assert Order.objects.get(client_order_id="a-c2").state == "submitted"


def test_a_bad_cancel_body_is_400_and_changes_nothing(api, alpha):
    _rest(alpha, "a-c3")
    response = api.post("/clients/alpha/orders/a-c3/cancel", {"reason": "x" * 501, "force": True}, format="json",
                        **bearer(alpha.trader))
    assert response.status_code == 400 and {"reason", "force"} <= set(response.json()["errors"])
    with tenant_context(alpha.client):
        assert Order.objects.get(client_order_id="a-c3").state == "submitted"


def test_with_the_broker_down_a_cancel_is_503_naming_the_broker(api, alpha):
    _rest(alpha, "a-down")
    _broker_down(alpha)
    response = api.post("/clients/alpha/orders/a-down/cancel", {}, format="json", **bearer(alpha.trader))
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert (detail["type"], detail["broker"], detail["retryable"]) == ("broker_error", "mock", True)


def test_the_schema_types_the_order_endpoints(api):
    schema = api.get("/api/schema/?format=json").json()
    cancel = schema["paths"]["/clients/{client_id}/orders/{client_order_id}/cancel"]["post"]
    assert {"200", "404", "409", "503"} <= set(cancel["responses"])
    listing = schema["paths"]["/clients/{client_id}/orders"]["get"]
    assert "state" in {p["name"] for p in listing["parameters"]}


# --- working orders count as risk, and follow the broker ------------------------------------------

def _buy_now(fixture, client_order_id: str, quantity: int):
    with tenant_context(fixture.client):
        with broker_session() as broker:
            future = broker.lookup_instrument(symbol="ES", sec_type="FUT")
        return services.order_submit(client=fixture.client, actor=TRADER, order=OrderRequest(
            client_order_id=client_order_id, legs=(OrderLeg(future, "BUY", quantity),), order_type="MKT"))


def test_the_governor_counts_a_working_orders_remaining_quantity_until_it_is_cancelled(alpha):
    configure(alpha, risk_limits={**ROOMY_LIMITS, "duplicate_window_seconds": 0, "max_net_delta": 4,
                                  "max_leg_contracts": 4})
    _rest(alpha, "w-1", quantity=3)
    refused = _buy_now(alpha, "w-2", 2)  # +3 working and +2 more: +5 once both fill
    assert not refused.accepted
    assert {code.value for code in refused.decision.codes} == {"max_net_delta", "max_leg_size"}
    assert refused.decision.pre_net_delta == 3.0 and refused.decision.post_net_delta == 5.0
    assert refused.decision.as_dict()["working_delta"] == 3.0
    messages = " ".join(v.message for v in refused.decision.violations)
    assert "of which +3.00 in working orders" in messages and "3 already working on the same side" in messages

    with tenant_context(alpha.client):
        services.order_cancel(client=alpha.client, client_order_id="w-1", actor=TRADER, reason="test")
    accepted = _buy_now(alpha, "w-3", 2)  # a cancelled order counts no more
    assert accepted.accepted and accepted.decision.pre_net_delta == 0.0


def test_a_resting_order_filled_at_the_broker_is_brought_up_to_date_by_the_next_sync(alpha):
    _rest(alpha, "w-1", quantity=2)
    greeks = live_state_get(client_id="alpha", name="greeks")
    assert greeks["net_delta"] == 0.0
    assert greeks["working_orders"]["orders"] == 1 and greeks["working_orders"]["net_delta"] == 2.0
    with tenant_context(alpha.client), broker_session() as broker:
        broker.shock("ES", -0.02)  # through the buy limit 40 points under the market: it fills
    assert services.client_book_sync(client=alpha.client)
    with tenant_context(alpha.client):
        row = Order.objects.get(client_order_id="w-1")
    assert row.state == "filled" and row.filled_quantity == 2 and row.average_fill_price is not None
    greeks = live_state_get(client_id="alpha", name="greeks")
    assert greeks["net_delta"] == 2.0 and greeks["working_orders"]["orders"] == 0
    (updated,) = audit_events(client_id="alpha", kind="order.updated")
    assert updated.payload["client_order_id"] == "w-1" and updated.payload["state"] == "filled"
    events = recent_events(client_id="alpha", limit=100)
    assert any(e["type"] == "order" and e["data"]["event"] == "updated" and e["data"]["state"] == "filled"
               for e in events)
    assert any(e["type"] == "trade" and e["data"]["client_order_id"] == "w-1" for e in events)
    # Nothing changed since: the next sync reports nothing again.
    assert services.client_book_sync(client=alpha.client)
    assert len(audit_events(client_id="alpha", kind="order.updated")) == 1


def test_a_stale_pending_order_is_asked_of_the_broker_and_a_fresh_one_left_to_its_sender(alpha):
    from datetime import timedelta

    from django.utils import timezone

    _rest(alpha, "w-1")
    with tenant_context(alpha.client):
        # As if the sender died between writing the row and hearing the broker's answer.
        Order.objects.filter(client_order_id="w-1").update(state="pending_submit",
                                                           updated_at=timezone.now() - timedelta(seconds=30))
    assert services.client_book_sync(client=alpha.client)
    with tenant_context(alpha.client):
        assert Order.objects.get(client_order_id="w-1").state == "pending_submit"  # maybe still being sent
        Order.objects.filter(client_order_id="w-1").update(updated_at=timezone.now() - timedelta(seconds=90))
    assert services.client_book_sync(client=alpha.client)
    with tenant_context(alpha.client):
        assert Order.objects.get(client_order_id="w-1").state == "submitted"
