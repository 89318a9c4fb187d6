"""Thin views: the agent's status, mode and parameters; its proposals, their approval and rejection."""
from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from agents import services
from agents.models import Proposal
from agents.parameters import ParameterError
from agents.selectors import agent_parameters_described, agent_status_get, book_scenario, proposals_list
from agents.serializers import (
    AgentModeSerializer,
    AgentParametersDescribedSerializer,
    AgentParametersSerializer,
    AgentStatusSerializer,
    ProposalListQuerySerializer,
    ProposalSerializer,
    RejectSerializer,
    RiskRefusalSerializer,
    ScenarioQuerySerializer,
    ScenarioSerializer,
    TradeDraftedSerializer,
    TradeRequestSerializer,
)
from agents.trade_requests import LegSpec, RequestKind, TradeRequest
from brokers.services import broker_session
from risk.services import ExecutionHalted, book_sync
from tenants.models import Membership
from tenants.resolution import ClientScopedAPIView
from tradingplatform.api import Conflict, LimitOffsetPages
from tradingplatform.serialization import json_ready


class AgentStatusView(ClientScopedAPIView):
    @extend_schema(responses={200: AgentStatusSerializer}, tags=["agent"])
    def get(self, request: Request, client_id: str) -> Response:
        return Response(AgentStatusSerializer(agent_status_get(client=self.client_access.client)).data)


class AgentModeView(ClientScopedAPIView):
    required_role = Membership.Role.OWNER

    @extend_schema(request=AgentModeSerializer, responses={200: AgentStatusSerializer}, tags=["agent"])
    def post(self, request: Request, client_id: str) -> Response:
        serializer = AgentModeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        client = self.client_access.client
        try:
            services.agent_mode_set(client=client, mode=serializer.validated_data["mode"],
                                    actor=request.user.get_username())
        except services.AutonomousDisabled as exc:
            raise exceptions.PermissionDenied(str(exc), code="autonomous_disabled") from exc
        return Response(AgentStatusSerializer(agent_status_get(client=client)).data)


class AgentParametersView(ClientScopedAPIView):
    @property
    def required_role(self) -> str:  # everyone reads the parameters; owners change them
        return Membership.Role.VIEWER if self.request.method in ("GET", "HEAD") else Membership.Role.OWNER

    @extend_schema(responses={200: AgentParametersDescribedSerializer}, tags=["agent"])
    def get(self, request: Request, client_id: str) -> Response:
        return Response(AgentParametersDescribedSerializer(agent_parameters_described()).data)

    @extend_schema(request=AgentParametersSerializer, responses={200: AgentStatusSerializer}, tags=["agent"])
    def post(self, request: Request, client_id: str) -> Response:
        serializer = AgentParametersSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        client = self.client_access.client
        try:
            services.agent_parameters_update(
                client=client, changes=json_ready(serializer.validated_data), actor=request.user.get_username()
            )
        except ParameterError as exc:
            raise exceptions.ValidationError(exc.field_errors) from exc
        return Response(AgentStatusSerializer(agent_status_get(client=client)).data)


class Gone(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "The proposal has expired."
    default_code = "expired"


class Locked(exceptions.APIException):
    status_code = status.HTTP_423_LOCKED
    default_detail = "Trading is halted."
    default_code = "halted"


class RiskRefused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The risk governor refused the order."
    default_code = "risk_rejected"


class ProposalsView(ClientScopedAPIView, ListAPIView):
    serializer_class = ProposalSerializer
    pagination_class = LimitOffsetPages

    def get_queryset(self):
        query = ProposalListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return proposals_list(status=query.validated_data.get("status"))

    @property
    def required_role(self) -> str:  # everyone reads proposals; traders draft them
        return Membership.Role.VIEWER if self.request.method in ("GET", "HEAD") else Membership.Role.TRADER

    @extend_schema(parameters=[ProposalListQuerySerializer], tags=["agent"])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=TradeRequestSerializer,
        responses={201: TradeDraftedSerializer, 422: RiskRefusalSerializer, 423: RiskRefusalSerializer},
        tags=["agent"],
        description=(
            "Draft explicit legs as one PENDING proposal (trader role). It goes through the same governor "
            "pre-check as the agent's proposals (recorded on the proposal) and is executed only by an approval "
            "(POST .../agent/approve/{trade_id}). A pre-check refusal creates nothing: 422 with every violation "
            "(423 when a halt is among them). An instrument that cannot be resolved is a 400 naming it; one "
            "that cannot be priced now (no bid or ask) is a 422 with code not_priceable."),
    )
    def post(self, request: Request, *args, **kwargs) -> Response:
        serializer = TradeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        legs = tuple(LegSpec(**leg) for leg in serializer.validated_data["legs"])
        trade = TradeRequest(kind=RequestKind.LEGS, legs=legs)
        try:
            drafted = services.proposal_draft(client=self.client_access.client, request=trade,
                                              actor=request.user.get_username(), source=Proposal.Source.API)
        except services.DraftUnclear as exc:
            raise exceptions.ValidationError(exc.field_errors or {"legs": [exc.question]}) from exc
        except services.DraftImpossible as exc:
            raise NotPriceable(str(exc)) from exc
        except services.RiskRejected as exc:
            raise _proposal_error(exc) from exc
        body = {"decision_id": drafted.decision.pk, "reason": drafted.decision.reason, "proposals": drafted.proposals}
        return Response(TradeDraftedSerializer(body).data, status=status.HTTP_201_CREATED)


class NotPriceable(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "No order can be built now."
    default_code = "not_priceable"


def _proposal_error(exc: Exception) -> exceptions.APIException:
    if isinstance(exc, services.ProposalNotFound):
        return exceptions.NotFound("No such proposal.")
    if isinstance(exc, services.ProposalExpired):
        return Gone(str(exc))
    if isinstance(exc, services.ProposalConflict):
        return Conflict(str(exc), code="not_pending")
    if isinstance(exc, ExecutionHalted):
        return Locked(exc.reason)
    assert isinstance(exc, services.RiskRejected)
    error = Locked(str(exc)) if exc.is_halt else RiskRefused(str(exc))
    error.detail = {"detail": error.detail, "code": error.default_code, "violations": exc.violations}
    return error


class ApproveView(ClientScopedAPIView):
    required_role = Membership.Role.TRADER

    @extend_schema(request=None, responses={200: ProposalSerializer}, tags=["agent"])
    def post(self, request: Request, client_id: str, trade_id: str) -> Response:
        try:
            proposal = services.proposal_approve(client=self.client_access.client, proposal_id=trade_id,
                                                 user=request.user.get_username())
        except (services.ProposalNotFound, services.ProposalExpired, services.ProposalConflict,
                ExecutionHalted, services.RiskRejected) as exc:
            raise _proposal_error(exc) from exc
        return Response(ProposalSerializer(proposal).data)


class RejectView(ClientScopedAPIView):
    required_role = Membership.Role.TRADER

    @extend_schema(request=RejectSerializer, responses={200: ProposalSerializer}, tags=["agent"])
    def post(self, request: Request, client_id: str, trade_id: str) -> Response:
        serializer = RejectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            proposal = services.proposal_reject(client=self.client_access.client, proposal_id=trade_id,
                                                user=request.user.get_username(),
                                                reason=serializer.validated_data["reason"])
        except (services.ProposalNotFound, services.ProposalExpired, services.ProposalConflict) as exc:
            raise _proposal_error(exc) from exc
        return Response(ProposalSerializer(proposal).data)


class ScenarioView(ClientScopedAPIView):
    """The risk graph's numbers: the book's P&L over moves of the underlying, now and at expiry,
    with vol and time shifted, optionally after a pending proposal (the platform's own pricing)."""

    @extend_schema(parameters=[ScenarioQuerySerializer], responses={200: ScenarioSerializer}, tags=["book"])
    def get(self, request: Request, client_id: str) -> Response:
        query = ScenarioQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        options = query.validated_data
        with broker_session() as broker:
            valuation = book_sync(client=self.client_access.client, broker=broker).valuation
            numbers = book_scenario(valuation=valuation, broker=broker, now=timezone.now(),
                                    vol_shift=options["vol_shift"], days=options["days"],
                                    proposal_id=str(options["proposal"]) if options.get("proposal") else None)
        if options.get("proposal") and numbers["proposal"] is None:
            raise exceptions.NotFound("No such proposal.")
        numbers["proposal"] = str(numbers["proposal"].pk) if numbers["proposal"] is not None else None
        return Response(ScenarioSerializer(numbers).data)
