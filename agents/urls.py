from django.urls import path

from agents import api
from agents.chain_api import ChainView
from agents.chat.api import ChatView

urlpatterns = [
    path("agent/status", api.AgentStatusView.as_view(), name="agent-status"),
    path("agent/mode", api.AgentModeView.as_view(), name="agent-mode"),
    path("agent/parameters", api.AgentParametersView.as_view(), name="agent-parameters"),
    path("agent/proposals", api.ProposalsView.as_view(), name="agent-proposals"),
    path("agent/approve/<str:trade_id>", api.ApproveView.as_view(), name="agent-approve"),
    path("agent/reject/<str:trade_id>", api.RejectView.as_view(), name="agent-reject"),
    path("agent/chat", ChatView.as_view(), name="agent-chat"),
    path("scenario", api.ScenarioView.as_view(), name="scenario"),
    path("chain", ChainView.as_view(), name="option-chain"),
]
