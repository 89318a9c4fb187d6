"""Thin views: the agent's status, mode and parameters."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from agents import services
from agents.selectors import agent_status_get
from agents.serializers import AgentModeSerializer, AgentParametersSerializer, AgentStatusSerializer
from tenants.models import Membership
from tenants.resolution import ClientScopedAPIView
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
    required_role = Membership.Role.OWNER

    @extend_schema(request=AgentParametersSerializer, responses={200: AgentStatusSerializer}, tags=["agent"])
    def post(self, request: Request, client_id: str) -> Response:
        serializer = AgentParametersSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        client = self.client_access.client
        try:
            services.agent_parameters_update(
                client=client, changes=json_ready(serializer.validated_data), actor=request.user.get_username()
            )
        except ValueError as exc:
            raise exceptions.ValidationError({"risk_limits": [str(exc)]}) from exc
        return Response(AgentStatusSerializer(agent_status_get(client=client)).data)
