"""Reads of the client's book, in the current client's schema."""
from __future__ import annotations

from django.db.models import QuerySet

from brokers.models import Fill, Order


def fills_newest_first() -> QuerySet[Fill]:
    return Fill.objects.order_by("-executed_at", "-id")


def working_orders() -> QuerySet[Order]:
    return Order.objects.filter(
        state__in=[Order.State.PENDING_SUBMIT, Order.State.SUBMITTED, Order.State.PARTIALLY_FILLED,
                   Order.State.UNKNOWN]
    )
