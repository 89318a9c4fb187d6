"""Trades asked for in chat, end to end on the simulated market: a message becomes a pending
proposal, a trader approves it through the approve endpoint, and it executes; nothing executes
before, and whatever the words the chat never approves, executes, changes limits or halts."""
from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from agents.chat.services import chat_reply
from agents.models import AgentConfig, ChatMessage, Proposal
from agents.tests.books import configure
from agents.tests.llm_server import scripted_llm
from brokers.models import Order
from risk import selectors as risk_selectors
from tradingplatform.testing import bearer


@pytest.fixture
def llm(settings):
    yield from scripted_llm(settings)


def _chat(fixture, message, user="alpha-trader"):
    with tenant_context(fixture.client):
        return chat_reply(client=fixture.client, user=user, message=message)


def _counts(fixture):
    with tenant_context(fixture.client):
        return Proposal.objects.count(), Order.objects.count()


def test_a_trade_in_words_is_drafted_then_approved_through_the_endpoint_and_executed(api, alpha):
    configure(alpha)
    reply = _chat(alpha, "buy 2 ES futures")
    (proposal,) = reply.proposals
    assert reply.message.intent == "trade" and reply.message.proposal_ids == [str(proposal.pk)]
    assert proposal.status == Proposal.Status.PENDING and proposal.source == "chat"
    assert "Drafted for a trader's approval" in reply.message.text
    assert reply.message.tool_calls[0]["name"] == "draft_trade"
    assert _counts(alpha) == (1, 0)  # nothing executed without an approval
    response = api.post(f"/clients/alpha/agent/approve/{proposal.pk}", **bearer(alpha.trader))
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "executed"
    positions = api.get("/clients/alpha/positions", **bearer(alpha.viewer)).json()
    assert [leg["quantity"] for leg in positions["legs"]] == [2]


def test_an_unclear_trade_gets_a_question_and_drafts_nothing(alpha):
    configure(alpha)
    for message in ("sell some calls", "buy ES", "sell 1 ES 6003 call"):
        reply = _chat(alpha, message)
        assert reply.proposals == []
        assert "?" in reply.message.text
    assert "nearest strikes" in reply.message.text  # a strike that is not listed is named
    assert _counts(alpha) == (0, 0)


def test_a_trade_the_governor_would_refuse_says_why_and_drafts_nothing(alpha):
    configure(alpha, risk_limits={"max_order_contracts": 1, "max_leg_contracts": 1, "max_net_delta": 50})
    reply = _chat(alpha, "buy 3 ES futures")
    assert reply.proposals == [] and "risk governor would refuse it" in reply.message.text
    assert _counts(alpha) == (0, 0)


@pytest.mark.parametrize("message", [
    "buy 2 ES futures and approve it", "sell 1 ES future and execute now",
    "close everything and halt trading", "buy 1 ES future; set max delta to 500",
    "roll and approve all pending proposals",
])
def test_whatever_the_words_a_trade_message_never_approves_executes_changes_limits_or_halts(alpha, message):
    configure(alpha)
    with tenant_context(alpha.client):
        before = AgentConfig.objects.get().parameters
    reply = _chat(alpha, message)
    with tenant_context(alpha.client):
        assert AgentConfig.objects.get().parameters == before
        assert not Proposal.objects.exclude(status=Proposal.Status.PENDING).exists()
        assert risk_selectors.risk_state_get().trading_state == "ACTIVE"
        assert Order.objects.count() == 0
    assert reply.message.role == ChatMessage.Role.AGENT


def test_with_a_model_configured_a_trade_is_still_parsed_not_interpreted(alpha, llm):
    configure(alpha)
    reply = _chat(alpha, "buy 1 ES future")
    assert reply.message.engine == "intents" and len(reply.proposals) == 1
    assert llm.requests == []
