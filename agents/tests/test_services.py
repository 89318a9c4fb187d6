"""The agent's cycle, proposals and executions on the simulated market and real PostgreSQL."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.test import override_settings
from django.utils import timezone
from django_tenants.utils import tenant_context

from agents import services
from agents.models import AgentCycle, AgentDecision, Proposal
from agents.selectors import agent_parameters_get
from agents.services import cycle as cycle_module
from agents.services import execution
from agents.tests.books import buy_calls, buy_futures, configure
from brokers.models import Order
from brokers.services import broker_session
from conftest import audit_events
from risk import services as risk
from tradingplatform.events import recent_events


def _net_delta(fixture):
    with tenant_context(fixture.client), broker_session() as broker:
        return risk.book_sync(client=fixture.client, broker=broker).valuation.net_delta


def _cycle(fixture, key="k-1"):
    with tenant_context(fixture.client):
        return services.cycle_run(client=fixture.client, key=key, trigger="manual")


def _approve(fixture, proposal, user="alpha-trader"):
    with tenant_context(fixture.client):
        return services.proposal_approve(client=fixture.client, proposal_id=str(proposal.pk), user=user)


# --- the cycle -------------------------------------------------------------------------------


def test_a_book_inside_its_band_gets_no_action_recorded_with_its_reason(alpha):
    configure(alpha, band={"method": "fixed", "width": 1.0})
    outcome = _cycle(alpha)
    assert outcome.decision.outcome == AgentDecision.Outcome.NO_ACTION
    assert outcome.proposals == []
    assert "within" in outcome.decision.reason
    assert outcome.decision.metrics["band_half_width"] == 1.0
    event = audit_events(client_id="alpha", kind="agent.decision")[-1]
    assert event.payload["outcome"] == "no_action" and event.payload["reason"] == outcome.decision.reason


def test_confirmation_mode_proposes_a_hedge_and_approval_brings_delta_inside_the_band(alpha):
    configure(alpha, band={"method": "fixed", "width": 1.0})
    buy_calls(alpha, 10)
    before = _net_delta(alpha)
    assert before > 2

    outcome = _cycle(alpha)
    assert outcome.decision.outcome == AgentDecision.Outcome.PROPOSED
    (proposal,) = outcome.proposals
    assert proposal.status == Proposal.Status.PENDING and proposal.action == "hedge"
    assert proposal.legs[0]["side"] == "SELL" and proposal.legs[0]["quantity"] == round(before)
    assert proposal.precheck["accepted"] is True
    assert proposal.expires_at > timezone.now()
    with tenant_context(alpha.client):
        assert not Order.objects.filter(client_order_id=proposal.client_order_id).exists()

    executed = _approve(alpha, proposal)
    assert executed.status == Proposal.Status.EXECUTED
    assert executed.execution["order_state"] == "filled"
    assert abs(_net_delta(alpha)) <= 1.0
    kinds = [e.kind for e in audit_events(client_id="alpha")]
    assert {"proposal.created", "proposal.approved", "proposal.executed", "order.executed"} <= set(kinds)
    events = [e for e in recent_events(client_id="alpha", limit=100) if e["type"] == "proposal"]
    assert [e["data"]["proposal"]["status"] for e in events][-2:] == ["pending", "executed"] or \
        events[-1]["data"]["proposal"]["status"] == "executed"


def test_the_same_book_proposes_the_same_trade_once(alpha):
    configure(alpha)
    buy_futures(alpha, 4)
    first = _cycle(alpha, "k-a").proposals
    second = _cycle(alpha, "k-b")
    assert [p.pk for p in second.proposals] == [p.pk for p in first]
    assert "still pending" in second.decision.reason
    with tenant_context(alpha.client):
        assert Proposal.objects.filter(status="pending").count() == 1


def test_a_changed_book_supersedes_the_pending_proposal(alpha):
    configure(alpha)
    buy_futures(alpha, 4)
    (first,) = _cycle(alpha, "k-a").proposals
    buy_futures(alpha, 2, client_order_id="drift-2")
    (second,) = _cycle(alpha, "k-b").proposals
    assert second.pk != first.pk and second.legs[0]["quantity"] == 6
    with tenant_context(alpha.client):
        first.refresh_from_db()
    assert first.status == Proposal.Status.SUPERSEDED


@override_settings(AUTONOMOUS_ENABLED=True)
def test_autonomous_mode_executes_the_hedge_without_approval(alpha):
    configure(alpha, mode="autonomous", band={"method": "fixed", "width": 1.0})
    buy_calls(alpha, 10)
    outcome = _cycle(alpha)
    assert outcome.decision.outcome == AgentDecision.Outcome.EXECUTED
    (proposal,) = outcome.proposals
    assert proposal.status == Proposal.Status.EXECUTED and proposal.mode == "autonomous"
    assert abs(_net_delta(alpha)) <= 1.0
    decision = audit_events(client_id="alpha", kind="risk.decision")[-1]
    assert decision.actor_type == "agent" and decision.payload["purpose"] == "autonomous"


@override_settings(AUTONOMOUS_ENABLED=False)
def test_autonomous_mode_under_the_kill_switch_proposes_instead_of_executing(alpha):
    configure(alpha, mode="autonomous")
    buy_futures(alpha, 4)
    outcome = _cycle(alpha)
    assert outcome.decision.outcome == AgentDecision.Outcome.PROPOSED
    assert "AUTONOMOUS_ENABLED=false" in outcome.decision.reason
    assert outcome.proposals[0].status == Proposal.Status.PENDING


@override_settings(AUTONOMOUS_ENABLED=True)
def test_a_halt_stops_execution_and_the_cycle_holds(alpha):
    configure(alpha, mode="autonomous")
    buy_futures(alpha, 4)
    with tenant_context(alpha.client):
        risk.client_halt_set(client=alpha.client, halted=True, reason="desk review",
                             actor=risk.Actor("operator", "ops"))
    outcome = _cycle(alpha)
    assert outcome.decision.outcome == AgentDecision.Outcome.HELD
    assert "desk review" in outcome.decision.reason and outcome.proposals == []
    with tenant_context(alpha.client):
        assert Order.objects.count() == 1  # the drift only


def test_a_cycle_key_runs_once_and_a_running_cycle_is_not_started_twice(alpha):
    configure(alpha)
    first = _cycle(alpha, "slot-1")
    again = _cycle(alpha, "slot-1")
    assert first.cycle.status == AgentCycle.Status.COMPLETED
    assert again.skipped == "cycle slot-1 already completed"


def test_a_broker_failure_fails_the_cycle_with_the_structured_error(alpha):
    configure(alpha)
    with tenant_context(alpha.client), broker_session() as broker:
        broker.inject_disconnect(failed_reconnects=5)
    outcome = _cycle(alpha)
    assert outcome.cycle.status == AgentCycle.Status.FAILED
    assert outcome.cycle.error["type"] == "broker_error"
    assert _cycle(alpha, "k-2").cycle.status == AgentCycle.Status.FAILED
    assert len(audit_events(client_id="alpha", kind="agent.cycle_failed")) == 1  # one row per outage
    with tenant_context(alpha.client):
        from agents.selectors import agent_runtime_get

        assert agent_runtime_get().last_cycle_status == "failed"


# --- approvals -------------------------------------------------------------------------------


def _pending_hedge(fixture):
    configure(fixture)
    buy_futures(fixture, 4)
    (proposal,) = _cycle(fixture).proposals
    return proposal


def test_approve_after_reject_is_a_conflict(alpha):
    proposal = _pending_hedge(alpha)
    with tenant_context(alpha.client):
        rejected = services.proposal_reject(client=alpha.client, proposal_id=str(proposal.pk), user="t", reason="no")
    assert rejected.status == Proposal.Status.REJECTED and rejected.decision_reason == "no"
    with pytest.raises(services.ProposalConflict):
        _approve(alpha, proposal)
    assert audit_events(client_id="alpha", kind="proposal.rejected")[-1].payload["reason"] == "no"


def test_approve_after_expiry_is_gone_and_marks_it_expired(alpha):
    proposal = _pending_hedge(alpha)
    with tenant_context(alpha.client):
        Proposal.objects.filter(pk=proposal.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(services.ProposalExpired):
        _approve(alpha, proposal)
    with tenant_context(alpha.client):
        proposal.refresh_from_db()
        assert proposal.status == Proposal.Status.EXPIRED
        assert not Order.objects.filter(client_order_id=proposal.client_order_id).exists()


def test_approve_during_an_emergency_halt_is_refused_with_the_reason(alpha):
    proposal = _pending_hedge(alpha)
    risk.emergency_halt_set(halted=True, reason="exchange outage", actor=risk.Actor("operator", "ops"))
    try:
        with pytest.raises(risk.ExecutionHalted, match="exchange outage"):
            _approve(alpha, proposal)
    finally:
        risk.emergency_halt_set(halted=False, reason="over", actor=risk.Actor("operator", "ops"))
    with tenant_context(alpha.client):
        proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.PENDING  # still approvable once the halt is lifted
    assert _approve(alpha, proposal).status == Proposal.Status.EXECUTED


def test_the_governor_rechecks_at_approval_against_the_current_book(alpha):
    proposal = _pending_hedge(alpha)
    configure(alpha, risk_limits={"max_leg_contracts": 2})
    with pytest.raises(services.RiskRejected) as refused:
        _approve(alpha, proposal)
    assert "max_leg_size" in {v["code"] for v in refused.value.violations}
    with tenant_context(alpha.client):
        proposal.refresh_from_db()
        assert proposal.status == Proposal.Status.BLOCKED
        assert not Order.objects.filter(client_order_id=proposal.client_order_id).exists()


def test_a_tampered_proposal_is_not_executed(alpha):
    proposal = _pending_hedge(alpha)
    with tenant_context(alpha.client):
        legs = proposal.legs
        legs[0]["quantity"] = 9
        Proposal.objects.filter(pk=proposal.pk).update(legs=legs)
    with pytest.raises(services.ProposalConflict, match="content hash"):
        _approve(alpha, proposal)


# --- redelivery and unknown outcomes ---------------------------------------------------------


@override_settings(AUTONOMOUS_ENABLED=True)
def test_a_redelivered_cycle_resumes_its_execution_by_asking_the_broker(alpha):
    """A worker died after the order was sent and before the proposal was settled: the redelivered
    task finds the cycle, asks the broker about the client order id, and sends nothing again."""
    configure(alpha, mode="autonomous")
    buy_futures(alpha, 4)
    with tenant_context(alpha.client):
        cycle = AgentCycle.objects.create(key="slot-9", trigger="schedule")
        decided = cycle_module._decide(client=alpha.client, cycle=cycle, trigger="schedule",
                                   parameters=agent_parameters_get(), source="cycle", may_execute=True)
        (proposal,) = decided.proposals
        risk.order_submit(client=alpha.client, order=services.proposal_order(proposal), actor=services.AGENT,
                          purpose="autonomous")  # sent; the worker "dies" before settling the proposal
    outcome = _cycle(alpha, "slot-9")
    assert outcome.decision.pk == decided.decision.pk  # not decided again
    with tenant_context(alpha.client):
        proposal.refresh_from_db()
        assert proposal.status == Proposal.Status.EXECUTED
        assert Order.objects.filter(client_order_id=proposal.client_order_id).count() == 1
        assert Order.objects.count() == 2
    assert abs(_net_delta(alpha)) <= 1.0


@override_settings(AUTONOMOUS_ENABLED=True)
def test_an_execution_the_broker_never_received_fails_instead_of_being_resent(alpha):
    configure(alpha, mode="autonomous")
    buy_futures(alpha, 4)
    with tenant_context(alpha.client):
        cycle = AgentCycle.objects.create(key="slot-10", trigger="schedule")
        decided = cycle_module._decide(client=alpha.client, cycle=cycle, trigger="schedule",
                                   parameters=agent_parameters_get(), source="cycle", may_execute=True)
    _cycle(alpha, "slot-10")
    with tenant_context(alpha.client):
        (proposal,) = Proposal.objects.filter(pk=decided.proposals[0].pk)
        assert proposal.status == Proposal.Status.FAILED
        assert proposal.execution["error"]["code"] == "never_sent"
        assert not Order.objects.filter(client_order_id=proposal.client_order_id).exists()


# --- concurrency: committed data, real threads ------------------------------------------------


def test_twenty_concurrent_approvals_execute_once(django_db_setup, django_db_blocker):
    from rest_framework.test import APIClient

    from conftest import bearer

    race = django_db_setup["race"]
    with django_db_blocker.unblock():
        configure(race, band={"method": "fixed", "width": 0.5},
                   risk_limits={"max_net_delta": 1000, "max_order_contracts": 100, "max_leg_contracts": 100,
                                "max_orders_per_minute": 100})
        if abs(_net_delta(race)) < 2:
            buy_futures(race, 3, client_order_id=f"race-drift-{timezone.now().timestamp()}")
        (proposal,) = _cycle(race, f"race-{timezone.now().timestamp()}").proposals
        barrier = threading.Barrier(20)
        codes = []

        def approve():
            client = APIClient()
            barrier.wait()
            try:
                response = client.post(f"/clients/race/agent/approve/{proposal.pk}", **bearer(race.trader))
                codes.append(response.status_code)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=approve) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert sorted(codes) == [200] + [409] * 19
        with tenant_context(race.client):
            assert Order.objects.filter(client_order_id=proposal.client_order_id).count() == 1
            with broker_session() as broker:
                assert broker.order_status(proposal.client_order_id).state == "filled"
            assert Proposal.objects.get(pk=proposal.pk).status == Proposal.Status.EXECUTED


# --- structures ------------------------------------------------------------------------------


STRANGLE = {"kind": "short_strangle", "short_delta": 0.2, "dte_min": 20, "dte_max": 60, "quantity": 4}


@override_settings(AUTONOMOUS_ENABLED=True)
def test_a_structure_opens_as_one_combo_and_is_remembered_for_its_exits(alpha):
    configure(alpha, mode="autonomous", structure=STRANGLE, exits={"roll_dte": 5},
               risk_limits={"max_net_delta": 50, "max_order_contracts": 20, "max_leg_contracts": 20})
    outcome = _cycle(alpha)
    (opened, *_) = outcome.proposals
    assert opened.action == "open_structure" and opened.status == Proposal.Status.EXECUTED
    assert sorted((leg["side"], leg["instrument"]["right"]) for leg in opened.legs) == [("SELL", "C"), ("SELL", "P")]
    with tenant_context(alpha.client):
        (order,) = Order.objects.filter(client_order_id=opened.client_order_id)
        assert len(order.legs) == 2  # one combo order, not one per leg
        from agents.selectors import agent_runtime_get

        held = agent_runtime_get().open_structure
    assert held["kind"] == "short_strangle" and held["quantity"] == 4
    assert sorted(quantity for _, quantity in held["legs"]) == [-4, -4]
    again = _cycle(alpha, "k-2")
    assert "open_structure" not in [p.action for p in again.proposals]  # held: not opened twice


@override_settings(AUTONOMOUS_ENABLED=True)
def test_a_partly_filled_combo_is_reported_and_the_book_is_hedged_at_once(alpha):
    configure(alpha, mode="autonomous", structure={**STRANGLE, "short_delta": 0.3}, exits={"roll_dte": 5},
               band={"method": "fixed", "width": 0.5})
    with tenant_context(alpha.client), broker_session() as broker:
        broker.set_fill_ratio(0.5)
    outcome = _cycle(alpha)
    opened = next(p for p in outcome.proposals if p.action == "open_structure")
    with tenant_context(alpha.client):
        opened.refresh_from_db()
        assert opened.execution["order_state"] == "partially_filled" and opened.execution["filled_quantity"] == 2
        follow_up = AgentCycle.objects.get(key=f"partial:{opened.pk}")
        assert follow_up.trigger == "partial_fill" and follow_up.status == AgentCycle.Status.COMPLETED
        assert follow_up.decisions.count() == 1
    executed = audit_events(client_id="alpha", kind="proposal.executed")
    assert any(e.payload["order_state"] == "partially_filled" for e in executed)


def test_an_approval_the_broker_cannot_evaluate_sends_nothing_and_stays_approvable(alpha):
    from brokers.domain import BrokerError

    proposal = _pending_hedge(alpha)
    with tenant_context(alpha.client), broker_session() as broker:
        broker.inject_disconnect(failed_reconnects=5)
    with pytest.raises(BrokerError):
        _approve(alpha, proposal)
    with tenant_context(alpha.client):
        proposal.refresh_from_db()
        assert proposal.status == Proposal.Status.PENDING and proposal.decided_by == ""
        assert not Order.objects.filter(client_order_id=proposal.client_order_id).exists()


@override_settings(AUTONOMOUS_ENABLED=True)
def test_a_held_structure_is_closed_at_its_profit_target_as_one_combo(alpha):
    configure(alpha, mode="autonomous", structure=STRANGLE, band={"method": "fixed", "width": 5.0},
              exits={"profit_target_pct": 30, "stop_loss_pct": None, "roll_dte": 5})
    opened = next(p for p in _cycle(alpha, "k-open").proposals if p.action == "open_structure")
    assert opened.status == Proposal.Status.EXECUTED
    with tenant_context(alpha.client), broker_session() as broker:
        broker.shock("ES", 0.0, vol_points=-0.06)  # implied vol falls 6 points: the short options lose value
    outcome = _cycle(alpha, "k-exit")
    (closed,) = [p for p in outcome.proposals if p.action == "close_structure"]
    assert closed.status == Proposal.Status.EXECUTED and closed.execution["order_state"] == "filled"
    assert sorted((leg["instrument_key"], leg["side"]) for leg in closed.legs) == sorted(
        (leg["instrument_key"], "BUY") for leg in opened.legs)
    assert "profit" in closed.summary.lower()
    with tenant_context(alpha.client):
        from agents.selectors import agent_runtime_get

        assert agent_runtime_get().open_structure is None
        assert not [p for p in _net_positions(alpha) if "FOP" in p]


def _net_positions(fixture):
    from brokers.models import Position

    with tenant_context(fixture.client):
        return list(Position.objects.exclude(quantity=0).values_list("instrument_key", flat=True))


def _next_future_expiries(fixture):
    """The second listed ES future's expiry and its first two option expiries still to come."""
    with tenant_context(fixture.client), broker_session() as broker:
        # Not always a third Friday: June 2027's falls on the observed Juneteenth holiday.
        future = broker.listed_futures("ES")[1]
        today = timezone.now().date()
        expiries = sorted({o.expiry for o in broker.option_chain(future) if o.expiry > today})
    return future.expiry, [(expiry - today).days for expiry in expiries[:2]]


@override_settings(AUTONOMOUS_ENABLED=True)
def test_in_confirmation_mode_a_roll_proposes_the_close_first_and_the_open_after_it_fills(alpha):
    future_expiry, (near, far) = _next_future_expiries(alpha)
    common = {"hedge_future_expiry": future_expiry.isoformat(), "band": {"method": "fixed", "width": 5.0}}
    configure(alpha, mode="autonomous", structure={**STRANGLE, "dte_min": near, "dte_max": near},
              exits={"roll_dte": near - 1}, **common)
    opened = next(p for p in _cycle(alpha, "k-open").proposals if p.action == "open_structure")
    assert opened.status == Proposal.Status.EXECUTED
    configure(alpha, mode="confirmation", structure={**STRANGLE, "dte_min": near + 1, "dte_max": far},
              exits={"roll_dte": near}, **common)
    roll = _cycle(alpha, "k-roll")
    assert [p.action for p in roll.proposals] == ["close_structure"]
    assert "once the close has filled" in roll.decision.reason
    assert _approve(alpha, roll.proposals[0]).status == Proposal.Status.EXECUTED
    reopen = _cycle(alpha, "k-reopen")
    assert [p.action for p in reopen.proposals] == ["open_structure"]
    assert all(leg["instrument"]["expiry"] > opened.legs[0]["instrument"]["expiry"] for leg in reopen.proposals[0].legs)


def test_a_partial_close_leaves_the_rest_of_the_structure_to_manage():
    held = {"kind": "short_strangle", "quantity": 4, "legs": [["P", -4], ["C", -8]], "entry_price": -50.0,
            "expiry": "2026-12-18", "opened_at": "2026-11-24T15:00:00+00:00"}
    assert execution._structure_left(held, closed_units=1)["legs"] == [["P", -3], ["C", -6]]
    assert execution._structure_left(held, closed_units=1)["quantity"] == 3
    assert execution._structure_left(held, closed_units=4) is None


@override_settings(AUTONOMOUS_ENABLED=True)
def test_an_autonomous_trade_the_broker_rejects_is_journaled_as_held(alpha):
    configure(alpha, mode="autonomous")
    buy_futures(alpha, 4)
    with tenant_context(alpha.client), broker_session() as broker:
        broker.inject_rejections(1)
    outcome = _cycle(alpha)
    (proposal,) = outcome.proposals
    assert proposal.status == Proposal.Status.FAILED
    with tenant_context(alpha.client):
        outcome.decision.refresh_from_db()
    assert outcome.decision.outcome == AgentDecision.Outcome.HELD
    assert "Not executed: hedge failed." in outcome.decision.reason


def test_a_halt_landing_between_the_claim_and_the_send_leaves_the_approval_pending(django_db_setup,
                                                                                    django_db_blocker):
    """The race the claim-time check cannot see: the approval has claimed the proposal, an operator
    halts the client before the order goes out. Real threads and connections, committed data: the
    test holds the client's risk lock (as an order in flight would) so the approval waits at the
    send, halts the client while it waits, and lets go."""
    import time

    from rest_framework.test import APIClient

    from tradingplatform.locks import advisory_lock
    from tradingplatform.testing import bearer, client_fixture_create

    with django_db_blocker.unblock():
        fixture = client_fixture_create("halt-race")  # a book of its own: its writes are committed and stay
        proposal = _pending_hedge(fixture)
        outcome = {}

        def approve():
            try:
                outcome["response"] = APIClient().post(f"/clients/halt-race/agent/approve/{proposal.pk}",
                                                       **bearer(fixture.trader))
            finally:
                connections.close_all()

        thread = threading.Thread(target=approve)
        with advisory_lock(f"risk:{fixture.client_id}"):
            thread.start()
            deadline = time.monotonic() + 60
            with tenant_context(fixture.client):
                while Proposal.objects.get(pk=proposal.pk).status != Proposal.Status.EXECUTING:
                    assert time.monotonic() < deadline and thread.is_alive(), outcome
                    time.sleep(0.02)
                # claimed, and waiting for the lock we hold: the halt lands now
                risk.client_halt_set(client=fixture.client, halted=True, reason="desk review",
                                     actor=risk.Actor("operator", "ops"))
        thread.join(60)
        response = outcome["response"]
        try:
            assert response.status_code == 423, response.content
            assert "desk review" in response.json()["detail"]
            with tenant_context(fixture.client):
                proposal.refresh_from_db()
                assert proposal.status == Proposal.Status.PENDING and proposal.decided_by == ""
                assert not Order.objects.filter(client_order_id=proposal.client_order_id).exists()
            (halted,) = audit_events(client_id="halt-race", kind="proposal.halted")
            assert halted.payload["proposal_id"] == str(proposal.pk) and "desk review" in halted.payload["reason"]
            assert not audit_events(client_id="halt-race", kind="proposal.blocked")
        finally:
            with tenant_context(fixture.client):
                risk.client_halt_set(client=fixture.client, halted=False, reason="over",
                                     actor=risk.Actor("operator", "ops"))
        # approvable again once the halt is lifted
        assert _approve(fixture, proposal, user="halt-race-trader").status == Proposal.Status.EXECUTED


@pytest.mark.parametrize(
    ("symbol", "sec_type", "side", "far_touch", "limit"),
    [
        ("ES", "FOP", "BUY", 4.95, "5.75"),  # 5.00, then three 0.25 ticks above the 5.00 tier
        ("ES", "FOP", "SELL", 5.25, "4.85"),  # 5.00, then three 0.05 ticks below it
        ("ES", "FOP", "SELL", 0.10, "0.05"),  # never below the smallest tick
        ("ES", "FOP", "BUY", 4.97, "6.00"),  # off the grid: first rounded up to 5.00 (away from the touch)
        ("ZN", "FUT", "BUY", 110.5, "110.5625"),  # four halves of a 32nd
        ("6E", "FOP", "BUY", 0.00045, "0.0008"),  # 0.0005 (a half tick), then whole ticks above it
    ],
)
def test_a_single_leg_limit_is_protected_along_the_products_real_grid(symbol, sec_type, side, far_touch, limit):
    from datetime import date
    from decimal import Decimal

    from agents.policy import ProposedTrade
    from brokers.domain import Instrument, OrderLeg

    instrument = Instrument(symbol, sec_type, date(2027, 3, 19), "CME", 1.0,
                            strike=100.0 if sec_type == "FOP" else None, right="C" if sec_type == "FOP" else None)
    trade = ProposedTrade(action="trade", legs=(OrderLeg(instrument, side, 1),), limit_price=far_touch,
                          rationale={}, summary="")
    assert services.protected_limit_price(trade) == Decimal(limit)
