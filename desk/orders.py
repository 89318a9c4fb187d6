"""The desk's orders and fills page: working orders (state, filled quantity, cancel), recent
finished ones and the fills, live on `order` and `trade` events.

A cancel goes through `risk.services.order_cancel`, the one cancel path (a halt's cancels too),
audited with who and why. Cancelling stays possible while trading is halted: a halt stops new
risk, never its removal.
"""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from brokers.domain import BrokerError
from brokers.models import Order
from brokers.selectors import WORKING_STATES, fills_newest_first, orders_list
from brokers.serializers import order_legs
from desk.views import page_context
from risk import services as risk
from tenants.models import Membership
from tenants.resolution import ClientScopedPageView

WORKING_SHOWN = 100
RECENT_SHOWN = 20
FILLS_SHOWN = 50


def _row(order: Order, *, can_trade: bool) -> dict[str, Any]:
    legs = order_legs(order)
    quantity = max((int(leg["quantity"] or 0) for leg in legs), default=0)
    cancel_blocked = ""
    if order.state not in WORKING_STATES:
        cancel_blocked = f"The order is {order.state}."
    elif not can_trade:
        cancel_blocked = "Cancelling needs the trader role."
    elif order.state == Order.State.PENDING_SUBMIT:
        cancel_blocked = "Being sent to the broker: it can be cancelled once the broker has it."
    return {"order": order, "legs": legs, "quantity": quantity,
            "remaining": max(quantity - order.filled_quantity, 0), "cancel_blocked": cancel_blocked}


def orders_page(request: HttpRequest, access, *, error: dict[str, Any] | None = None,
                status_code: int = 200) -> HttpResponse:
    now = timezone.now()
    context = page_context(request, access, now, active="orders")
    can_trade = context["can_trade"]
    working = [_row(order, can_trade=can_trade) for order in orders_list(state="working")[:WORKING_SHOWN]]
    recent = [_row(order, can_trade=can_trade) for order in orders_list(state="recent")[:RECENT_SHOWN]]
    # A refusal is shown on the order the trader acted on, even once it has left the working list.
    if error and error.get("order") is not None and all(r["order"].pk != error["order"].pk for r in working):
        working.insert(0, _row(error["order"], can_trade=can_trade))
    context.update(working=working, recent=recent, fills=list(fills_newest_first()[:FILLS_SHOWN]), error=error,
                   broker_failed=context["status"]["broker"]["status"] == "failed")
    return render(request, "desk/orders.html", context, status=status_code)


class OrdersView(ClientScopedPageView):
    def get(self, request: HttpRequest, client_id: str) -> HttpResponse:
        return orders_page(request, self.client_access)


class OrderCancelView(ClientScopedPageView):
    required_role = Membership.Role.TRADER

    def post(self, request: HttpRequest, client_id: str, client_order_id: str) -> HttpResponse:
        access = self.client_access
        reason = request.POST.get("reason", "").strip()
        if len(reason) > 500:
            return orders_page(request, access, status_code=400, error={
                "client_order_id": client_order_id, "status": 400, "field": "reason",
                "message": "Keep the reason under 500 characters.", "order": None})
        try:
            order = risk.order_cancel(client=access.client, client_order_id=client_order_id,
                                      actor=risk.Actor("user", request.user.get_username()),
                                      reason=reason or "cancelled from the desk")
        except risk.OrderNotFound:
            return orders_page(request, access, status_code=404, error={
                "client_order_id": client_order_id, "status": 404, "message": "No such order.", "order": None})
        except risk.OrderNotWorking as exc:
            return orders_page(request, access, status_code=409, error={
                "client_order_id": client_order_id, "status": 409, "message": str(exc), "order": exc.order})
        except BrokerError as exc:
            return orders_page(request, access, status_code=503, error={
                "client_order_id": client_order_id, "status": 503, "order": None,
                "message": f"The broker {exc.broker} could not be reached ({exc.message}); the order is still "
                           "working. Try again."})
        messages.success(request, f"Cancelled {order.client_order_id} for {access.client.name} "
                                  f"({order.filled_quantity} filled before the cancel).")
        return redirect(reverse("desk-orders", args=[client_id]))
