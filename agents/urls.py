from django.urls import path

from agents import api

urlpatterns = [
    path("agent/status", api.AgentStatusView.as_view(), name="agent-status"),
    path("agent/mode", api.AgentModeView.as_view(), name="agent-mode"),
    path("agent/parameters", api.AgentParametersView.as_view(), name="agent-parameters"),
]
