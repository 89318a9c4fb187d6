from django.urls import path

from agents import api

urlpatterns = [
    path("agent/status", api.AgentStatusView.as_view(), name="agent-status"),
]
