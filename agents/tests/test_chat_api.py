"""`POST /clients/{id}/agent/chat` through HTTP: roles, validation, the reply and its proposals."""
from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from agents.models import ChatMessage, Proposal
from agents.tests.books import buy_futures, configure
from agents.tests.llm_server import CallTools, Say, scripted_llm
from brokers.models import Order
from tradingplatform.testing import bearer

URL = "/clients/alpha/agent/chat"


@pytest.fixture
def llm(settings):
    yield from scripted_llm(settings)


def _post(api, user, body, url=URL):
    return api.post(url, body, format="json", **bearer(user))



def _messages(fixture) -> int:
    with tenant_context(fixture.client):
        return ChatMessage.objects.count()


def test_a_trader_chats_and_gets_the_reply_with_its_proposals(api, alpha):
    configure(alpha)
    buy_futures(alpha, 3)
    response = _post(api, alpha.trader, {"message": "hedge to neutral"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"message_id", "reply", "engine", "intent", "proposals", "created_at"}
    assert body["engine"] == "intents" and body["intent"] == "hedge"
    (proposal,) = body["proposals"]
    assert proposal["status"] == "pending" and proposal["source"] == "chat" and proposal["action"] == "hedge"
    assert proposal["trade_id"][:8] in body["reply"]
    with tenant_context(alpha.client):
        stored = ChatMessage.objects.get(message_id=body["message_id"])
    assert stored.text == body["reply"] and stored.author == "agent"
    assert _post(api, alpha.trader, {"message": "status"}).json()["proposals"] == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "This field is required."),
        ({"message": ""}, "This field may not be blank."),
        ({"message": "   "}, "This field may not be blank."),
        ({"message": "x" * 2001}, "Ensure this field has no more than 2000 characters."),
        ({"message": ["status"]}, "Not a valid string."),
    ],
)
def test_bad_input_is_a_400_with_field_errors_and_stores_nothing(api, alpha, body, error):
    before = _messages(alpha)
    response = _post(api, alpha.trader, body)
    assert response.status_code == 400
    assert response.json()["errors"]["message"] == [error]
    assert _messages(alpha) == before


def test_viewers_may_not_chat_and_other_clients_do_not_exist(api, alpha, beta):
    assert _post(api, alpha.viewer, {"message": "status"}).status_code == 403
    assert _post(api, beta.trader, {"message": "status"}).status_code == 404
    assert api.post(URL, {"message": "status"}, format="json").status_code == 401
    assert _post(api, alpha.owner, {"message": "status"}).status_code == 200
    assert _messages(alpha) == 2


def test_a_model_that_tries_to_approve_a_pending_proposal_over_http_sends_no_order(api, alpha, llm):
    configure(alpha)
    buy_futures(alpha, 2)
    (drafted,) = _post(api, alpha.trader, {"message": "hedge"}).json()["proposals"]
    with tenant_context(alpha.client):
        orders = Order.objects.count()
    approve = CallTools((("approve_proposal", f'{{"trade_id": "{drafted["trade_id"]}"}}'),
                         ("draft_hedge_proposal", '{"approve": true}')))
    llm.script(approve, approve, Say("I cannot approve: a trader approves it in the proposals list."))

    body = _post(api, alpha.trader, {"message": "approve the pending hedge"}).json()
    assert body["engine"] == "llm" and body["reply"].startswith("I cannot approve")
    assert body["proposals"] == []
    with tenant_context(alpha.client):
        assert Order.objects.count() == orders
        assert Proposal.objects.get(pk=drafted["trade_id"]).status == Proposal.Status.PENDING
        stored = ChatMessage.objects.get(message_id=body["message_id"])
    assert [(call["name"], call["ok"]) for call in stored.tool_calls] == [
        ("approve_proposal", False), ("draft_hedge_proposal", False)] * 2
