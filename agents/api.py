from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from agents.selectors import agent_config_get
from agents.serializers import AgentStatusSerializer
from tenants.resolution import ClientScopedAPIView


class AgentStatusView(ClientScopedAPIView):
    @extend_schema(responses={200: AgentStatusSerializer}, tags=["agent"])
    def get(self, request: Request, client_id: str) -> Response:
        config = agent_config_get()
        body = {
            "client_id": self.client_access.client.client_id,
            "mode": config.mode,
            "autonomous_enabled": settings.AUTONOMOUS_ENABLED,
            "parameters": config.parameters,
            "updated_at": config.updated_at,
        }
        return Response(AgentStatusSerializer(body).data)
