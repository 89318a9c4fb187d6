"""Reads of the client's book, in the current client's schema."""
from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Literal

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from brokers.models import BrokerConnection, Fill, Order

# An order the broker may still fill: sent and not finished, or on its way, or of an outcome that
# is still being asked of the broker.
WORKING_STATES = (Order.State.PENDING_SUBMIT, Order.State.SUBMITTED, Order.State.PARTIALLY_FILLED,
                  Order.State.UNKNOWN)
FINISHED_STATES = (Order.State.FILLED, Order.State.CANCELLED, Order.State.REJECTED)
OrderListState = Literal["working", "recent"]


def fills_newest_first() -> QuerySet[Fill]:
    return Fill.objects.order_by("-executed_at", "-id")


def working_orders() -> QuerySet[Order]:
    return Order.objects.filter(state__in=WORKING_STATES)


# An order still `pending_submit` this long after it was written was not followed by its send's
# answer (a worker died): the book sync asks the broker about it too.
PENDING_SUBMIT_STALE_AFTER = timedelta(seconds=60)


def working_orders_to_refresh() -> QuerySet[Order]:
    """The working orders whose state is asked of the broker at every book sync: all but those
    on their way (`pending_submit`, whoever sends one asks about it, unless it is stale)."""
    stale = timezone.now() - PENDING_SUBMIT_STALE_AFTER
    on_their_way = Q(state=Order.State.PENDING_SUBMIT, updated_at__gt=stale)
    return working_orders().exclude(on_their_way).order_by("created_at", "id")


def orders_list(*, state: OrderListState) -> QuerySet[Order]:
    """Working orders (oldest first: the one waiting longest on top), or recent finished ones
    (newest first: the last thing that happened on top)."""
    if state == "working":
        return working_orders().order_by("created_at", "id")
    return Order.objects.filter(state__in=FINISHED_STATES).order_by("-updated_at", "-id")


def order_get(*, client_order_id: str) -> Order | None:
    return Order.objects.filter(client_order_id=client_order_id).first()


def broker_session_state(*, connection: BrokerConnection) -> dict[str, Any] | None:
    """What the IBKR session process last published about this connection's live session
    (`phase`: connecting, connected, link_down, unresponsive or gateway_down; `detail`; IB's notices under
    `link`), read from Redis without asking the process; None for other brokers."""
    import redis

    from brokers.ibkr.session.proxy import IBKRSessionBroker
    from brokers.registry import routed_broker

    if routed_broker(connection.broker) != "ibkr" or not settings.IBKR_SESSION_PROCESS:
        return None
    unknown = {"phase": "unknown", "detail": "the IBKR session process has published nothing for "
                                             "this account (is it running?)"}
    try:
        return IBKRSessionBroker(json.loads(connection.credentials)).session_state() or unknown
    except (redis.RedisError, KeyError, ValueError):
        return unknown
