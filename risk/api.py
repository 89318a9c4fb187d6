"""Thin views: the operator's halts (X-Admin-Key), the owner's circuit breaker reset, the book's history."""
from __future__ import annotations

from django_tenants.utils import tenant_context
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.selectors import orders_list
from brokers.serializers import BrokerErrorSerializer, OrderSerializer
from risk import selectors, services
from risk.serializers import (
    BookHistoryQuerySerializer,
    BookHistorySerializer,
    BreakerResetRequestSerializer,
    HaltRequestSerializer,
    HaltStateSerializer,
    OrderCancelRequestSerializer,
    OrderConflictSerializer,
    OrdersQuerySerializer,
    TradingStateSerializer,
)
from tenants.models import Client, Membership
from tenants.permissions import HasAdminKey
from tenants.resolution import ClientScopedAPIView
from tradingplatform.api import Conflict, LimitOffsetPages

OPERATOR_KEY_ACTOR = services.Actor("operator", "admin-api-key")


class OperatorKeyView(APIView):
    """Endpoints for operators holding the X-Admin-Key (401 without it, 403 when wrong)."""

    authentication_classes: list = []
    permission_classes = [HasAdminKey]

    def get_authenticate_header(self, request: Request) -> str:
        return "X-Admin-Key"


class EmergencyHaltView(OperatorKeyView):
    """The platform-wide emergency halt: no execution anywhere, approvals included."""

    def _body(self, control) -> dict:
        return {"halted": control.emergency_halted, "reason": control.reason,
                "changed_by": control.changed_by, "changed_at": control.changed_at}

    @extend_schema(responses={200: HaltStateSerializer}, tags=["operator"])
    def get(self, request: Request) -> Response:
        return Response(HaltStateSerializer(self._body(selectors.platform_control_get())).data)

    @extend_schema(request=HaltRequestSerializer, responses={200: HaltStateSerializer}, tags=["operator"])
    def post(self, request: Request) -> Response:
        serializer = HaltRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        control = services.emergency_halt_set(actor=OPERATOR_KEY_ACTOR, **serializer.validated_data)
        return Response(HaltStateSerializer(self._body(control)).data)


class ClientHaltView(OperatorKeyView):
    """An operator's halt of one client."""

    def _client(self, client_id: str) -> Client:
        client = Client.objects.filter(client_id=client_id).first()
        if client is None:
            raise exceptions.NotFound()
        return client

    @extend_schema(responses={200: HaltStateSerializer}, tags=["operator"])
    def get(self, request: Request, client_id: str) -> Response:
        client = self._client(client_id)
        with tenant_context(client):
            record = selectors.risk_state_get()
        return Response({"halted": record.operator_halted, "reason": record.operator_halt_reason})

    @extend_schema(request=HaltRequestSerializer, responses={200: HaltStateSerializer}, tags=["operator"])
    def post(self, request: Request, client_id: str) -> Response:
        client = self._client(client_id)
        serializer = HaltRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with tenant_context(client):
            record = services.client_halt_set(client=client, actor=OPERATOR_KEY_ACTOR, **serializer.validated_data)
        return Response({"halted": record.operator_halted, "reason": record.operator_halt_reason})


class BreakerResetView(ClientScopedAPIView):
    required_role = Membership.Role.OWNER

    @extend_schema(request=BreakerResetRequestSerializer, responses={200: TradingStateSerializer, 409: None},
                   tags=["risk"])
    def post(self, request: Request, client_id: str) -> Response:
        serializer = BreakerResetRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            record = services.circuit_breaker_reset(
                client=self.client_access.client, actor=services.Actor("user", request.user.get_username()),
                note=serializer.validated_data["note"],
            )
        except services.BreakerNotTripped as exc:
            raise Conflict(str(exc), code="breaker_not_tripped") from exc
        body = {"trading_state": record.trading_state, "reason": record.reason, "until": record.state_until,
                "loss_streak": record.loss_streak}
        return Response(TradingStateSerializer(body).data, status=status.HTTP_200_OK)


class OrdersView(ClientScopedAPIView):
    pagination_class = LimitOffsetPages

    @extend_schema(summary="Working or recent orders", parameters=[OrdersQuerySerializer],
                   responses={200: OrderSerializer(many=True)}, tags=["orders"],
                   description="`state=working` (default): orders the broker may still fill, oldest first; "
                               "`state=recent`: finished orders (filled, cancelled, rejected), newest first. "
                               "Paginated with `limit` and `offset`.")
    def get(self, request: Request, client_id: str) -> Response:
        query = OrdersQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(orders_list(state=query.validated_data["state"]), request, view=self)
        return paginator.get_paginated_response(OrderSerializer(page, many=True).data)


class OrderCancelView(ClientScopedAPIView):
    required_role = Membership.Role.TRADER

    @extend_schema(
        summary="Cancel a working order", request=OrderCancelRequestSerializer, tags=["orders"],
        description="Asks the broker to cancel the order; allowed while trading is halted (cancels always "
                    "are). Audited with who and why (`order.cancelled`) and published as an `order` event.",
        responses={200: OrderSerializer, 404: None,
                   409: OpenApiResponse(OrderConflictSerializer, description="Not working: finished already, "
                                        "or filled before the cancel reached the broker; `order` says how."),
                   503: OpenApiResponse(BrokerErrorSerializer, description="The broker could not be reached "
                                        "(`detail.broker` names it); nothing changed.")},
    )
    def post(self, request: Request, client_id: str, client_order_id: str) -> Response:
        serializer = OrderCancelRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            order = services.order_cancel(
                client=self.client_access.client, client_order_id=client_order_id,
                actor=services.Actor("user", request.user.get_username()),
                reason=serializer.validated_data["reason"] or "cancelled by a trader",
            )
        except services.OrderNotFound as exc:
            raise exceptions.NotFound("No order with this client order id.") from exc
        except services.OrderNotWorking as exc:
            return Response({"detail": str(exc), "code": "order_not_working",
                             "order": OrderSerializer(exc.order).data}, status=status.HTTP_409_CONFLICT)
        return Response(OrderSerializer(order).data)


class BookHistoryView(ClientScopedAPIView):
    """The book's net greeks and P&L over time, as stored at each book sync."""

    @extend_schema(parameters=[BookHistoryQuerySerializer], responses={200: BookHistorySerializer}, tags=["risk"])
    def get(self, request: Request, client_id: str) -> Response:
        query = BookHistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        points = selectors.book_history_list(start=params["from"], end=params["to"], step_seconds=params["step"],
                                             underlying=params["underlying"])
        body = {"client_id": client_id, "from": params["from"], "to": params["to"], "step": params["step"],
                "points": points}
        return Response(BookHistorySerializer(body).data)
