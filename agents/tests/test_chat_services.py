"""Chat turns on real PostgreSQL and the simulated market: the deterministic answers, and a
scripted model on a loopback chat-completions server, adversarial ones included."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from agents.chat.services import PROMPT_VERSION, chat_reply, message_chunks, system_prompt
from agents.chat.tools import TOOLS
from agents.models import AgentConfig, AgentNote, ChatMessage, Proposal
from agents.selectors import decision_latest
from agents.services import hedge_proposal_draft
from agents.tests.books import buy_futures, configure
from agents.tests.llm_server import CallTools, Hang, Raw, Say, scripted_llm
from brokers.models import Order
from tradingplatform.events import recent_events
from tradingplatform.testing import audit_events, bearer

READ_ONLY_TOOLS = {"get_status", "get_book", "get_last_decisions", "list_proposals", "explain_proposal",
                   "get_notes"}


@pytest.fixture
def llm(settings):
    yield from scripted_llm(settings)


def _chat(fixture, message, user="alpha-trader"):
    with tenant_context(fixture.client):
        return chat_reply(client=fixture.client, user=user, message=message)



def _orders(fixture) -> int:
    with tenant_context(fixture.client):
        return Order.objects.count()


def _proposal_states(fixture) -> dict[str, str]:
    with tenant_context(fixture.client):
        return dict(Proposal.objects.values_list("id", "status"))


def _streamed(client_id, message_id) -> list[dict]:
    return [event["data"] for event in recent_events(client_id=client_id, limit=200)
            if event["type"] == "agent_message" and event["data"]["message_id"] == str(message_id)]


def _tool_messages(request) -> list[dict]:
    return [message for message in request["body"]["messages"] if message["role"] == "tool"]


# --- without a model -------------------------------------------------------------------------


def test_a_question_is_stored_answered_streamed_and_audited(alpha):
    reply = _chat(alpha, "status?")
    message = reply.message
    assert message.role == ChatMessage.Role.AGENT and message.author == "agent"
    assert message.engine == "intents" and message.intent == "status"
    assert "Mode: confirmation" in message.text and "Trading state: ACTIVE" in message.text
    assert [call["name"] for call in message.tool_calls] == ["get_status"]
    assert message.model == "" and message.prompt_version == "" and message.fallback_reason == ""
    with tenant_context(alpha.client):
        question = ChatMessage.objects.get(role=ChatMessage.Role.USER)
    assert question.text == "status?" and question.author == "alpha-trader"

    events = _streamed("alpha", message.message_id)
    assert "".join(event["delta"] for event in events) == message.text
    assert [event["done"] for event in events] == [False] * (len(events) - 1) + [True]
    assert len(events) > 1

    (audited,) = audit_events(client_id="alpha", kind="agent.chat")
    assert audited.actor_id == "alpha-trader"
    assert audited.payload["message_id"] == str(message.message_id)
    assert audited.payload["question_id"] == str(question.message_id)
    assert audited.payload["engine"] == "intents" and audited.payload["tools"] == ["intents:get_status"]


def test_hedge_to_neutral_drafts_a_pending_proposal_and_sends_no_order(alpha):
    configure(alpha)
    buy_futures(alpha, 4)
    orders = _orders(alpha)
    reply = _chat(alpha, "Hedge to neutral please")
    (proposal,) = reply.proposals
    assert proposal.status == Proposal.Status.PENDING and proposal.source == Proposal.Source.CHAT
    assert proposal.action == "hedge"
    assert (proposal.legs[0]["side"], proposal.legs[0]["quantity"]) == ("SELL", 4)
    assert reply.message.intent == "hedge" and reply.message.proposal_ids == [str(proposal.pk)]
    assert str(proposal.pk)[:8] in reply.message.text and "approval" in reply.message.text
    assert _orders(alpha) == orders


def test_a_flat_book_gets_no_hedge_and_the_recorded_reason(alpha):
    reply = _chat(alpha, "hedge")
    assert reply.proposals == []
    with tenant_context(alpha.client):
        decision = decision_latest()
    assert decision.outcome == "no_action" and decision.trigger == "chat"
    assert reply.message.text == f"No hedge proposed: {decision.reason}"


def test_why_answers_from_the_decision_journal_and_the_notes(alpha):
    configure(alpha)
    buy_futures(alpha, 3)
    _chat(alpha, "note: FOMC minutes at 2pm, keep hedges small")
    drafted = _chat(alpha, "hedge to neutral")
    why = _chat(alpha, "why?").message
    with tenant_context(alpha.client):
        decision = Proposal.objects.get(pk=drafted.proposals[0].pk).decision
    assert why.intent == "why"
    assert decision.reason in why.text and "proposed" in why.text
    assert "FOMC minutes at 2pm, keep hedges small" in why.text


def test_a_note_is_remembered_and_audited(alpha):
    reply = _chat(alpha, "Remember that we roll on Friday")
    assert reply.message.text == "Noted: we roll on Friday"
    with tenant_context(alpha.client):
        (note,) = AgentNote.objects.all()
    assert note.text == "we roll on Friday" and note.author == "alpha-trader"
    assert audit_events(client_id="alpha", kind="agent.note_added")[-1].payload["text"] == "we roll on Friday"
    assert "we roll on Friday" in _chat(alpha, "notes").message.text


def test_a_parameter_change_is_described_not_made(alpha):
    reply = _chat(alpha, "set max delta to 40")
    assert reply.message.intent == "set_parameter"
    assert "risk_limits.max_net_delta from 10.00 to 40" in reply.message.text
    assert "POST /clients/alpha/agent/parameters" in reply.message.text
    assert '{"risk_limits": {"max_net_delta": 40}}' in reply.message.text
    with tenant_context(alpha.client):
        assert not AgentConfig.objects.filter(parameters__has_key="risk_limits").exists()
    assert not audit_events(client_id="alpha", kind="agent.parameters_changed")


def test_a_parameter_change_the_endpoint_would_refuse_says_why(alpha):
    text = _chat(alpha, "max order size 0").message.text
    assert text.startswith("risk_limits.max_order_contracts = 0 would be refused")
    assert "greater than or equal to 1" in text
    assert "target_delta from 0.00 to -2" in _chat(alpha, "set target delta -2").message.text


def test_proposals_are_listed_and_explained_by_the_start_of_their_id(alpha):
    configure(alpha)
    buy_futures(alpha, 2)
    (proposal,) = _chat(alpha, "hedge").proposals
    listed = _chat(alpha, "what's pending?").message.text
    assert listed.startswith("Pending proposals") and str(proposal.pk)[:8] in listed
    explained = _chat(alpha, f"explain proposal {str(proposal.pk)[:8]}").message.text
    assert explained.startswith(f"Proposal {proposal.pk} (pending, from the chat)")
    assert "Risk pre-check: accepted." in explained
    assert _chat(alpha, "explain proposal 99999999").message.text == "No proposal matches '99999999'."


def test_a_pending_proposal_past_its_time_to_live_reads_as_expired_in_chat_as_in_the_api(api, alpha):
    proposal = _pending_hedge(alpha)
    with tenant_context(alpha.client):
        # Past its TTL, not yet marked by a cycle: the row still says pending.
        Proposal.objects.filter(pk=proposal.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    explained = _chat(alpha, f"explain proposal {str(proposal.pk)[:8]}").message.text
    assert explained.startswith(f"Proposal {proposal.pk} (expired, from the chat)")
    listed = _chat(alpha, "what's pending?").message.text
    assert listed.startswith("Nothing is pending.") and f"{str(proposal.pk)[:8]} expired" in listed
    (listed_by_api,) = api.get("/clients/alpha/agent/proposals", **bearer(alpha.viewer)).json()["results"]
    assert listed_by_api["status"] == "expired"
    assert _proposal_states(alpha)[proposal.pk] == "pending"


def test_unknown_requests_get_the_help(alpha):
    text = _chat(alpha, "approve everything and buy 100 calls").message.text
    assert text.startswith("I did not understand that.") and "never approve" in text


def test_streamed_chunks_join_to_the_text():
    text = "a fairly long reply that has to be cut between its words, several times over, to stream it"
    for candidate in ("", "one", text, "  padded\n\nlines  "):
        chunks = message_chunks(candidate, size=16)
        assert "".join(chunks) == candidate
    assert len(message_chunks(text, size=16)) > 4


# --- with a model ------------------------------------------------------------------------------


def test_no_tool_can_approve_execute_change_or_halt_and_none_takes_a_client():
    assert set(TOOLS) == READ_ONLY_TOOLS | {"draft_hedge_proposal"}
    for tool in TOOLS.values():
        schema = tool.parameters
        assert schema["additionalProperties"] is False
        assert not any("client" in name for name in schema["properties"])
    assert "system-v1" == PROMPT_VERSION and "cannot" in system_prompt()


def test_the_model_answers_with_the_prompt_tools_history_and_memory(alpha, llm):
    _chat(alpha, "note: desk is flat into the close")
    llm.script(Say("Mode is confirmation; the book is flat."))
    reply = _chat(alpha, "how are we doing?")
    message = reply.message
    assert message.engine == "llm" and message.text == "Mode is confirmation; the book is flat."
    assert message.model == "scripted-model" and message.prompt_version == "system-v1"
    assert message.fallback_reason == ""

    (request,) = llm.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test-secret"
    body = request["body"]
    assert body["model"] == "scripted-model" and body["stream"] is True and body["max_tokens"] == 200
    assert {tool["function"]["name"] for tool in body["tools"]} == set(TOOLS)
    system, memory, *conversation = body["messages"]
    assert system == {"role": "system", "content": system_prompt()}
    assert "desk is flat into the close" in memory["content"] and "Alpha Capital" in memory["content"]
    assert [m["role"] for m in conversation] == ["user", "assistant", "user"]
    assert conversation[-1]["content"] == "how are we doing?"

    events = _streamed("alpha", message.message_id)
    assert "".join(event["delta"] for event in events) == message.text and events[-1]["done"] is True
    audited = audit_events(client_id="alpha", kind="agent.chat")[-1].payload
    assert audited["engine"] == "llm" and audited["model"] == "scripted-model"
    stored = json.dumps([audited, message.tool_calls, message.text, message.fallback_reason])
    assert "sk-test-secret" not in stored


def test_a_note_is_taken_down_without_asking_the_model(alpha, llm):
    assert _chat(alpha, "note: no new structures this week").message.engine == "intents"
    assert llm.requests == []


def test_the_model_reads_with_tools_and_the_results_go_back_to_it(alpha, llm):
    llm.script(CallTools((("get_status", "{}"), ("get_notes", '{"limit": 2}'))), Say("All quiet."))
    message = _chat(alpha, "anything I should know?").message
    assert message.engine == "llm" and message.text == "All quiet."
    assert [(c["caller"], c["name"], c["ok"]) for c in message.tool_calls] == [
        ("model", "get_status", True), ("model", "get_notes", True)]
    status, notes = _tool_messages(llm.requests[1])
    assert json.loads(status["content"])["result"]["mode"] == "confirmation"
    assert json.loads(notes["content"]) == {"result": {"notes": []}}
    assert status["tool_call_id"] == "call_0" and notes["tool_call_id"] == "call_1"


def test_the_model_drafts_a_hedge_through_the_policy_and_nothing_executes(alpha, llm):
    configure(alpha)
    buy_futures(alpha, 3)
    orders = _orders(alpha)
    llm.script(CallTools((("draft_hedge_proposal", "{}"),)), CallTools((("draft_hedge_proposal", "{}"),)),
               Say("I drafted a hedge: sell 3 ES. It awaits your approval."))
    reply = _chat(alpha, "flatten my delta")
    (proposal,) = reply.proposals
    assert reply.message.engine == "llm" and proposal.status == Proposal.Status.PENDING
    assert proposal.source == Proposal.Source.CHAT and reply.message.proposal_ids == [str(proposal.pk)]
    first, second = (json.loads(_tool_messages(llm.requests[n])[-1]["content"]) for n in (1, 2))
    assert first == second and first["result"]["proposals"][0]["id"] == str(proposal.pk)
    with tenant_context(alpha.client):
        assert Proposal.objects.count() == 1
    assert _orders(alpha) == orders


def test_bad_tool_arguments_are_errors_for_the_model_not_for_the_trader(alpha, llm):
    llm.script(CallTools((("explain_proposal", "{oops"), ("list_proposals", '{"status": "approved"}'),
                          ("get_book", '{"limit": 3}'))), Say("I could not find that."))
    message = _chat(alpha, "explain proposal 12345678").message
    assert message.engine == "llm"
    errors = [json.loads(m["content"])["error"] for m in _tool_messages(llm.requests[1])]
    assert errors[0] == "Arguments must be a JSON object."
    assert errors[1].startswith("Invalid arguments: status must be one of pending")
    assert errors[2] == "Invalid arguments: unknown argument 'limit'."
    assert [c["ok"] for c in message.tool_calls] == [False, False, False]


def _pending_hedge(fixture):
    configure(fixture)
    buy_futures(fixture, 2)
    with tenant_context(fixture.client):
        (proposal,) = hedge_proposal_draft(client=fixture.client, actor="alpha-trader").proposals
    return proposal


@dataclass(frozen=True)
class Misbehaviour:
    reason: str  # the fallback reason's code
    script: tuple = ()
    always: CallTools | None = None  # the answer to every request
    tools_refused: bool = False  # every tool call it makes is refused


NEVER_OFFERED = CallTools((
    ("approve_proposal", '{"proposal_id": "PENDING"}'), ("execute_order", '{"side": "BUY", "quantity": 50}'),
    ("set_mode", '{"mode": "autonomous"}'), ("halt", '{"halted": false}'),
))
ANOTHER_CLIENT = CallTools((
    ("get_book", '{"client_id": "beta"}'), ("draft_hedge_proposal", '{"client_id": "beta"}'),
    ("explain_proposal", '{"proposal_id": "PENDING", "client": "beta"}'),
))
TRICKLE = Say("I approved the proposal and executed it. " * 3, chunk_chars=4, pause_seconds=0.5)
MISBEHAVIOURS = {
    "calls tools it was never offered": Misbehaviour("tool_rounds", always=NEVER_OFFERED, tools_refused=True),
    "points tools at another client": Misbehaviour("tool_rounds", always=ANOTHER_CLIENT, tools_refused=True),
    "loops on tool calls forever": Misbehaviour("tool_rounds", always=CallTools((("get_status", "{}"),))),
    "sends events that are not JSON": Misbehaviour(
        "invalid_response", (Raw(b"data: {not json\n\n", content_type="text/event-stream"),)),
    "answers a stream with a plain completion": Misbehaviour("empty", (Say("done!", ignore_stream=True),)),
    "answers with nothing": Misbehaviour("empty", (Say("   "),)),
    "fails with a 500": Misbehaviour("http_error", (Raw(b'{"error": {"message": "boom"}}', status=500),)),
    "hangs": Misbehaviour("timeout", (Hang(30),)),
    "trickles past the turn's deadline": Misbehaviour("deadline", (TRICKLE,)),
    "is cut at the token cap": Misbehaviour("over_cap", (Say("I will now approve", finish_reason="length"),)),
}


@pytest.mark.parametrize("name", MISBEHAVIOURS, ids=list(MISBEHAVIOURS))
def test_a_misbehaving_model_changes_nothing_and_the_trader_gets_the_deterministic_answer(alpha, llm, name):
    case = MISBEHAVIOURS[name]
    pending = _pending_hedge(alpha)
    orders, states = _orders(alpha), _proposal_states(alpha)
    if case.always is not None:
        llm.always = CallTools(tuple((tool, arguments.replace("PENDING", str(pending.pk)))
                                     for tool, arguments in case.always.calls))
    llm.script(*case.script)

    reply = _chat(alpha, "what's pending?")
    message = reply.message
    assert message.engine == "intents" and message.fallback_reason.startswith(case.reason)
    assert message.text.startswith("Pending proposals") and str(pending.pk)[:8] in message.text
    assert message.model == "scripted-model" and message.prompt_version == "system-v1"
    assert _orders(alpha) == orders and _proposal_states(alpha) == states
    assert reply.proposals == []
    events = _streamed("alpha", message.message_id)
    assert "".join(event["delta"] for event in events) == message.text
    audited = audit_events(client_id="alpha", kind="agent.chat")[-1].payload
    assert audited["fallback_reason"] == message.fallback_reason
    if case.always is not None:
        assert len(llm.requests) == 4  # LLM_MAX_TOOL_ROUNDS rounds of tool calls, then no answer
    if case.tools_refused:
        model_calls = [call for call in message.tool_calls if call["caller"] == "model"]
        assert len(model_calls) == 3 * len(case.always.calls)
        assert not any(call["ok"] for call in model_calls)


def test_a_model_cannot_read_or_draft_for_another_client(alpha, beta, llm):
    configure(beta)
    buy_futures(beta, 2)
    to_beta = CallTools((("get_book", '{"client_id": "beta"}'),
                         ("draft_hedge_proposal", '{"client_id": "beta"}')))
    llm.script(to_beta, Say("I cannot see other clients."))
    message = _chat(alpha, "show me beta's book and hedge it").message
    assert message.engine == "llm"
    results = [json.loads(m["content"]) for m in _tool_messages(llm.requests[1])]
    assert results == [{"error": "Invalid arguments: unknown argument 'client_id'."}] * 2
    with tenant_context(beta.client):
        assert not Proposal.objects.exists()
    with tenant_context(alpha.client):
        assert not Proposal.objects.exists()
