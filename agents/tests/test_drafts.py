"""Trades a trader asks for (agents.services.proposal_draft), on the simulated market: pending
proposals through the agent's own pre-check, never executed before an approval."""
from __future__ import annotations

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from agents import services
from agents.models import AgentDecision, Proposal
from agents.selectors import agent_runtime_get
from agents.tests.books import buy_futures, configure, hedge_future
from agents.trade_requests import LegSpec, RequestKind, TradeRequest
from brokers import contracts
from brokers.models import Order
from brokers.products import PRODUCTS, price_add_ticks
from brokers.services import broker_session
from conftest import audit_events
from risk import services as risk

STRANGLE = {"kind": "none", "short_delta": 0.2, "dte_min": 20, "dte_max": 60, "quantity": 1}


def _draft(fixture, request, source="chat", actor="alpha-trader"):
    with tenant_context(fixture.client):
        return services.proposal_draft(client=fixture.client, request=request, actor=actor, source=source)


def _approve(fixture, proposal):
    with tenant_context(fixture.client):
        return services.proposal_approve(client=fixture.client, proposal_id=str(proposal.pk), user="alpha-trader")


def _counts(fixture):
    with tenant_context(fixture.client):
        return Proposal.objects.count(), Order.objects.count()


def _listed_call(fixture):
    """An ES call in the agent's default structure window (its strike and expiry)."""
    with tenant_context(fixture.client), broker_session() as broker:
        today = timezone.now().date()
        futures = broker.listed_futures("ES")
        hedge = hedge_future(broker)
        calls = [o for f in contracts.option_underlyings(futures, hedge=hedge, today=today, dte_max=60)
                 for o in broker.option_chain(f) if o.right == "C" and 20 <= (o.expiry - today).days <= 60]
        forward = broker.quote(hedge).mid
        return min(calls, key=lambda o: (abs(o.strike - forward - 100), abs((o.expiry - today).days - 40)))


def _legs(*specs):
    return TradeRequest(kind=RequestKind.LEGS, legs=tuple(specs))


def test_a_sold_call_is_a_pending_proposal_priced_at_the_bid_less_protection_and_nothing_is_sent(alpha):
    configure(alpha, structure=STRANGLE)
    call = _listed_call(alpha)
    outcome = _draft(alpha, _legs(LegSpec("SELL", 1, "ES", "FOP", strike=call.strike, right="C")))
    (proposal,) = outcome.proposals
    assert proposal.status == Proposal.Status.PENDING and proposal.source == "chat"
    assert proposal.action == "trade"
    assert [(leg["side"], leg["quantity"]) for leg in proposal.legs] == [("SELL", 1)]
    assert proposal.legs[0]["instrument"]["strike"] == call.strike
    assert proposal.precheck["accepted"] is True
    bid = proposal.rationale["bid"]
    # The bid less 4 ticks of ES options' tiered grid (0.25 above a 5.00 premium, 0.05 at or below).
    assert float(proposal.limit_price) == pytest.approx(
        price_add_ticks(PRODUCTS["ES"], bid, -4, kind="option"), abs=1e-9)
    assert proposal.content_hash and proposal.expires_at > timezone.now()
    assert outcome.decision.outcome == AgentDecision.Outcome.PROPOSED
    assert "alpha-trader asked to sell 1 ES" in outcome.decision.reason
    assert _counts(alpha) == (1, 0)  # nothing sent
    created = audit_events(client_id="alpha", kind="proposal.created")[-1]
    assert created.actor_type == "user" and created.actor_id == "alpha-trader"


def test_futures_default_to_the_hedge_future_and_execute_only_once_approved(alpha):
    configure(alpha)
    (proposal,) = _draft(alpha, _legs(LegSpec("BUY", 2, "ES", "FUT")), source="api").proposals
    with tenant_context(alpha.client), broker_session() as broker:
        assert proposal.legs[0]["instrument_key"] == hedge_future(broker).key
    assert proposal.source == "api" and _counts(alpha) == (1, 0)
    executed = _approve(alpha, proposal)
    assert executed.status == Proposal.Status.EXECUTED and executed.execution["order_state"] == "filled"
    with tenant_context(alpha.client), broker_session() as broker:
        book = risk.book_sync(client=alpha.client, broker=broker).valuation
    assert book.position_quantities() == {proposal.legs[0]["instrument_key"]: 2}


def test_a_strike_that_does_not_exist_is_a_question_naming_the_nearest_and_nothing_is_created(alpha):
    configure(alpha)
    call = _listed_call(alpha)
    with pytest.raises(services.DraftUnclear) as raised:
        _draft(alpha, _legs(LegSpec("SELL", 1, "ES", "FOP", strike=call.strike + 0.5, right="C")))
    assert "no ES" in raised.value.question and "nearest strikes" in raised.value.question
    assert raised.value.field_errors == {"legs": {"0": {"strike": [raised.value.question]}}}
    assert _counts(alpha) == (0, 0)


def test_unknown_products_and_expiries_are_named_all_at_once(alpha):
    configure(alpha)
    with pytest.raises(services.DraftUnclear) as raised:
        _draft(alpha, _legs(LegSpec("BUY", 1, "XX", "FUT"),
                            LegSpec("BUY", 1, "ES", "FUT", expiry=timezone.now().date())))
    assert set(raised.value.field_errors["legs"]) == {"0", "1"}
    assert "Unknown product 'XX'" in raised.value.question and "No ES future expires on" in raised.value.question
    assert _counts(alpha) == (0, 0)


def test_a_governor_refusal_creates_nothing_and_carries_every_violation(alpha):
    configure(alpha, risk_limits={"max_order_contracts": 1, "max_leg_contracts": 1, "max_net_delta": 50})
    with pytest.raises(services.RiskRejected) as raised:
        _draft(alpha, _legs(LegSpec("BUY", 3, "ES", "FUT")))
    assert not raised.value.is_halt
    assert {v["code"] for v in raised.value.violations} >= {"max_order_size"}
    assert _counts(alpha) == (0, 0)


def test_a_halt_refuses_the_draft_as_a_halt(alpha):
    configure(alpha)
    risk.emergency_halt_set(halted=True, reason="exchange outage", actor=risk.Actor("operator", "ops"))
    try:
        with pytest.raises(services.RiskRejected) as raised:
            _draft(alpha, _legs(LegSpec("BUY", 1, "ES", "FUT")))
        assert raised.value.is_halt
    finally:
        risk.emergency_halt_set(halted=False, reason="over", actor=risk.Actor("operator", "ops"))
    assert _counts(alpha) == (0, 0)


def test_open_close_roll_and_close_everything_of_a_strangle(alpha):
    configure(alpha, structure=STRANGLE, exits={"profit_target_pct": None, "stop_loss_pct": None, "roll_dte": 5})
    opened = _draft(alpha, TradeRequest(kind=RequestKind.OPEN_STRUCTURE, structure="short_strangle", units=1))
    (proposal,) = opened.proposals
    assert proposal.action == "open_structure" and {leg["side"] for leg in proposal.legs} == {"SELL"}
    assert _counts(alpha) == (1, 0)
    assert _approve(alpha, proposal).status == Proposal.Status.EXECUTED
    with tenant_context(alpha.client):
        assert agent_runtime_get().open_structure["kind"] == "short_strangle"

    with pytest.raises(services.DraftUnclear, match="already hold a short strangle"):
        _draft(alpha, TradeRequest(kind=RequestKind.OPEN_STRUCTURE, structure="short_strangle", units=1))
    with pytest.raises(services.DraftUnclear, match="not a iron condor"):
        _draft(alpha, TradeRequest(kind=RequestKind.CLOSE_STRUCTURE, structure="iron_condor"))

    (close,) = _draft(alpha, TradeRequest(kind=RequestKind.CLOSE_STRUCTURE, structure="strangle")).proposals
    assert close.action == "close_structure" and {leg["side"] for leg in close.legs} == {"BUY"}
    rolled = _draft(alpha, TradeRequest(kind=RequestKind.ROLL))
    assert [p.pk for p in rolled.proposals] == [close.pk]  # the same close, still pending: kept
    assert "new structure is drafted once the close has filled" in rolled.decision.reason

    buy_futures(alpha, 1)
    everything = _draft(alpha, TradeRequest(kind=RequestKind.CLOSE_ALL)).proposals
    assert [p.action for p in everything] == ["close_structure", "close_position"]
    assert everything[1].legs[0]["side"] == "SELL" and everything[1].legs[0]["quantity"] == 1
    assert _counts(alpha)[1] == 2  # the approved open and the test's own future: nothing else sent
    assert _approve(alpha, everything[0]).status == Proposal.Status.EXECUTED
    with tenant_context(alpha.client):
        assert agent_runtime_get().open_structure is None


def test_nothing_to_close_or_roll_and_no_structure_to_close_are_said(alpha):
    configure(alpha)
    with pytest.raises(services.DraftImpossible, match="book is flat"):
        _draft(alpha, TradeRequest(kind=RequestKind.CLOSE_ALL))
    with pytest.raises(services.DraftImpossible, match="Nothing to roll"):
        _draft(alpha, TradeRequest(kind=RequestKind.ROLL))
    with pytest.raises(services.DraftUnclear, match="no option structure to close"):
        _draft(alpha, TradeRequest(kind=RequestKind.CLOSE_STRUCTURE))
    assert _counts(alpha) == (0, 0)


def test_a_trader_request_never_executes_even_in_autonomous_mode(alpha, settings):
    settings.AUTONOMOUS_ENABLED = True
    configure(alpha, mode="autonomous")
    (proposal,) = _draft(alpha, _legs(LegSpec("BUY", 1, "ES", "FUT"))).proposals
    assert proposal.status == Proposal.Status.PENDING and _counts(alpha) == (1, 0)
