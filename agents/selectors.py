"""Reads about the agent, in the current client's schema."""
from __future__ import annotations

from agents.models import AgentConfig


def agent_config_get() -> AgentConfig:
    """The client's agent configuration; the defaults when none was ever saved."""
    return AgentConfig.objects.first() or AgentConfig()
